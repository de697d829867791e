package identity_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/gateway"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// auditCapture keeps the audit records a server hands over.
type auditCapture struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (c *auditCapture) Record(_ context.Context, r audit.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *auditCapture) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	raw, _ := json.Marshal(c.recs)
	return string(raw)
}

// TestSensitiveClaims: claims a tenant lists as sensitive are sealed at rest under
// the identity's key, returned to readers over gRPC and REST, redacted in events
// and audit records, and a sealed value moved to another identity does not open.
func TestSensitiveClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, identity.Migrations(), keyring.Migrations())
	kr := keyringtest.New(t, db.Pool, identity.TenantIDs(db.Pool))
	sink := &auditCapture{}
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper}, identity.Deps{Pool: db.Pool, Logger: slog.New(slog.DiscardHandler), Keyring: kr, Audit: sink})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{
		Authenticator: mod.Authenticator(), Logger: slog.New(slog.DiscardHandler),
		Observers: []grpc.UnaryServerInterceptor{audit.UnaryServerInterceptor(sink)},
	})
	require.NoError(t, err)
	mod.Register(srv)
	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	g, err := gateway.New(ctx, gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: lis.Addr().String()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	gw := httptest.NewServer(g.Handler())
	t.Cleanup(gw.Close)

	a, err := mod.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	bb, err := mod.Service().Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	ids := identityv1.NewIdentityServiceClient(conn)
	tenants := identityv1.NewTenantServiceClient(conn)
	rest := func(method, path, key, body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctx, method, gw.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-API-Key", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, out
	}
	const ssn, dob, ssn2 = "123-45-6789", "1990-01-31", "987-65-4321"
	plaintexts := []string{ssn, dob, ssn2}
	noPlaintext := func(t *testing.T, where string) {
		t.Helper()
		for _, sql := range []string{
			`SELECT claims::text::bytea FROM identity.identities`,
			`SELECT payload FROM identity.outbox`,
			`SELECT sealed FROM identity.sensitive_claims`,
		} {
			for _, v := range adminBytes(t, db, sql) {
				for _, p := range plaintexts {
					require.NotContains(t, string(v), p, "%s: %s", where, sql)
				}
			}
		}
		for _, p := range plaintexts {
			require.NotContains(t, sink.all(), p, "%s: audit records", where)
		}
	}

	// Before the tenant lists it, a claim is plain; listing it seals the values
	// identities already hold, in the same update.
	early, err := ids.CreateIdentity(as(a.APIKey), &identityv1.CreateIdentityRequest{ExternalId: "early", Claims: mustStruct(t, map[string]any{"team": "red", "ssn": ssn})})
	require.NoError(t, err)
	require.Equal(t, ssn, early.GetIdentity().GetClaims().AsMap()["ssn"])
	_, err = adminConn(t, db).Exec(ctx, `DELETE FROM identity.outbox`)
	require.NoError(t, err)
	sink.mu.Lock()
	sink.recs = nil
	sink.mu.Unlock()

	// Bad input names the field.
	_, err = tenants.UpdateTenant(as(a.APIKey), &identityv1.UpdateTenantRequest{
		Tenant:     &identityv1.Tenant{Id: a.TenantID, Settings: &identityv1.TenantSettings{SensitiveClaims: []string{"ssn", "ssn"}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"settings.sensitive_claims"}},
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), "sensitive_claims")
	st, body := rest(http.MethodPatch, "/v1/tenants/"+a.TenantID, a.APIKey, `{"settings":{"sensitive_claims":["ssn","dob"]}}`)
	require.Equal(t, http.StatusOK, st, body)
	require.Equal(t, []any{"ssn", "dob"}, body["tenant"].(map[string]any)["settings"].(map[string]any)["sensitive_claims"])
	noPlaintext(t, "after listing")
	got, err := ids.GetIdentity(as(a.APIKey), &identityv1.GetIdentityRequest{Id: early.GetIdentity().GetId()})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"team": "red", "ssn": ssn}, got.GetIdentity().GetClaims().AsMap())

	// Create over REST and gRPC: the answer carries the values, the database does not.
	st, body = rest(http.MethodPost, "/v1/identity", a.APIKey, `{"external_id":"rest-person","claims":{"dob":"`+dob+`","team":"blue"}}`)
	require.Equal(t, http.StatusOK, st, body)
	restID := body["identity"].(map[string]any)["id"].(string)
	require.Equal(t, dob, body["identity"].(map[string]any)["claims"].(map[string]any)["dob"])
	created, err := ids.CreateIdentity(as(a.APIKey), &identityv1.CreateIdentityRequest{
		ExternalId: "grpc-person", Claims: mustStruct(t, map[string]any{"ssn": ssn, "dob": dob, "team": "green"}), IdempotencyKey: "sens-1",
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"ssn": ssn, "dob": dob, "team": "green"}, created.GetIdentity().GetClaims().AsMap())
	replay, err := ids.CreateIdentity(as(a.APIKey), &identityv1.CreateIdentityRequest{
		ExternalId: "grpc-person", Claims: mustStruct(t, map[string]any{"ssn": ssn, "dob": dob, "team": "green"}), IdempotencyKey: "sens-1",
	})
	require.NoError(t, err)
	require.Equal(t, created.GetIdentity().GetClaims().AsMap(), replay.GetIdentity().GetClaims().AsMap(), "an idempotent replay opens them too")
	gid := created.GetIdentity().GetId()

	// Read back over REST (get, me-like list) and gRPC.
	st, body = rest(http.MethodGet, "/v1/identity/"+restID, a.APIKey, "")
	require.Equal(t, http.StatusOK, st, body)
	require.Equal(t, dob, body["identity"].(map[string]any)["claims"].(map[string]any)["dob"])
	list, err := ids.ListIdentities(as(a.APIKey), &identityv1.ListIdentitiesRequest{ExternalId: "grpc-person"})
	require.NoError(t, err)
	require.Len(t, list.GetIdentities(), 1)
	require.Equal(t, ssn, list.GetIdentities()[0].GetClaims().AsMap()["ssn"])

	bulk, err := ids.BulkCreateIdentities(as(a.APIKey), &identityv1.BulkCreateIdentitiesRequest{Identities: []*identityv1.CreateIdentityRequest{
		{ExternalId: "bulk-1", Claims: mustStruct(t, map[string]any{"ssn": ssn2})},
	}})
	require.NoError(t, err)
	require.Equal(t, ssn2, bulk.GetResults()[0].GetIdentity().GetClaims().AsMap()["ssn"])

	// Sealed under the identity's own key, in the keyring format.
	for _, v := range adminBytes(t, db, `SELECT sealed FROM identity.sensitive_claims WHERE identity_id = $1`, uuid.MustParse(gid)) {
		h, ok := keyring.Parse(v)
		require.True(t, ok)
		require.Equal(t, keyring.KindIdentity, h.Kind)
	}

	// Update merges (a new ssn) and replaces (only team left).
	up, err := ids.UpdateIdentity(as(a.APIKey), &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: gid, Claims: mustStruct(t, map[string]any{"ssn": ssn2})},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"ssn": ssn2, "dob": dob, "team": "green"}, up.GetIdentity().GetClaims().AsMap())
	st, body = rest(http.MethodPatch, "/v1/identity/"+restID+"?update_mask=claims", a.APIKey, `{"claims":{"ssn":"`+ssn2+`"}}`)
	require.Equal(t, http.StatusOK, st, body)
	require.Equal(t, ssn2, body["identity"].(map[string]any)["claims"].(map[string]any)["ssn"])
	noPlaintext(t, "after writes")

	// Events and audit records say the claim is there, never what it is.
	var payloads []string
	for _, p := range adminBytes(t, db, `SELECT payload FROM identity.outbox WHERE subject LIKE '%identity.created' OR subject LIKE '%identity.updated'`) {
		payloads = append(payloads, string(p))
	}
	require.NotEmpty(t, payloads)
	require.Contains(t, strings.Join(payloads, "\n"), audit.Redacted)
	require.Contains(t, sink.all(), audit.Redacted)
	require.Contains(t, sink.all(), "green", "other claims stay in the audit record")

	// A rotation of the identity's key: the re-encryption job finds the sealed
	// claims (row_ref is their bound row) and moves them to the new key.
	rid := uuid.MustParse(restID)
	newKey, err := kr.Rotate(ctx, keyring.Identity(uuid.MustParse(a.TenantID), rid))
	require.NoError(t, err)
	rep, err := kr.Reencrypt(ctx)
	require.NoError(t, err)
	for _, p := range rep.Fields {
		if p.Field == "identity.sensitive_claims.sealed" {
			require.EqualValues(t, 2, p.Resealed, "dob and ssn of the rotated identity")
			require.Zero(t, p.Failed)
		}
	}
	for _, v := range adminBytes(t, db, `SELECT sealed FROM identity.sensitive_claims WHERE identity_id = $1`, rid) {
		h, _ := keyring.Parse(v)
		require.Equal(t, newKey, h.KeyID)
	}
	got, err = ids.GetIdentity(as(a.APIKey), &identityv1.GetIdentityRequest{Id: restID})
	require.NoError(t, err)
	require.Equal(t, dob, got.GetIdentity().GetClaims().AsMap()["dob"])

	repl, err := ids.UpdateIdentity(as(a.APIKey), &identityv1.UpdateIdentityRequest{
		Identity: &identityv1.Identity{Id: gid, Claims: mustStruct(t, map[string]any{"team": "green"})}, ReplaceClaims: true,
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"team": "green"}, repl.GetIdentity().GetClaims().AsMap())
	require.Empty(t, adminBytes(t, db, `SELECT sealed FROM identity.sensitive_claims WHERE identity_id = $1`, uuid.MustParse(gid)))

	// Another tenant cannot read them.
	_, err = ids.GetIdentity(as(bb.APIKey), &identityv1.GetIdentityRequest{Id: restID})
	require.Equal(t, codes.NotFound, status.Code(err))

	// A sealed value moved to another identity (or to another claim name) does not
	// open: bound to the identity and the name.
	_, err = adminConn(t, db).Exec(ctx, `INSERT INTO identity.sensitive_claims (tenant_id, identity_id, name, sealed)
		SELECT tenant_id, $2, name, sealed FROM identity.sensitive_claims WHERE identity_id = $1 AND name = 'dob'`,
		uuid.MustParse(restID), uuid.MustParse(gid))
	require.NoError(t, err)
	_, err = ids.GetIdentity(as(a.APIKey), &identityv1.GetIdentityRequest{Id: gid})
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)
	st, _ = rest(http.MethodGet, "/v1/identity/"+gid, a.APIKey, "")
	require.Equal(t, http.StatusInternalServerError, st)
	_, err = adminConn(t, db).Exec(ctx, `DELETE FROM identity.sensitive_claims WHERE identity_id = $1`, uuid.MustParse(gid))
	require.NoError(t, err)
	_, err = adminConn(t, db).Exec(ctx, `UPDATE identity.sensitive_claims SET name = 'birth' WHERE identity_id = $1 AND name = 'dob'`, uuid.MustParse(restID))
	require.NoError(t, err)
	_, err = ids.GetIdentity(as(a.APIKey), &identityv1.GetIdentityRequest{Id: restID})
	require.Error(t, err, "renamed: bound to the claim name")
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}
