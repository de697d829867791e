// Package apitest runs the same API test cases over gRPC and over REST.
//
// The REST surface is a contract of its own (DESIGN.md section 8), so every API test
// should prove that a call behaves the same through the grpc-gateway edge as it does
// over gRPC. A Case names a gRPC method and its request message once; Run sends it
// both ways and checks the same expectations on both answers:
//
//   - over gRPC the request goes through conn.Invoke and the response is a new
//     instance of the method's output type, found in the global registries;
//   - over REST the request is translated with the method's google.api.http rule
//     (the primary binding): path parameters from the request's fields, the body
//     named by the rule encoded with protojson and proto field names, and every
//     other populated field as a query parameter. A 2xx or 3xx body is decoded
//     strictly into the same output type; an error body is decoded as a
//     google.rpc.Status so that ErrorInfo and BadRequest details can be checked.
//
// The expected REST status is the one grpc-gateway maps from the gRPC code
// (runtime.HTTPStatusFromCode), and the code inside the REST error body must be
// the expected gRPC code too.
//
// Things only REST has (malformed JSON, unknown fields, trailing slashes, routing)
// are RawCases, sent as written by RunRaw.
//
// The packages that define the services under test must be imported by the test
// binary (they always are when the test builds the servers), because methods and
// types are looked up in protoregistry.GlobalFiles and GlobalTypes.
package apitest
