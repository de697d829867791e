// Package gateway is Manushya's REST edge: a grpc-gateway ServeMux in front of the
// gRPC services, plus the few HTTP-only documents a REST client expects.
//
// The gateway never imports a service. It dials every distinct upstream address once
// and registers the generated handlers of each service against that connection, so
// the one-process and the distributed deployments behave the same. Authentication,
// validation and authorization stay in the services: the gateway only passes the
// caller's credential along.
//
// What it adds on top of grpc-gateway, and why:
//
//   - JSON uses the proto field names (snake_case) both ways, because that is the
//     REST contract inherited from the original product. Responses emit unpopulated
//     fields (zero values, empty lists, null messages) so every response of a method
//     has the same shape, as the original product's responses did.
//   - Unknown request fields are rejected (google.protobuf.Struct fields still take
//     any key), and every request-side problem becomes a 400 with an ErrorInfo and a
//     BadRequest naming the field, instead of grpc-gateway's bare message. An
//     oversized body is a 400 with reason ERROR_REASON_REQUEST_TOO_LARGE, not a 413,
//     as the errors enum documents.
//   - Enum values in a request body may be written by their short name, in lower
//     case: "mode": "hybrid" for SEARCH_MODE_HYBRID, "op": "eq" for OPERATOR_EQ,
//     "format": "zip" (the enum's prefix comes from its *_UNSPECIFIED value).
//     Responses always carry the full names.
//   - A path answers with and without one trailing slash.
//   - X-Request-Id is accepted or generated (UUIDv7), sent upstream and echoed back.
//   - Rate-limit headers and Retry-After set by a service reach the HTTP client.
//   - A response carrying authorization_url or redirect_url (SSO) becomes a 302.
//   - GET /v1/openapi.json serves the merged OpenAPI document, GET /v1/docs an API
//     reference page that loads nothing from outside this server, and
//     /.well-known/jwks.json the identity service's signing keys.
package gateway
