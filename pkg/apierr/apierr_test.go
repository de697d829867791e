package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// details splits a status's details into the two kinds we attach.
func details(t *testing.T, st *status.Status) (*errdetails.ErrorInfo, *errdetails.BadRequest) {
	t.Helper()
	var (
		info *errdetails.ErrorInfo
		br   *errdetails.BadRequest
	)
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.ErrorInfo:
			require.Nil(t, info, "status carries two ErrorInfo details")
			info = v
		case *errdetails.BadRequest:
			require.Nil(t, br, "status carries two BadRequest details")
			br = v
		case error:
			require.NoError(t, v, "undecodable detail")
		default:
			require.Failf(t, "unexpected detail", "%T", d)
		}
	}
	return info, br
}

func TestGRPCStatusCarriesErrorInfo(t *testing.T) {
	t.Parallel()
	e := apierr.NotFound("identity", "0190f0f0-0000-7000-8000-000000000001")
	e.Metadata = map[string]string{"kind": "identity"}

	st := e.GRPCStatus()
	require.Equal(t, codes.NotFound, st.Code())
	require.Equal(t, `identity "0190f0f0-0000-7000-8000-000000000001" not found`, st.Message())
	info, br := details(t, st)
	require.NotNil(t, info)
	require.Nil(t, br, "no violations, no BadRequest")
	require.Equal(t, apierr.Domain, info.GetDomain())
	require.Equal(t, "manushya.ai", info.GetDomain())
	require.Equal(t, "ERROR_REASON_NOT_FOUND", info.GetReason())
	require.Equal(t, map[string]string{"kind": "identity"}, info.GetMetadata())

	// grpc-go finds the status through the GRPCStatus method, also when wrapped.
	fromErr, ok := status.FromError(fmt.Errorf("load: %w", e))
	require.True(t, ok)
	require.Equal(t, codes.NotFound, fromErr.Code())
}

func TestGRPCStatusCarriesViolations(t *testing.T) {
	t.Parallel()
	e := apierr.InvalidArgument(
		apierr.Violation{Field: "external_id", Description: "must not be empty"},
		apierr.Violation{Field: "roles[0]", Description: "does not match pattern"},
	)
	st := e.GRPCStatus()
	require.Equal(t, codes.InvalidArgument, st.Code())
	info, br := details(t, st)
	require.NotNil(t, info)
	require.Equal(t, "ERROR_REASON_INVALID_ARGUMENT", info.GetReason())
	require.NotNil(t, br)
	require.Len(t, br.GetFieldViolations(), 2)
	require.Equal(t, "external_id", br.GetFieldViolations()[0].GetField())
	require.Equal(t, "must not be empty", br.GetFieldViolations()[0].GetDescription())
	require.Equal(t, "roles[0]", br.GetFieldViolations()[1].GetField())
	require.Equal(t, "does not match pattern", br.GetFieldViolations()[1].GetDescription())
}

func TestInvalidArgumentMessageListsFields(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		violations []apierr.Violation
		want       string
	}{
		"none": {want: "invalid argument"},
		"one":  {violations: []apierr.Violation{{Field: "id", Description: "value must be a valid UUID"}}, want: "id: value must be a valid UUID"},
		"several": {
			violations: []apierr.Violation{
				{Field: "page_size", Description: "must be at most 1000"},
				{Field: "page_token", Description: "too long"},
			},
			want: "page_size: must be at most 1000; page_token: too long",
		},
		"without field": {violations: []apierr.Violation{{Description: "exactly one of a or b"}}, want: "exactly one of a or b"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := apierr.InvalidArgument(tc.violations...)
			require.Equal(t, codes.InvalidArgument, e.Code)
			require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, e.Reason)
			require.Equal(t, tc.want, e.Message)
			require.Equal(t, tc.want, e.Error())
			require.Len(t, e.Violations, len(tc.violations))
		})
	}
}

func TestInvalidArgumentReasonAndField(t *testing.T) {
	t.Parallel()
	e := apierr.InvalidArgumentReason(errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN,
		apierr.Violation{Field: "page_token", Description: "unreadable"})
	require.Equal(t, codes.InvalidArgument, e.Code)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN, e.Reason)
	require.Equal(t, "page_token: unreadable", e.Message)

	f := apierr.Field("page_size", "must be at most %d", 1000)
	require.Equal(t, "page_size: must be at most 1000", f.Message)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, apierr.ReasonOf(f))
	_, br := details(t, f.GRPCStatus())
	require.Equal(t, "page_size", br.GetFieldViolations()[0].GetField())
}

func TestConstructors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err    *apierr.Error
		code   codes.Code
		reason errorsv1.ErrorReason
		msg    string
	}{
		"new": {
			apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_CONFLICT, "key %q reused", "k1"),
			codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_CONFLICT, `key "k1" reused`,
		},
		"not found": {
			apierr.NotFound("memory", "m1"),
			codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, `memory "m1" not found`,
		},
		"already exists": {
			apierr.AlreadyExists("slug %s is taken", "acme"),
			codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, "slug acme is taken",
		},
		"permission denied": {
			apierr.PermissionDenied("no %s", "way"),
			codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, "no way",
		},
		"unauthenticated": {
			apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "token expired"),
			codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "token expired",
		},
		"failed precondition": {
			apierr.FailedPrecondition("identity is deleted"),
			codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "identity is deleted",
		},
		"unavailable": {
			apierr.Unavailable("embedding backend down"),
			codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "embedding backend down",
		},
		"internal": {
			apierr.Internal(errors.New("secret detail")),
			codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "internal error",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.code, tc.err.Code)
			require.Equal(t, tc.reason, tc.err.Reason)
			require.Equal(t, tc.msg, tc.err.Message)
			st, _ := apierr.ToStatus(tc.err)
			require.Equal(t, tc.code, st.Code())
			require.Equal(t, tc.msg, st.Message())
			require.Equal(t, tc.reason, apierr.ReasonOf(tc.err))
		})
	}
}

func TestWrapKeepsCauseAndClientMessage(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("row locked by another transaction")
	base := apierr.FailedPrecondition("identity is busy")
	wrapped := base.Wrap(sentinel)

	require.ErrorIs(t, wrapped, sentinel)
	require.ErrorIs(t, fmt.Errorf("update: %w", wrapped), sentinel)
	require.Equal(t, "identity is busy: row locked by another transaction", wrapped.Error())
	require.NotErrorIs(t, base, sentinel, "Wrap must not change the receiver")
	require.Equal(t, "identity is busy", base.Error())

	st, internal := apierr.ToStatus(wrapped)
	require.False(t, internal)
	require.Equal(t, codes.FailedPrecondition, st.Code())
	require.Equal(t, "identity is busy", st.Message(), "the cause never reaches the client")
	require.Equal(t, base.GRPCStatus().Proto(), wrapped.GRPCStatus().Proto())

	var target *apierr.Error
	require.ErrorAs(t, fmt.Errorf("outer: %w", wrapped), &target)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, target.Reason)
}

func TestToStatusNil(t *testing.T) {
	t.Parallel()
	st, internal := apierr.ToStatus(nil)
	require.False(t, internal)
	require.Equal(t, codes.OK, st.Code())
	require.NoError(t, st.Err())
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED, apierr.ReasonOf(nil))
}

func TestToStatusPassesErrorThrough(t *testing.T) {
	t.Parallel()
	e := apierr.InvalidArgument(apierr.Violation{Field: "id", Description: "bad"})
	st, internal := apierr.ToStatus(fmt.Errorf("handler: %w", e))
	require.False(t, internal)
	require.True(t, proto.Equal(e.GRPCStatus().Proto(), st.Proto()))
}

func TestToStatusContextErrors(t *testing.T) {
	t.Parallel()
	st, internal := apierr.ToStatus(fmt.Errorf("query: %w", context.Canceled))
	require.False(t, internal)
	require.Equal(t, codes.Canceled, st.Code())
	require.Equal(t, "request canceled", st.Message())

	st, internal = apierr.ToStatus(fmt.Errorf("query: %w", context.DeadlineExceeded))
	require.False(t, internal)
	require.Equal(t, codes.DeadlineExceeded, st.Code())
	require.Equal(t, "deadline exceeded", st.Message())
}

func TestToStatusMasksInternalErrors(t *testing.T) {
	t.Parallel()
	for name, err := range map[string]error{
		"plain":            errors.New("pq: password authentication failed for user manushya"),
		"wrapped plain":    fmt.Errorf("load identity: %w", errors.New("dial tcp 10.0.0.7:5432")),
		"unknown status":   status.Error(codes.Unknown, "dial tcp 10.0.0.7:5432"),
		"internal status":  status.Error(codes.Internal, "stack trace here"),
		"data loss status": status.Error(codes.DataLoss, "checksum of page 7"),
		"internal status with ErrorInfo": func() error {
			st, err := status.New(codes.Internal, "leaky").WithDetails(&errdetails.ErrorInfo{Reason: "X", Domain: "other"})
			require.NoError(t, err)
			return st.Err()
		}(),
		"internal apierr":  apierr.Internal(errors.New("leaky")),
		"internal via New": apierr.New(codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "leaky %s", "dsn"),
		"unknown via New":  apierr.New(codes.Unknown, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "leaky"),
		"data loss via New": apierr.New(codes.DataLoss, errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
			"leaky"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, internal := apierr.ToStatus(err)
			require.True(t, internal, "the caller must log the cause")
			require.Equal(t, codes.Internal, st.Code())
			require.Equal(t, "internal error", st.Message())
			info, _ := details(t, st)
			require.NotNil(t, info)
			require.Equal(t, apierr.Domain, info.GetDomain())
			require.Equal(t, "ERROR_REASON_INTERNAL", info.GetReason())
			require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, apierr.ReasonOf(err))
		})
	}
}

func TestToStatusAddsErrorInfoToForeignStatuses(t *testing.T) {
	t.Parallel()
	for code, reason := range map[codes.Code]string{
		codes.InvalidArgument:    "ERROR_REASON_INVALID_ARGUMENT",
		codes.OutOfRange:         "ERROR_REASON_INVALID_ARGUMENT",
		codes.Unauthenticated:    "ERROR_REASON_CREDENTIALS_UNKNOWN",
		codes.PermissionDenied:   "ERROR_REASON_PERMISSION_DENIED",
		codes.NotFound:           "ERROR_REASON_NOT_FOUND",
		codes.AlreadyExists:      "ERROR_REASON_ALREADY_EXISTS",
		codes.FailedPrecondition: "ERROR_REASON_FAILED_PRECONDITION",
		codes.ResourceExhausted:  "ERROR_REASON_RATE_LIMITED",
		codes.Unimplemented:      "ERROR_REASON_UNIMPLEMENTED",
		codes.Unavailable:        "ERROR_REASON_UNAVAILABLE",
	} {
		t.Run(code.String(), func(t *testing.T) {
			t.Parallel()
			st, internal := apierr.ToStatus(status.Error(code, "from a library"))
			require.False(t, internal)
			require.Equal(t, code, st.Code())
			require.Equal(t, "from a library", st.Message())
			info, br := details(t, st)
			require.NotNil(t, info)
			require.Equal(t, apierr.Domain, info.GetDomain())
			require.Equal(t, reason, info.GetReason())
			require.Nil(t, br)
		})
	}
}

func TestToStatusKeepsBadRequestOfForeignStatus(t *testing.T) {
	t.Parallel()
	in, err := status.New(codes.InvalidArgument, "bad body").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "memory.text", Description: "required"}},
	})
	require.NoError(t, err)

	st, internal := apierr.ToStatus(in.Err())
	require.False(t, internal)
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Equal(t, "bad body", st.Message())
	info, br := details(t, st)
	require.Equal(t, "ERROR_REASON_INVALID_ARGUMENT", info.GetReason())
	require.NotNil(t, br)
	require.Len(t, br.GetFieldViolations(), 1)
	require.Equal(t, "memory.text", br.GetFieldViolations()[0].GetField())
	require.Equal(t, "required", br.GetFieldViolations()[0].GetDescription())
}

func TestToStatusUnmappedCodePassesThrough(t *testing.T) {
	t.Parallel()
	in := status.New(codes.Aborted, "transaction aborted")
	st, internal := apierr.ToStatus(in.Err())
	require.False(t, internal)
	require.True(t, proto.Equal(in.Proto(), st.Proto()))
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED, apierr.ReasonOf(in.Err()))
}

func TestToStatusKeepsExistingErrorInfo(t *testing.T) {
	t.Parallel()
	// As a downstream Manushya service would answer: its reason must survive the hop.
	in, err := status.New(codes.Unauthenticated, "token expired").WithDetails(
		&errdetails.ErrorInfo{Reason: "ERROR_REASON_CREDENTIALS_EXPIRED", Domain: apierr.Domain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "f", Description: "d"}}},
	)
	require.NoError(t, err)

	st, internal := apierr.ToStatus(in.Err())
	require.False(t, internal)
	require.True(t, proto.Equal(in.Proto(), st.Proto()), "a status with ErrorInfo passes unchanged")
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, apierr.ReasonOf(in.Err()))
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
		apierr.ReasonOf(fmt.Errorf("bootstrap: %w", apierr.AlreadyExists("tenant exists"))))
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
		apierr.ReasonOf(status.Error(codes.NotFound, "gone")))
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, apierr.ReasonOf(errors.New("boom")))

	foreign, err := status.New(codes.NotFound, "x").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_OURS", Domain: "example.com"})
	require.NoError(t, err)
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED, apierr.ReasonOf(foreign.Err()),
		"a reason outside the documented enum is unspecified")
}
