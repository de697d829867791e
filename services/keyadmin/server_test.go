package keyadmin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/gateway"
	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/keyadmin"
)

// A tenant-scoped sealed column for the tests to rotate under.
var katMigrations = postgres.Migrations{Schema: "kat", FS: fstest.MapFS{"00001_kat.sql": {Data: []byte(`-- +goose Up
CREATE TABLE kat.secrets (
  id        uuid PRIMARY KEY,
  tenant_id uuid NOT NULL,
  secret    bytea NOT NULL
);
ALTER TABLE kat.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE kat.secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kat.secrets
  USING (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('manushya.tenant_id', true), '')::uuid);
-- +goose Down
DROP TABLE kat.secrets;
`)}}}

const fieldKat = "kat.secrets.secret"

var (
	tenantA = uuid.MustParse("0193a000-0000-7000-8000-00000000000a")
	tenantB = uuid.MustParse("0193a000-0000-7000-8000-00000000000b")
)

// principals by API key: the operator, tenant A's admin and plain user, tenant
// B's admin.
var principals = map[string]*auth.Principal{
	"mk_operator": {TenantID: tenantA.String(), IdentityID: uuid.NewString(), Kind: auth.KindService, Roles: []string{auth.RoleAdmin}, Scopes: []string{"*", auth.ScopeOperator}},
	"mk_admin_a":  {TenantID: tenantA.String(), IdentityID: uuid.NewString(), Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}},
	"mk_user_a":   {TenantID: tenantA.String(), IdentityID: uuid.NewString(), Kind: auth.KindUser, Roles: []string{auth.RoleUser}},
	"mk_admin_b":  {TenantID: tenantB.String(), IdentityID: uuid.NewString(), Kind: auth.KindUser, Roles: []string{auth.RoleAdmin}},
}

type bundle struct {
	db   *pgtest.DB
	kr   *keyring.Keyring
	enc  adminv1.EncryptionServiceClient
	rest string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{db: pgtest.New(t, keyring.Migrations(), katMigrations)}
	b.kr = keyringtest.New(t, b.db.Pool, keyringtest.Tenants(tenantA, tenantB))
	require.NoError(t, b.kr.Register(keyring.Field{Name: fieldKat, Table: "kat.secrets", Column: "secret", Key: "id", Tenant: "tenant_id"}))
	srv, err := grpcserver.New(grpcserver.Options{
		Logger: slog.New(slog.DiscardHandler),
		Authenticator: auth.AuthenticatorFunc(func(_ context.Context, c auth.Credential) (*auth.Principal, error) {
			if p := principals[c.Value]; p != nil {
				cp := *p
				return &cp, nil
			}
			return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "unknown key")
		}),
	})
	require.NoError(t, err)
	keyadmin.New(ctx, b.kr, slog.New(slog.DiscardHandler)).Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.enc = adminv1.NewEncryptionServiceClient(conn)
	g, err := gateway.New(ctx, gateway.Config{
		Upstreams:   map[string]string{gateway.UpstreamIdentity: lis.Addr().String()},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	gw := httptest.NewServer(g.Handler())
	t.Cleanup(gw.Close)
	b.rest = gw.URL
	return b
}

func as(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
}

func (b *bundle) call(t *testing.T, method, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.rest+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return resp.StatusCode, out
}

// insert seals a value for a new row of tenant's kat.secrets.
func (b *bundle) insert(t *testing.T, tenant uuid.UUID, plain string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	c, err := b.kr.Seal(ctx, keyring.Ref{Field: fieldKat, Scope: keyring.Tenant(tenant), Row: id[:]}, []byte(plain))
	require.NoError(t, err)
	b.put(t, tenant, id, c)
	return id
}

func (b *bundle) put(t *testing.T, tenant, id uuid.UUID, c []byte) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenant.String(), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO kat.secrets (id, tenant_id, secret) VALUES ($1, $2, $3)`, id, tenant, c)
		return err
	}))
}

// keyIDs is each row's data key id, parsed from its ciphertext.
func (b *bundle) keyIDs(t *testing.T, tenant uuid.UUID) map[uuid.UUID]uint32 {
	t.Helper()
	ctx := context.Background()
	out := map[uuid.UUID]uint32{}
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenant.String(), func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, secret FROM kat.secrets`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id uuid.UUID
			var c []byte
			if err := rows.Scan(&id, &c); err != nil {
				return err
			}
			h, ok := keyring.Parse(c)
			require.True(t, ok)
			out[id] = h.KeyID
		}
		return rows.Err()
	}))
	return out
}

func stateOf(keys []*adminv1.DataKey, id uint32) adminv1.DataKeyState {
	for _, k := range keys {
		if k.GetKeyId() == id {
			return k.GetState()
		}
	}
	return adminv1.DataKeyState_DATA_KEY_STATE_UNSPECIFIED
}

func fieldOf(fs []*adminv1.FieldEncryption, name string) *adminv1.FieldEncryption {
	for _, f := range fs {
		if f.GetField() == name {
			return f
		}
	}
	return nil
}

// TestRotationObservedRowByRow rotates tenant A's key through the API and
// follows every row: new writes use the new key at once, the pass moves the old
// rows, the status reports it, and the old key is destroyed only once no row uses
// it.
func TestRotationObservedRowByRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var old []uuid.UUID
	for i := range 5 {
		old = append(old, b.insert(t, tenantA, "secret-"+string(rune('a'+i))))
	}
	otherTenant := b.insert(t, tenantB, "b-secret")
	first := b.keyIDs(t, tenantA)[old[0]]
	for _, id := range old {
		require.Equal(t, first, b.keyIDs(t, tenantA)[id])
	}

	// The tenant admin sees their key over gRPC and REST.
	st, err := b.enc.GetEncryptionStatus(as("mk_admin_a"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT, st.GetScope())
	require.Equal(t, tenantA.String(), st.GetTenantId())
	require.Len(t, st.GetKeys(), 1)
	require.Equal(t, first, st.GetKeys()[0].GetKeyId())
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_PRIMARY, st.GetKeys()[0].GetState())
	require.Empty(t, st.GetKekId(), "the KEK and global counts are the operator's")
	require.Empty(t, st.GetAllKeys())
	code, body := b.call(t, http.MethodGet, "/v1/admin/encryption", "mk_admin_a", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "ENCRYPTION_SCOPE_TENANT", body["scope"])

	// Rotate over REST (with and without the trailing slash).
	code, body = b.call(t, http.MethodPost, "/v1/admin/encryption/rotate/", "mk_admin_a", `{"scope":"ENCRYPTION_SCOPE_TENANT"}`)
	require.Equal(t, http.StatusOK, code, body)
	second := uint32(body["key"].(map[string]any)["key_id"].(float64))
	require.NotEqual(t, first, second)
	require.Equal(t, "DATA_KEY_STATE_PRIMARY", body["key"].(map[string]any)["state"])

	// New writes use the new key at once; the old rows are still under the old one,
	// and still open.
	fresh := b.insert(t, tenantA, "fresh")
	ids := b.keyIDs(t, tenantA)
	require.Equal(t, second, ids[fresh])
	for _, id := range old {
		require.Equal(t, first, ids[id])
	}
	st, err = b.enc.GetEncryptionStatus(as("mk_admin_a"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_PRIMARY, stateOf(st.GetKeys(), second))
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_RETIRED, stateOf(st.GetKeys(), first))

	// A row the pass cannot open (tampered, under the old key) keeps the old key.
	tampered := uuid.Must(uuid.NewV7())
	bad := slices64(b, t, old[0])
	bad[len(bad)-1] ^= 1
	b.put(t, tenantA, tampered, bad)

	// Passes are the operator's.
	_, err = b.enc.StartReencryption(as("mk_admin_a"), &adminv1.StartReencryptionRequest{Wait: true})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	code, _ = b.call(t, http.MethodPost, "/v1/admin/encryption/reencrypt", "mk_admin_a", `{"wait":true}`)
	require.Equal(t, http.StatusForbidden, code)
	code, body = b.call(t, http.MethodPost, "/v1/admin/encryption/reencrypt", "mk_operator", `{"wait":true}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["started"])

	ids = b.keyIDs(t, tenantA)
	for _, id := range append(old, fresh) {
		require.Equal(t, second, ids[id], "moved to the new key row by row")
	}
	require.Equal(t, first, ids[tampered])
	st, err = b.enc.GetEncryptionStatus(as("mk_operator"), &adminv1.GetEncryptionStatusRequest{TenantId: tenantA.String()})
	require.NoError(t, err)
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_RETIRED, stateOf(st.GetKeys(), first), "a row still uses it")
	f := fieldOf(st.GetFields(), fieldKat)
	require.NotNil(t, f)
	require.EqualValues(t, 5, f.GetLastPass().GetRowsResealed())
	require.EqualValues(t, 1, f.GetLastPass().GetRowsFailed())
	require.EqualValues(t, 1, f.GetHeldKeys())
	require.NotEmpty(t, st.GetKekId())
	require.NotEmpty(t, st.GetAllKeys())
	// The tenant admin sees when the field was passed over, not the counts.
	mine, err := b.enc.GetEncryptionStatus(as("mk_admin_a"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.NotNil(t, fieldOf(mine.GetFields(), fieldKat).GetLastPass().GetEndTime())
	require.Zero(t, fieldOf(mine.GetFields(), fieldKat).GetLastPass().GetRowsResealed())

	// Once no row uses the old key, the next pass destroys it; what was moved still
	// opens.
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenantA.String(), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM kat.secrets WHERE id = $1`, tampered)
		return err
	}))
	rep, err := b.enc.StartReencryption(as("mk_operator"), &adminv1.StartReencryptionRequest{Wait: true})
	require.NoError(t, err)
	require.True(t, rep.GetCompleted())
	require.GreaterOrEqual(t, rep.GetKeysDestroyed(), int64(1))
	st, err = b.enc.GetEncryptionStatus(as("mk_admin_a"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_DESTROYED, stateOf(st.GetKeys(), first))
	for _, id := range old {
		plain, err := b.kr.Open(ctx, keyring.Ref{Field: fieldKat, Scope: keyring.Tenant(tenantA), Row: id[:]}, slices64(b, t, id))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(plain), "secret-"))
	}
	// Tenant B's rows were never touched by A's rotation.
	require.NotEqual(t, second, b.keyIDs(t, tenantB)[otherTenant])
}

// slices64 reads one row's sealed value of tenant A.
func slices64(b *bundle, t *testing.T, id uuid.UUID) []byte {
	t.Helper()
	ctx := context.Background()
	var c []byte
	require.NoError(t, postgres.InTenantTx(ctx, b.db.Pool, tenantA.String(), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT secret FROM kat.secrets WHERE id = $1`, id).Scan(&c)
	}))
	return c
}

// TestEncryptionPermissions: tenant admins reach their own tenant only; the
// system key and other tenants are the operator's; plain users see nothing; bad
// input names the field.
func TestEncryptionPermissions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insert(t, tenantA, "x")
	b.insert(t, tenantB, "y")

	_, err := b.enc.GetEncryptionStatus(as("mk_user_a"), &adminv1.GetEncryptionStatusRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = b.enc.RotateDataKey(as("mk_user_a"), &adminv1.RotateDataKeyRequest{Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = b.enc.GetEncryptionStatus(context.Background(), &adminv1.GetEncryptionStatusRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	// Another tenant is NOT_FOUND for a tenant admin, over gRPC and REST.
	_, err = b.enc.GetEncryptionStatus(as("mk_admin_b"), &adminv1.GetEncryptionStatusRequest{TenantId: tenantA.String()})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.enc.RotateDataKey(as("mk_admin_b"), &adminv1.RotateDataKeyRequest{Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT, TenantId: tenantA.String()})
	require.Equal(t, codes.NotFound, status.Code(err))
	code, _ := b.call(t, http.MethodGet, "/v1/admin/encryption?tenant_id="+tenantA.String(), "mk_admin_b", "")
	require.Equal(t, http.StatusNotFound, code)
	own, err := b.enc.GetEncryptionStatus(as("mk_admin_b"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, tenantB.String(), own.GetTenantId())
	aKeys, err := b.enc.GetEncryptionStatus(as("mk_admin_a"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.NotEqual(t, own.GetKeys()[0].GetKeyId(), aKeys.GetKeys()[0].GetKeyId())

	// The system key: operator only.
	_, err = b.enc.RotateDataKey(as("mk_admin_a"), &adminv1.RotateDataKeyRequest{Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	code, _ = b.call(t, http.MethodPost, "/v1/admin/encryption/rotate", "mk_admin_a", `{"scope":"ENCRYPTION_SCOPE_SYSTEM"}`)
	require.Equal(t, http.StatusForbidden, code)
	sys, err := b.enc.RotateDataKey(as("mk_operator"), &adminv1.RotateDataKeyRequest{Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM})
	require.NoError(t, err)
	require.Equal(t, adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM, sys.GetKey().GetScope())
	st, err := b.enc.GetEncryptionStatus(as("mk_operator"), &adminv1.GetEncryptionStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM, st.GetScope())
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_PRIMARY, stateOf(st.GetKeys(), sys.GetKey().GetKeyId()))
	// The operator rotates another tenant's key.
	rb, err := b.enc.RotateDataKey(as("mk_operator"), &adminv1.RotateDataKeyRequest{Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT, TenantId: tenantB.String()})
	require.NoError(t, err)
	require.Equal(t, tenantB.String(), rb.GetKey().GetTenantId())

	// Bad input.
	_, err = b.enc.RotateDataKey(as("mk_admin_a"), &adminv1.RotateDataKeyRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, err.Error(), "scope")
	code, body := b.call(t, http.MethodPost, "/v1/admin/encryption/rotate", "mk_admin_a", `{"scope":"ENCRYPTION_SCOPE_NOPE"}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	code, body = b.call(t, http.MethodGet, "/v1/admin/encryption?tenant_id=not-a-uuid", "mk_operator", "")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body["message"], "tenant_id")

	// A pass started without waiting runs in the background; a second start while
	// it runs says so.
	r1, err := b.enc.StartReencryption(as("mk_operator"), &adminv1.StartReencryptionRequest{})
	require.NoError(t, err)
	require.True(t, r1.GetStarted())
	require.Eventually(t, func() bool {
		st, err := b.enc.GetEncryptionStatus(as("mk_operator"), &adminv1.GetEncryptionStatusRequest{TenantId: tenantA.String()})
		f := fieldOf(st.GetFields(), fieldKat)
		return err == nil && f != nil && f.GetLastPass().GetEndTime() != nil && f.GetRunningPass() == nil
	}, 10e9, 50e6)
}
