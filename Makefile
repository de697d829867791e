# Manushya's developer entry points. `make` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
export GOBIN := $(BIN)

# Pinned tool versions; `make tools` installs each with `go install` into ./.bin.
BUF_VERSION            := v1.75.0
PROTOC_GEN_GO_VERSION  := v1.36.12
PROTOC_GEN_GRPC_VERSION:= v1.6.2
GRPC_GATEWAY_VERSION   := v2.33.0
GOLANGCI_LINT_VERSION  := v2.15.0
SQLC_VERSION           := v1.31.1

GO_TEST_FLAGS ?= -count=1 -timeout=15m

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## Install and start what is missing on this machine (PostgreSQL + pgvector, Redis, NATS).
	@scripts/setup.sh

$(BIN)/buf:
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GRPC_VERSION)
$(BIN)/protoc-gen-grpc-gateway:
	go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
$(BIN)/protoc-gen-openapiv2:
	go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
$(BIN)/golangci-lint:
	go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
$(BIN)/sqlc:
	go install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

PROTO_TOOLS := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-grpc-gateway $(BIN)/protoc-gen-openapiv2

.PHONY: tools
tools: $(PROTO_TOOLS) $(BIN)/golangci-lint $(BIN)/sqlc ## Install the pinned code generators and linters into ./.bin.

.PHONY: generate
generate: $(PROTO_TOOLS) $(BIN)/sqlc ## Regenerate pkg/pb (buf) and the sqlc query code.
	scripts/proto-deps.sh
	rm -rf pkg/pb/manushya pkg/pb/openapi/*.json
	buf generate
	find services -name sqlc.yaml -print0 | xargs -0 -r -n1 sqlc generate -f

.PHONY: build
build: ## Build the manushya binary into ./bin.
	go build -o bin/manushya ./cmd/manushya

.PHONY: test
test: ## Install what is missing, then run every test against real PostgreSQL, Redis and NATS.
	@scripts/setup.sh
	go test $(GO_TEST_FLAGS) ./... ./pkg/pb/...

.PHONY: lint
lint: $(PROTO_TOOLS) $(BIN)/golangci-lint ## gofmt, go vet, golangci-lint, buf lint and buf breaking against main.
	scripts/proto-deps.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^pkg/pb/'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '^pkg/pb/'); exit 1)
	go vet ./...
	golangci-lint run ./...
	buf lint
	scripts/buf-breaking.sh main

.PHONY: dev
dev: build ## Install what is missing, build, and run the whole suite in one process.
	@scripts/setup.sh
	MANUSHYA_DATABASE_URL=$${MANUSHYA_DATABASE_URL:-postgres://manushya_app:manushya_app@127.0.0.1:5432/manushya?sslmode=disable} \
	MANUSHYA_DATABASE_MIGRATE_URL=$${MANUSHYA_DATABASE_MIGRATE_URL:-postgres://manushya:manushya@127.0.0.1:5432/manushya?sslmode=disable} \
	./bin/manushya dev

.PHONY: locomo
locomo: ## Retrieval quality on LoCoMo (../shared/data/locomo): evidence recall@5/@10 per search mode.
	@scripts/setup.sh
	go test ./services/memory -run '^$$' -bench BenchmarkLoCoMo -benchtime 1x

.PHONY: helm-lint
helm-lint: ## Render the Helm chart with Helm's own packages, check it, and check deploy/k8s/rendered is current.
	go test -count=1 ./deploy/k8s/
	go run ./deploy/k8s/render -check

.PHONY: bench
bench: ## Run the Go benchmarks (see docs/benchmarks.md for the load tests).
	@scripts/setup.sh
	go test -run '^$$' -bench . -benchmem ./...
