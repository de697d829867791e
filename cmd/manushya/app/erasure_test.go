package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/pkg/keyring"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// erasureKEK is the key-encryption key the erasure tests run with, so the test can
// open sealed values with a keyring of its own.
var erasureKEK = strings.Repeat("3c", 32)

// rest sends one REST request with an API key ("Bearer ..." is sent as an access
// token) and returns the status and body.
func rest(t testing.TB, tgt apitest.Target, method, path, cred, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tgt.RESTBase+path, r)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.HasPrefix(cred, "Bearer "):
		req.Header.Set("Authorization", cred)
	case cred != "":
		req.Header.Set(apitest.APIKeyHeader, cred)
	}
	resp, err := tgt.HTTPClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

type receiptJSON struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	SubjectID   string `json:"subject_id"`
	RequestedBy string `json:"requested_by"`
	State       string `json:"state"`
	Counts      []struct {
		Service string `json:"service"`
		Kind    string `json:"kind"`
		Count   string `json:"count"` // int64 is a JSON string
	} `json:"counts"`
	PendingServices []string `json:"pending_services"`
	CompletedAt     string   `json:"completed_at"`
}

func (r receiptJSON) count(service, kind string) int64 {
	var n int64
	for _, c := range r.Counts {
		if c.Service == service && c.Kind == kind {
			var v int64
			_, _ = fmt.Sscan(c.Count, &v)
			n += v
		}
	}
	return n
}

// awaitReceipt polls GET /v1/erasures/{id} until the receipt is COMPLETED.
func awaitReceipt(t testing.TB, tgt apitest.Target, admin, id string, within time.Duration) receiptJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := rest(t, tgt, http.MethodGet, "/v1/erasures/"+id, admin, "")
		require.Equal(t, http.StatusOK, code, string(body))
		var got struct {
			Receipt receiptJSON `json:"receipt"`
		}
		require.NoError(t, json.Unmarshal(body, &got))
		if got.Receipt.State == "ERASURE_STATE_COMPLETED" {
			return got.Receipt
		}
		require.True(t, time.Now().Before(deadline), "receipt still %s, pending %v", got.Receipt.State, got.Receipt.PendingServices)
		time.Sleep(50 * time.Millisecond)
	}
}

// testKeyring opens the binary's sealed values from the test, over the same
// database and KEK.
func testKeyring(t testing.TB, s *stack) *keyring.Keyring {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), s.db.AppURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	kek, err := keyring.ParseKEK(erasureKEK)
	require.NoError(t, err)
	kms, err := keyring.NewLocalKMS(kek)
	require.NoError(t, err)
	kr, err := keyring.New(keyring.Options{Pool: pool, KMS: kms})
	require.NoError(t, err)
	require.NoError(t, kr.Register(keyring.Field{Name: "identity.mfa_totp.secret_sealed", Table: "identity.mfa_totp",
		Column: "secret_sealed", Key: "identity_id", Tenant: "tenant_id", Identity: "identity_id"}))
	return kr
}

// erasureSubject is an identity with a password session, MFA, an API key,
// memories (with versions and vectors) and metered usage.
type erasureSubject struct {
	id, apiKey, access, refresh string
	memories                    []string
}

func makeSubject(t *testing.T, tgt apitest.Target, admin, tenantSlug, external string, memories int) erasureSubject {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", admin)
	ids := identityv1.NewIdentityServiceClient(tgt.GRPC)
	authc := identityv1.NewAuthServiceClient(tgt.GRPC)
	created, err := ids.CreateIdentity(ctx, &identityv1.CreateIdentityRequest{ExternalId: external, Role: "user"})
	require.NoError(t, err)
	s := erasureSubject{id: created.GetIdentity().GetId()}
	const password = "correct horse battery staple"
	_, err = authc.SetPassword(ctx, &identityv1.SetPasswordRequest{IdentityId: s.id, NewPassword: password})
	require.NoError(t, err)
	login, err := authc.Login(context.Background(), &identityv1.LoginRequest{Tenant: tenantSlug, Identifier: external, Password: password})
	require.NoError(t, err)
	s.access, s.refresh = login.GetTokens().GetAccessToken(), login.GetTokens().GetRefreshToken()
	bearer := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.access)
	setup, err := authc.SetupMfa(bearer, &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = authc.VerifyMfa(bearer, &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)
	key, err := identityv1.NewApiKeyServiceClient(tgt.GRPC).CreateApiKey(ctx, &identityv1.CreateApiKeyRequest{Name: "own", IdentityId: s.id})
	require.NoError(t, err)
	s.apiKey = key.GetKey()
	mem := memoryv1.NewMemoryServiceClient(tgt.GRPC)
	own := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", s.apiKey)
	for i := range memories {
		m, err := mem.CreateMemory(own, &memoryv1.CreateMemoryRequest{Text: fmt.Sprintf("%s likes hiking trip %d", external, i), Wait: true})
		require.NoError(t, err)
		s.memories = append(s.memories, m.GetMemory().GetId())
	}
	// A change leaves a second version in the history.
	_, err = mem.UpdateMemory(own, &memoryv1.UpdateMemoryRequest{
		Memory:     &memoryv1.Memory{Id: s.memories[0], Text: external + " likes mountain hiking"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"text"}},
	})
	require.NoError(t, err)
	return s
}

func adminConn(t testing.TB, s *stack) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func countRows(t testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, conn.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// awaitUsage waits until the usage service metered the identity's memories, so
// the erasure has usage details to remove.
func awaitUsage(t testing.TB, conn *pgx.Conn, identity string) {
	t.Helper()
	require.Eventually(t, func() bool {
		return countRows(t, conn, `SELECT count(*) FROM usage.events WHERE identity_id = $1`, identity) > 0 &&
			countRows(t, conn, `SELECT count(*) FROM usage.rollup_daily WHERE identity_id = $1`, identity) > 0
	}, 30*time.Second, 50*time.Millisecond)
}

// TestEraseIdentityEndToEnd erases an identity over REST and then tries to read its
// data back through every API and straight from the database: nothing comes back,
// its credentials are refused, and a sealed value copied before the erasure no
// longer opens. Another identity and another tenant keep everything.
func TestEraseIdentityEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all", "MANUSHYA_ENCRYPTION_KEK="+erasureKEK)
	ctx := context.Background()
	bootA, err := a.Identity().Service().Bootstrap(ctx, "erase-a", "Erase A")
	require.NoError(t, err)
	bootB, err := a.Identity().Service().Bootstrap(ctx, "erase-b", "Erase B")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	admin := bootA.APIKey
	db := adminConn(t, s)
	kr := testKeyring(t, s)

	subject := makeSubject(t, tgt, admin, "erase-a", "erase-me@example.com", 3)
	bystander := makeSubject(t, tgt, admin, "erase-a", "keep-me@example.com", 2)
	other := makeSubject(t, tgt, bootB.APIKey, "erase-b", "other-tenant@example.com", 2)
	awaitUsage(t, db, subject.id)
	awaitUsage(t, db, bystander.id)

	tenant, sid := uuid.MustParse(bootA.TenantID), uuid.MustParse(subject.id)
	var sealed []byte
	require.NoError(t, db.QueryRow(ctx, `SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1`, sid).Scan(&sealed))
	ref := keyring.Ref{Field: "identity.mfa_totp.secret_sealed", Scope: keyring.Identity(tenant, sid), Row: sid[:]}
	_, err = kr.Open(ctx, ref, sealed)
	require.NoError(t, err, "the copy opens before the erasure")

	// Who may not erase, and bad input.
	code, body := rest(t, tgt, http.MethodPost, "/v1/identity/"+bystander.id+"/erase", subject.apiKey, `{}`)
	require.Equal(t, http.StatusForbidden, code, string(body))
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+subject.id+"/erase", bootB.APIKey, `{}`)
	require.Equal(t, http.StatusNotFound, code, string(body))
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/not-a-uuid/erase", admin, `{}`)
	require.Equal(t, http.StatusBadRequest, code, string(body))
	require.Contains(t, string(body), `"id"`)
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+subject.id+"/erase", admin, `{"reason":"`+strings.Repeat("x", 501)+`"}`)
	require.Equal(t, http.StatusBadRequest, code, string(body))
	require.Contains(t, string(body), "reason")
	code, body = rest(t, tgt, http.MethodGet, "/v1/erasures/not-a-uuid", admin, "")
	require.Equal(t, http.StatusBadRequest, code, string(body))

	// The erasure.
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+subject.id+"/erase", admin, `{"reason":"GDPR article 17 request"}`)
	require.Equal(t, http.StatusOK, code, string(body))
	var started struct {
		Receipt receiptJSON `json:"receipt"`
	}
	require.NoError(t, json.Unmarshal(body, &started))
	require.NotEmpty(t, started.Receipt.ID)
	require.NotContains(t, string(body), "erase-me", "the receipt holds no personal data")
	rec := awaitReceipt(t, tgt, admin, started.Receipt.ID, 30*time.Second)
	require.Equal(t, subject.id, rec.SubjectID)
	require.Equal(t, bootA.IdentityID, rec.RequestedBy)
	require.Empty(t, rec.PendingServices)
	require.NotEmpty(t, rec.CompletedAt)
	require.EqualValues(t, 1, rec.count("identity", "identities"))
	require.EqualValues(t, 1, rec.count("identity", "sessions"))
	require.EqualValues(t, 1, rec.count("identity", "api_keys"))
	require.EqualValues(t, 1, rec.count("identity", "mfa_factors"))
	require.Positive(t, rec.count("keyring", "data_keys"))
	require.EqualValues(t, 3, rec.count("memory", "memories"))
	require.EqualValues(t, 4, rec.count("memory", "memory_versions"))
	require.Positive(t, rec.count("usage", "usage_events"))
	require.Positive(t, rec.count("usage", "usage_rollups"))
	require.Positive(t, rec.count("webhooks", "events"))

	// Asking again returns the same receipt; the list has it.
	code, body = rest(t, tgt, http.MethodPost, "/v1/identity/"+subject.id+"/erase", admin, `{}`)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), started.Receipt.ID)
	code, body = rest(t, tgt, http.MethodGet, "/v1/erasures", admin, "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), started.Receipt.ID)
	code, body = rest(t, tgt, http.MethodGet, "/v1/erasures/"+started.Receipt.ID, bootB.APIKey, "")
	require.Equal(t, http.StatusNotFound, code, string(body))
	code, body = rest(t, tgt, http.MethodGet, "/v1/erasures/"+started.Receipt.ID, bystander.apiKey, "")
	require.Equal(t, http.StatusForbidden, code, string(body))

	// Every API: the identity, its credentials, its memories, its usage.
	for _, c := range []struct {
		name, method, path, cred, body string
		want                           int
	}{
		{"get identity", http.MethodGet, "/v1/identity/" + subject.id, admin, "", http.StatusNotFound},
		{"its api key", http.MethodGet, "/v1/identity/me", subject.apiKey, "", http.StatusUnauthorized},
		{"its access token", http.MethodGet, "/v1/identity/me", "Bearer " + subject.access, "", http.StatusUnauthorized},
		{"its refresh token", http.MethodPost, "/v1/sessions/refresh", "", `{"refresh_token":"` + subject.refresh + `"}`, http.StatusUnauthorized},
		{"its password", http.MethodPost, "/v1/auth/login", "", `{"tenant":"erase-a","identifier":"erase-me@example.com","password":"correct horse battery staple"}`, http.StatusUnauthorized},
		{"get a memory", http.MethodGet, "/v1/memory/" + subject.memories[0], admin, "", http.StatusNotFound},
		{"memory history", http.MethodGet, "/v1/memory/" + subject.memories[0] + "/history", admin, "", http.StatusNotFound},
		{"restore a memory", http.MethodPost, "/v1/memory/" + subject.memories[0] + "/restore", admin, `{}`, http.StatusNotFound},
	} {
		code, body := rest(t, tgt, c.method, c.path, c.cred, c.body)
		require.Equal(t, c.want, code, "%s: %s", c.name, body)
	}
	for _, c := range []struct{ name, method, path, body string }{
		{"list its memories", http.MethodGet, "/v1/memory?identity_id=" + subject.id + "&include_deleted=true", ""},
		{"search its memories", http.MethodPost, "/v1/memory/search", `{"query":"hiking","identity_id":"` + subject.id + `","mode":"SEARCH_MODE_KEYWORD"}`},
		{"its usage events", http.MethodGet, "/v1/usage/events?identity_id=" + subject.id, ""},
		{"its daily usage", http.MethodGet, "/v1/usage/daily?identity_id=" + subject.id, ""},
	} {
		code, body := rest(t, tgt, c.method, c.path, admin, c.body)
		require.Equal(t, http.StatusOK, code, "%s: %s", c.name, body)
		require.NotContains(t, string(body), subject.id, c.name)
		require.NotContains(t, string(body), "erase-me", c.name)
	}
	code, body = rest(t, tgt, http.MethodPost, "/v1/memory/search", admin, `{"query":"hiking","mode":"SEARCH_MODE_KEYWORD","limit":50}`)
	require.Equal(t, http.StatusOK, code, string(body))
	require.NotContains(t, string(body), "erase-me", "a tenant-wide search finds none of its memories")
	require.Contains(t, string(body), "keep-me", "the other identity's memories are still found")

	// Straight from the database: no row anywhere names it.
	for _, q := range []string{
		`SELECT count(*) FROM identity.identities WHERE id = $1`,
		`SELECT count(*) FROM identity.sessions WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.api_keys WHERE identity_id = $1 OR creator_identity_id = $1`,
		`SELECT count(*) FROM identity.mfa_totp WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.mfa_backup_codes WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.sso_links WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.invitations WHERE accepted_identity_id = $1 OR inviter_identity_id = $1`,
		`SELECT count(*) FROM memory.memories WHERE identity_id = $1`,
		`SELECT count(*) FROM memory.memory_versions v WHERE v.memory_id = ANY (SELECT unnest($2::uuid[]))`,
		`SELECT count(*) FROM memory.memories WHERE id = ANY ($2::uuid[])`,
		`SELECT count(*) FROM usage.events WHERE identity_id = $1`,
		`SELECT count(*) FROM usage.rollup_minute WHERE identity_id = $1`,
		`SELECT count(*) FROM usage.rollup_daily WHERE identity_id = $1`,
		`SELECT count(*) FROM usage.rollup_span WHERE identity_id = $1`,
		`SELECT count(*) FROM usage.identity_activity WHERE identity_id = $1`,
		`SELECT count(*) FROM keyring.dek_material WHERE identity_id = $1`,
		// The event store keeps the erasure's own events, which name the identity by
		// id only (identity.erased, its session revocations, the reports), and may
		// record usage metered in the second before the erasure after it (ids and
		// counts): nothing with content.
		`SELECT count(*) FROM webhooks.events WHERE (identity_id = $1 OR subject = $1::text OR data ->> 'identity_id' = $1::text)
		   AND type NOT IN ('identity.erased', 'identity.erasure.completed', 'erasure.progress', 'session.revoked', 'usage.recorded')`,
		`SELECT count(*) FROM webhooks.events WHERE (identity_id = $1 OR subject = $1::text OR data ->> 'identity_id' = $1::text)
		   AND (data ? 'client_ip' OR data ? 'user_agent' OR data ? 'external_id' OR data ? 'text')`,
		// (The failed sign-in above, made after the erasure, is a new event.)
		`SELECT count(*) FROM webhooks.events WHERE $1::uuid IS NOT NULL AND data::text LIKE '%erase-me%' AND type <> 'auth.login.failed'`,
	} {
		args := []any{sid}
		if strings.Contains(q, "$2") {
			args = []any{subject.memories}
			q = strings.ReplaceAll(q, "$2", "$1")
		}
		require.Zero(t, countRows(t, db, q, args...), q)
	}
	// A keyring that has not cached the key (this test's own kept it for its cache
	// TTL, as any other process may).
	_, err = testKeyring(t, s).Open(ctx, ref, sealed)
	require.ErrorIs(t, err, keyring.ErrDestroyed, "the copy made before the erasure no longer opens")

	// The bystander and the other tenant keep everything.
	for _, keep := range []struct {
		s     erasureSubject
		admin string
	}{{bystander, admin}, {other, bootB.APIKey}} {
		code, body := rest(t, tgt, http.MethodGet, "/v1/identity/me", keep.s.apiKey, "")
		require.Equal(t, http.StatusOK, code, string(body))
		code, body = rest(t, tgt, http.MethodGet, "/v1/memory/"+keep.s.memories[0], keep.admin, "")
		require.Equal(t, http.StatusOK, code, string(body))
		require.EqualValues(t, len(keep.s.memories), countRows(t, db, `SELECT count(*) FROM memory.memories WHERE identity_id = $1`, keep.s.id))
		require.Positive(t, countRows(t, db, `SELECT count(*) FROM usage.events WHERE identity_id = $1`, keep.s.id))
		kid := uuid.MustParse(keep.s.id)
		var otherSealed []byte
		require.NoError(t, db.QueryRow(ctx, `SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1`, kid).Scan(&otherSealed))
		ktenant := uuid.MustParse(bootA.TenantID)
		if keep.admin != admin {
			ktenant = uuid.MustParse(bootB.TenantID)
		}
		_, err := kr.Open(ctx, keyring.Ref{Field: ref.Field, Scope: keyring.Identity(ktenant, kid), Row: kid[:]}, otherSealed)
		require.NoError(t, err, "another identity's key is untouched")
	}
}

// TestEraseTenantEndToEnd erases a whole tenant as the operator over REST: the
// receipt completes with every service's counts, no row of the tenant is left in
// the identity, memory, usage or keyring schemas, and the other tenant keeps
// everything.
func TestEraseTenantEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all", "MANUSHYA_ENCRYPTION_KEK="+erasureKEK, "MANUSHYA_WEBHOOKS_ALLOWED_ADDRESSES=127.0.0.0/8")
	ctx := context.Background()
	op, err := a.Identity().Service().Bootstrap(ctx, "keep-tenant", "Keep")
	require.NoError(t, err)
	gone, err := a.Identity().Service().Bootstrap(ctx, "gone-tenant", "Gone")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	db := adminConn(t, s)
	kept := makeSubject(t, tgt, op.APIKey, "keep-tenant", "kept@example.com", 2)
	erased := makeSubject(t, tgt, gone.APIKey, "gone-tenant", "gone@example.com", 3)
	awaitUsage(t, db, erased.id)
	awaitUsage(t, db, kept.id)

	code, body := rest(t, tgt, http.MethodPost, "/v1/webhooks", gone.APIKey, `{"name":"gone","url":"http://127.0.0.1:9/hook","events":["memory.created"]}`)
	require.Equal(t, http.StatusOK, code, string(body))
	code, body = rest(t, tgt, http.MethodPost, "/v1/tenants/"+gone.TenantID+"/erase", erased.apiKey, `{}`)
	require.Equal(t, http.StatusForbidden, code, string(body))
	code, body = rest(t, tgt, http.MethodPost, "/v1/tenants/"+gone.TenantID+"/erase", op.APIKey, `{"reason":"contract ended"}`)
	require.Equal(t, http.StatusOK, code, string(body))
	var started struct {
		Receipt receiptJSON `json:"receipt"`
	}
	require.NoError(t, json.Unmarshal(body, &started))
	rec := awaitReceipt(t, tgt, op.APIKey, started.Receipt.ID, 30*time.Second)
	require.Equal(t, gone.TenantID, rec.SubjectID)
	require.EqualValues(t, 2, rec.count("identity", "identities"))
	require.EqualValues(t, 3, rec.count("memory", "memories"))
	require.Positive(t, rec.count("usage", "usage_events"))
	require.Positive(t, rec.count("keyring", "data_keys"))
	require.EqualValues(t, 1, rec.count("webhooks", "webhook_endpoints"))

	code, body = rest(t, tgt, http.MethodGet, "/v1/identity/me", gone.APIKey, "")
	require.Equal(t, http.StatusUnauthorized, code, string(body))
	tid := uuid.MustParse(gone.TenantID)
	for _, q := range []string{
		`SELECT count(*) FROM identity.tenants WHERE id = $1`,
		`SELECT count(*) FROM identity.identities WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.sessions WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.api_key_prefixes WHERE tenant_id = $1`,
		`SELECT count(*) FROM memory.memories WHERE tenant_id = $1`,
		`SELECT count(*) FROM memory.memory_versions WHERE tenant_id = $1`,
		`SELECT count(*) FROM usage.events WHERE tenant_id = $1`,
		`SELECT count(*) FROM usage.rollup_daily WHERE tenant_id = $1`,
		`SELECT count(*) FROM usage.rollup_type_daily WHERE tenant_id = $1`,
		`SELECT count(*) FROM keyring.dek_material WHERE tenant_id = $1`,
		// Only the erasure's own events (ids only) may be left in the event store.
		`SELECT count(*) FROM webhooks.events WHERE tenant_id = $1
		   AND type NOT IN ('tenant.erased', 'tenant.erasure.completed', 'erasure.progress', 'session.revoked', 'usage.recorded')`,
		`SELECT count(*) FROM webhooks.events WHERE tenant_id = $1 AND data::text LIKE '%gone@example.com%'`,
		`SELECT count(*) FROM webhooks.endpoints WHERE tenant_id = $1`,
	} {
		require.Zero(t, countRows(t, db, q, tid), q)
	}
	code, body = rest(t, tgt, http.MethodGet, "/v1/identity/me", kept.apiKey, "")
	require.Equal(t, http.StatusOK, code, string(body))
	require.EqualValues(t, 2, countRows(t, db, `SELECT count(*) FROM memory.memories WHERE identity_id = $1`, kept.id))
}
