// Package apierr is the one place where errors become gRPC statuses.
//
// Domain code returns *Error values (or plain errors, which are treated as internal).
// The error-translation interceptor in pkg/grpcserver turns every handler error into
// a status carrying a google.rpc.ErrorInfo (reason from the documented enum in
// proto/manushya/errors/v1, domain "manushya.ai") and, for field problems, a
// google.rpc.BadRequest. Internal errors are masked: the client sees a generic
// message and the request id; the cause goes to the log.
package apierr
