#!/usr/bin/env bash
# proto-deps.sh gathers the third-party .proto files our protos import into
# .bin/proto-deps, taken from Go modules pinned in go.mod (and pkg/pb/go.mod). buf has
# no access to a schema registry here, so its `deps` cannot be used; nothing fetched is
# committed: the folder is ignored by git and rebuilt by `make generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bin/proto-deps
GATEWAY_V1=v1.16.0      # its third_party/googleapis carries google/api/*.proto
PROTOVALIDATE=v1.2.2    # github.com/bufbuild/protovalidate: buf/validate/validate.proto
GATEWAY_V2="$(cd pkg/pb && go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)"

dir_of() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }
gw1="$(dir_of github.com/grpc-ecosystem/grpc-gateway@$GATEWAY_V1)"
pv="$(dir_of github.com/bufbuild/protovalidate@$PROTOVALIDATE)"
gw2="$(dir_of github.com/grpc-ecosystem/grpc-gateway/v2@$GATEWAY_V2)"

rm -rf "$out"; mkdir -p "$out/google/api" "$out/google/rpc" "$out/buf/validate" "$out/protoc-gen-openapiv2/options"
cp "$gw1"/third_party/googleapis/google/api/{annotations,http,httpbody}.proto "$out/google/api/"
cp "$gw1"/third_party/googleapis/google/rpc/{status,error_details,code}.proto "$out/google/rpc/"
cp "$pv"/proto/protovalidate/buf/validate/validate.proto "$out/buf/validate/"
cp "$gw2"/protoc-gen-openapiv2/options/{annotations,openapiv2}.proto "$out/protoc-gen-openapiv2/options/"
chmod -R u+w "$out"
