package identity

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// EventSource is the CloudEvents source of this service's events.
const EventSource = "manushya/identity"

// Service holds the identity service's domain logic; the gRPC handlers in server.go
// translate to and from it.
type Service struct {
	store  *store.Store
	pepper []byte
	keyEnv string
	logger *slog.Logger
	// API keys, MFA and invitations (apikey_cache.go, mfa.go, invitations.go).
	keyCache *apiKeyCache
	mfa      mfaConfig
	invites  inviteConfig
	// Access and refresh tokens, logins and sessions (tokens.go, login.go, sessions.go).
	tokens *tokens
	sealer Sealer     // secrets at rest (sealing.go)
	sso    *ssoState  // single sign-on (sso.go)
	audit  audit.Sink // authentication events (audit.go); nil records none

	// The services holding the rest of an identity's data, for exports
	// (export.go); nil exports the identity service's data only.
	export *exportSources
}

// tenantOf returns the caller's tenant. Every tenant-scoped RPC works in the tenant
// of the credential, whatever the request says.
func tenantOf(ctx context.Context) (uuid.UUID, *auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return uuid.Nil, nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING, "no credential")
	}
	id, err := uuid.Parse(p.TenantID)
	if err != nil {
		return uuid.Nil, nil, apierr.Internal(fmt.Errorf("principal has tenant %q: %w", p.TenantID, err))
	}
	return id, p, nil
}

// parseID parses a request id already checked by protovalidate; the error still names
// the field for requests that bypass validation.
func parseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, apierr.Field(field, "must be a UUID")
	}
	return id, nil
}

// event builds a CloudEvent whose data is the resource in its API JSON form.
func event(tenant uuid.UUID, eventType, subject string, data proto.Message) (bus.Event, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(data)
	if err != nil {
		return bus.Event{}, fmt.Errorf("marshal %s event: %w", eventType, err)
	}
	return bus.NewEvent(tenant.String(), eventType, EventSource, subject, json.RawMessage(raw))
}

// idempotent runs create at most once per (tenant, method, key): a retry with the
// same request gets the stored response, a different request under the same key is
// refused. It runs inside the caller's transaction, so the stored response commits
// or rolls back with the change.
func idempotent[T proto.Message](ctx context.Context, tx *store.Tx, tenant uuid.UUID, method, key string, req proto.Message, resp T, create func() (T, error)) (T, error) {
	var zero T
	if key == "" {
		return create()
	}
	reqBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return zero, apierr.Internal(err)
	}
	hash := sha256.Sum256(reqBytes)
	prev, err := tx.GetIdempotentResponse(ctx, sqlc.GetIdempotentResponseParams{TenantID: tenant, Method: method, Key: key})
	switch err = store.MapErr(err); {
	case err == nil:
		if string(prev.RequestHash) != string(hash[:]) {
			return zero, apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_CONFLICT,
				"idempotency_key %q was used with a different request", key)
		}
		if err := proto.Unmarshal(prev.Response, resp); err != nil {
			return zero, apierr.Internal(err)
		}
		return resp, nil
	case !errors.Is(err, store.ErrNotFound):
		return zero, err
	}
	out, err := create()
	if err != nil {
		return zero, err
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return zero, apierr.Internal(err)
	}
	err = tx.SaveIdempotentResponse(ctx, sqlc.SaveIdempotentResponseParams{
		TenantID: tenant, Method: method, Key: key, RequestHash: hash[:], Response: b,
	})
	return out, store.MapErr(err)
}
