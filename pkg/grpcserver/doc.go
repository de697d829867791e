// Package grpcserver builds the gRPC server every Manushya service runs on, with one
// interceptor chain in a fixed order:
//
//	recovery -> request id -> logging -> metrics (+ tracing, as a stats handler)
//	-> authentication -> rate limit -> validation -> authorization -> error translation
//
// Authentication and authorization read the access option each RPC declares in its
// proto, so no handler can forget its check. Error translation is innermost so that it
// sees the handler's own error and the request id is already in the context when it
// logs a masked internal error. A second recovery sits just outside error
// translation, so a handler's panic is logged with the request id and reaches the
// logging and metrics interceptors as an INTERNAL call rather than unwinding past them.
package grpcserver
