package apierr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// Domain is the ErrorInfo domain of every Manushya error.
const Domain = "manushya.ai"

// Error is a domain error that knows its gRPC code and documented reason.
type Error struct {
	Code       codes.Code
	Reason     errorsv1.ErrorReason
	Message    string
	Violations []*errdetails.BadRequest_FieldViolation
	Metadata   map[string]string
	cause      error
}

// Error implements error.
func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.cause)
	}
	return e.Message
}

// Unwrap exposes the cause for errors.Is/As.
func (e *Error) Unwrap() error { return e.cause }

// GRPCStatus lets grpc-go and status.FromError understand *Error directly.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	info := &errdetails.ErrorInfo{Reason: e.Reason.String(), Domain: Domain, Metadata: e.Metadata}
	withDetails, err := st.WithDetails(info)
	if err != nil {
		return st
	}
	if len(e.Violations) > 0 {
		if d, err := withDetails.WithDetails(&errdetails.BadRequest{FieldViolations: e.Violations}); err == nil {
			withDetails = d
		}
	}
	return withDetails
}

// Wrap keeps cause for logs while the client sees only e's message.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// New builds an error with an explicit code and reason.
func New(code codes.Code, reason errorsv1.ErrorReason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Violation is one field problem of an InvalidArgument error.
type Violation struct {
	Field       string
	Description string
}

// InvalidArgument reports bad fields; the message lists them so that clients that only
// read `message` still learn which field is wrong.
func InvalidArgument(violations ...Violation) *Error {
	return InvalidArgumentReason(errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, violations...)
}

// InvalidArgumentReason is InvalidArgument with a more specific reason.
func InvalidArgumentReason(reason errorsv1.ErrorReason, violations ...Violation) *Error {
	e := &Error{Code: codes.InvalidArgument, Reason: reason}
	parts := make([]string, 0, len(violations))
	for _, v := range violations {
		e.Violations = append(e.Violations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		if v.Field != "" {
			parts = append(parts, v.Field+": "+v.Description)
		} else {
			parts = append(parts, v.Description)
		}
	}
	e.Message = strings.Join(parts, "; ")
	if e.Message == "" {
		e.Message = "invalid argument"
	}
	return e
}

// Field is shorthand for InvalidArgument with one violation.
func Field(field, format string, args ...any) *Error {
	return InvalidArgument(Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// NotFound reports a missing resource. Resources of other tenants are reported the
// same way, so the message must not depend on whether the row exists elsewhere.
func NotFound(kind, id string) *Error {
	return New(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, "%s %q not found", kind, id)
}

// AlreadyExists reports a unique-key conflict.
func AlreadyExists(format string, args ...any) *Error {
	return New(codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, format, args...)
}

// PermissionDenied reports an authenticated caller that may not do this.
func PermissionDenied(format string, args ...any) *Error {
	return New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, format, args...)
}

// Unauthenticated reports a missing or bad credential with a specific reason.
func Unauthenticated(reason errorsv1.ErrorReason, format string, args ...any) *Error {
	return New(codes.Unauthenticated, reason, format, args...)
}

// FailedPrecondition reports a resource in the wrong state.
func FailedPrecondition(format string, args ...any) *Error {
	return New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, format, args...)
}

// Unavailable reports a dependency that is down.
func Unavailable(format string, args ...any) *Error {
	return New(codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE, format, args...)
}

// Internal masks cause from the client; the interceptor logs it.
func Internal(cause error) *Error {
	return (&Error{Code: codes.Internal, Reason: errorsv1.ErrorReason_ERROR_REASON_INTERNAL, Message: "internal error"}).Wrap(cause)
}

// reasonForCode gives statuses produced outside our code (grpc-go, interceptors
// from libraries) a documented reason.
var reasonForCode = map[codes.Code]errorsv1.ErrorReason{
	codes.InvalidArgument:    errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.OutOfRange:         errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.Unauthenticated:    errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN,
	codes.PermissionDenied:   errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
	codes.NotFound:           errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
	codes.AlreadyExists:      errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
	codes.FailedPrecondition: errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
	codes.ResourceExhausted:  errorsv1.ErrorReason_ERROR_REASON_RATE_LIMITED,
	codes.Unimplemented:      errorsv1.ErrorReason_ERROR_REASON_UNIMPLEMENTED,
	codes.Unavailable:        errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
	codes.Internal:           errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.Unknown:            errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
	codes.DataLoss:           errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
}

// ToStatus converts any error into the status a client may see. The second result
// reports whether the error was internal (masked), so the caller logs its cause.
func ToStatus(err error) (*status.Status, bool) {
	if err == nil {
		return status.New(codes.OK, ""), false
	}
	var e *Error
	if errors.As(err, &e) {
		if masked(e.Code) {
			// Whatever message the code built, the client sees only the generic one.
			return Internal(err).GRPCStatus(), true
		}
		return e.GRPCStatus(), false
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	}
	st, ok := status.FromError(err)
	if !ok || masked(st.Code()) {
		return Internal(err).GRPCStatus(), true
	}
	if hasErrorInfo(st) {
		return st, false
	}
	reason, known := reasonForCode[st.Code()]
	if !known {
		return st, false
	}
	out := &Error{Code: st.Code(), Reason: reason, Message: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			out.Violations = append(out.Violations, br.GetFieldViolations()...)
		}
	}
	return out.GRPCStatus(), false
}

// masked reports whether a code means a server fault whose message must not reach
// the client.
func masked(code codes.Code) bool {
	return code == codes.Internal || code == codes.Unknown || code == codes.DataLoss
}

func hasErrorInfo(st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.ErrorInfo); ok {
			return true
		}
	}
	return false
}

// ReasonOf returns the documented reason carried by err, or UNSPECIFIED.
func ReasonOf(err error) errorsv1.ErrorReason {
	st, _ := ToStatus(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return errorsv1.ErrorReason(errorsv1.ErrorReason_value[info.GetReason()])
		}
	}
	return errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}
