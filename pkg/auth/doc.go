// Package auth carries who is calling: the Principal in the request context, the
// credential read from gRPC metadata, and the authentication interceptor that turns
// the one into the other.
//
// Credentials come as "authorization: Bearer <token>" or "x-api-key: <key>". API keys
// start with "mk_"; anything else after Bearer is a JWT access token. Verifying either
// is the job of an Authenticator: the identity service verifies against its own store,
// every other service asks the identity service (and caches the answer briefly).
package auth
