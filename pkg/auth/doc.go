// Package auth carries who is calling: the Principal in the request context, the
// credential read from gRPC metadata, and the authentication interceptor that turns
// the one into the other.
//
// Credentials come as "authorization: Bearer <token>" or "x-api-key: <key>". API keys
// start with "mk_"; anything else after Bearer is a JWT access token. Verifying either
// is the job of an Authenticator: the identity service verifies against its own store,
// every other service asks the identity service (and caches the answer briefly).
//
// Access tokens can be verified anywhere without a round trip: JWTVerifier checks
// the EdDSA signature (the algorithm is pinned, so "none" and HMAC tokens never
// verify), issuer, audience, expiry, not-before and lifetime, then the session
// against Revocations. Keys come from a KeySource: the identity service's own
// keyring, or JWKSKeys, which fetches AuthService.GetJwks. Revocations follows
// session.revoked and identity.tokens_revoked events on the bus (replaying the last
// token lifetime first), so a revoked session's tokens, and an identity's tokens
// from before a role was taken away (their "gen" claim is below its floor), are
// refused by every process about as fast as the event travels. MFA-enrollment
// tokens (their own audience) pass only for MFAEnrollmentMethods. Split sends
// bearer JWTs to such a verifier and API keys elsewhere.
package auth
