package identity_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

type exportBundle struct {
	conn    *grpc.ClientConn
	ids     identityv1.IdentityServiceClient
	authn   identityv1.AuthServiceClient
	export  identityv1.ExportServiceClient
	adminA  string
	adminB  string
	tenantA string

	mu      sync.Mutex
	records []audit.Record
}

func exportSetup(t *testing.T) *exportBundle {
	t.Helper()
	db := pgtest.New(t, identity.Migrations())
	b := &exportBundle{}
	sink := audit.SinkFunc(func(_ context.Context, r audit.Record) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.records = append(b.records, r)
	})
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper},
		identity.Deps{Pool: db.Pool, Logger: slog.New(slog.DiscardHandler), Audit: sink})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator()})
	require.NoError(t, err)
	mod.Register(srv)
	ctx := context.Background()
	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	b.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.conn.Close() })
	a, err := mod.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	other, err := mod.Service().Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	b.ids, b.authn = identityv1.NewIdentityServiceClient(b.conn), identityv1.NewAuthServiceClient(b.conn)
	b.export = identityv1.NewExportServiceClient(b.conn)
	b.adminA, b.adminB, b.tenantA = a.APIKey, other.APIKey, a.TenantID
	return b
}

// readExport collects an export's chunks, checking every chunk's content type.
func readExport(t *testing.T, stream grpc.ServerStreamingClient[httpbody.HttpBody], contentType string) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		require.Equal(t, contentType, chunk.GetContentType())
		out.Write(chunk.GetData())
	}
}

type exportRecord struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// checkExport parses JSON lines, verifies the signature line against keys and
// returns the records (signature excluded) by kind.
func checkExport(t *testing.T, raw []byte, keys map[string]ed25519.PublicKey, identityID, tenantID string) map[string][]json.RawMessage {
	t.Helper()
	require.True(t, bytes.HasSuffix(raw, []byte("\n")), "every line ends with a newline")
	lines := bytes.SplitAfter(raw, []byte("\n"))
	lines = lines[:len(lines)-1] // after the last newline: nothing
	byKind := map[string][]json.RawMessage{}
	var kinds []string
	for _, l := range lines {
		var r exportRecord
		require.NoError(t, json.Unmarshal(l, &r), string(l))
		byKind[r.Kind] = append(byKind[r.Kind], r.Data)
		kinds = append(kinds, r.Kind)
	}
	require.Equal(t, "export", kinds[0])
	require.Equal(t, "signature", kinds[len(kinds)-1])
	require.Equal(t, "summary", kinds[len(kinds)-2])

	var sig struct{ Alg, Kid, SHA256, JWS string }
	require.NoError(t, json.Unmarshal(byKind["signature"][0], &sig))
	body := raw[:len(raw)-len(lines[len(lines)-1])]
	sum := sha256.Sum256(body)
	require.Equal(t, hex.EncodeToString(sum[:]), sig.SHA256)
	require.Equal(t, "EdDSA", sig.Alg)

	obj, err := jose.ParseSignedCompact(sig.JWS, []jose.SignatureAlgorithm{jose.EdDSA})
	require.NoError(t, err)
	require.Equal(t, sig.Kid, obj.Signatures[0].Header.KeyID)
	pub, ok := keys[sig.Kid]
	require.True(t, ok, "the signing key is published")
	payload, err := obj.Verify(pub)
	require.NoError(t, err)
	var claims struct {
		SHA256     string `json:"sha256"`
		IdentityID string `json:"identity_id"`
		TenantID   string `json:"tenant_id"`
		IAT        int64  `json:"iat"`
	}
	require.NoError(t, json.Unmarshal(payload, &claims))
	require.Equal(t, sig.SHA256, claims.SHA256)
	require.Equal(t, identityID, claims.IdentityID)
	require.Equal(t, tenantID, claims.TenantID)
	require.InDelta(t, time.Now().Unix(), claims.IAT, 300)

	var header struct {
		IdentityID    string `json:"identity_id"`
		TenantID      string `json:"tenant_id"`
		GeneratedAt   string `json:"generated_at"`
		FormatVersion int    `json:"format_version"`
	}
	require.NoError(t, json.Unmarshal(byKind["export"][0], &header))
	require.Equal(t, identityID, header.IdentityID)
	require.Equal(t, tenantID, header.TenantID)
	require.Equal(t, 1, header.FormatVersion)
	require.NotEmpty(t, header.GeneratedAt)

	// One changed byte anywhere before the signature breaks the digest.
	tampered := bytes.Replace(body, []byte(identityID), []byte(strings.Repeat("0", len(identityID))), 1)
	bad := sha256.Sum256(tampered)
	require.NotEqual(t, claims.SHA256, hex.EncodeToString(bad[:]))
	return byKind
}

func publishedKeys(t *testing.T, authn identityv1.AuthServiceClient) map[string]ed25519.PublicKey {
	t.Helper()
	jwks, err := authn.GetJwks(context.Background(), &identityv1.GetJwksRequest{})
	require.NoError(t, err)
	keys := map[string]ed25519.PublicKey{}
	for _, k := range jwks.GetKeys() {
		x, err := base64.RawURLEncoding.DecodeString(k.GetX())
		require.NoError(t, err)
		keys[k.GetKid()] = ed25519.PublicKey(x)
	}
	return keys
}

func TestExportIdentity(t *testing.T) {
	t.Parallel()
	b := exportSetup(t)
	ctx := context.Background()
	claims, _ := structpb.NewStruct(map[string]any{"name": "Asha Rao", "city": "Pune"})
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{
		ExternalId: "asha@example.com", Role: "user", Claims: claims,
	})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	// A claim the tenant marks sensitive is sealed beside the row; the export
	// still gives it back.
	_, err = identityv1.NewTenantServiceClient(b.conn).UpdateTenant(as(b.adminA), &identityv1.UpdateTenantRequest{
		Tenant:     &identityv1.Tenant{Id: b.tenantA, Settings: &identityv1.TenantSettings{SensitiveClaims: []string{"city"}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"settings.sensitive_claims"}},
	})
	require.NoError(t, err)
	_, err = b.authn.SetPassword(as(b.adminA), &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: testPassword})
	require.NoError(t, err)
	var refresh []string
	var access string
	for range 2 {
		resp, err := b.authn.Login(ctx, &identityv1.LoginRequest{
			Tenant: "tenant-a", Identifier: "asha@example.com", Password: testPassword, DeviceName: "Phone",
		})
		require.NoError(t, err)
		refresh = append(refresh, resp.GetTokens().GetRefreshToken())
		access = resp.GetTokens().GetAccessToken()
	}
	keys := identityv1.NewApiKeyServiceClient(b.conn)
	key, err := keys.CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{IdentityId: id, Name: "laptop"})
	require.NoError(t, err)
	secret := key.GetKey()
	require.NotEmpty(t, secret)
	me := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access)
	setup, err := b.authn.SetupMfa(me, &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = b.authn.VerifyMfa(me, &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)

	pub := publishedKeys(t, b.authn)
	secrets := append([]string{secret, testPassword, setup.GetSecret(), "$argon2id$"}, refresh...)
	secrets = append(secrets, setup.GetBackupCodes()...)
	noSecrets := func(raw []byte) {
		for _, s := range secrets {
			require.NotContains(t, string(raw), s)
		}
	}

	stream, err := b.export.ExportIdentity(as(b.adminA), &identityv1.ExportIdentityRequest{Id: id})
	require.NoError(t, err)
	raw, err := readExport(t, stream, identity.ContentTypeJSONLines)
	require.NoError(t, err)
	hdr, err := stream.Header()
	require.NoError(t, err)
	require.Contains(t, hdr.Get("content-disposition")[0], `attachment; filename="manushya-export-`+id)
	noSecrets(raw)
	recs := checkExport(t, raw, pub, id, b.tenantA)
	require.Len(t, recs["identity"], 1)
	require.Contains(t, string(recs["identity"][0]), `"name":"Asha Rao"`)
	require.Contains(t, string(recs["identity"][0]), `"city":"Pune"`)
	require.Len(t, recs["session"], 2)
	require.Contains(t, string(recs["session"][0]), `"device_name":"Phone"`)
	require.Len(t, recs["api_key"], 1)
	require.Contains(t, string(recs["api_key"][0]), `"name":"laptop"`)
	require.Len(t, recs["mfa"], 1)
	require.Contains(t, string(recs["mfa"][0]), `"totp_enabled":true`)
	require.Contains(t, string(recs["mfa"][0]), `"backup_codes_unused":10`)
	var summary struct {
		Counts map[string]int `json:"counts"`
	}
	require.NoError(t, json.Unmarshal(recs["summary"][0], &summary))
	require.Equal(t, map[string]int{"identity": 1, "session": 2, "api_key": 1, "mfa": 1}, summary.Counts)

	// The identity exports itself as a zip holding the same records.
	stream, err = b.export.ExportMe(me, &identityv1.ExportMeRequest{Format: identityv1.ExportFormat_EXPORT_FORMAT_ZIP})
	require.NoError(t, err)
	zipped, err := readExport(t, stream, identity.ContentTypeZip)
	require.NoError(t, err)
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	require.NoError(t, err)
	require.Len(t, zr.File, 1)
	require.Equal(t, identity.ExportFileName, zr.File[0].Name)
	f, err := zr.File[0].Open()
	require.NoError(t, err)
	inner, err := io.ReadAll(f)
	require.NoError(t, err)
	noSecrets(inner)
	recs = checkExport(t, inner, pub, id, b.tenantA)
	require.Len(t, recs["session"], 2)

	// Both exports are in the audit log, with what was handed out.
	b.mu.Lock()
	var exports []audit.Record
	for _, r := range b.records {
		if r.Action == "identity.export" {
			exports = append(exports, r)
		}
	}
	b.mu.Unlock()
	require.Len(t, exports, 2)
	require.Equal(t, id, exports[0].ResourceID)
	require.Equal(t, audit.ResultSuccess, exports[0].Result)
	require.Contains(t, string(exports[0].After), `"format":"unspecified"`)
	require.Contains(t, string(exports[1].After), `"self":true`)
	require.Equal(t, id, exports[1].Actor.IdentityID)
}

func TestExportRefusals(t *testing.T) {
	t.Parallel()
	b := exportSetup(t)
	ctx := context.Background()
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: "u1", Role: "user"})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	other, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: "u2", Role: "user"})
	require.NoError(t, err)
	_, err = b.authn.SetPassword(as(b.adminA), &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: testPassword})
	require.NoError(t, err)
	login, err := b.authn.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "u1", Password: testPassword})
	require.NoError(t, err)
	user := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login.GetTokens().GetAccessToken())

	first := func(ctx context.Context, req *identityv1.ExportIdentityRequest) error {
		stream, err := b.export.ExportIdentity(ctx, req)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	// A user exports itself only through ExportMe.
	requireCode(t, first(user, &identityv1.ExportIdentityRequest{Id: other.GetIdentity().GetId()}),
		codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	requireCode(t, first(user, &identityv1.ExportIdentityRequest{Id: id}),
		codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	// Another tenant's admin does not see the identity.
	requireCode(t, first(as(b.adminB), &identityv1.ExportIdentityRequest{Id: id}),
		codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	requireCode(t, first(as(b.adminA), &identityv1.ExportIdentityRequest{Id: "not-a-uuid"}),
		codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	requireCode(t, first(as(b.adminA), &identityv1.ExportIdentityRequest{Id: id, Format: 7}),
		codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	requireCode(t, first(ctx, &identityv1.ExportIdentityRequest{Id: id}),
		codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)

	// The failed lookup reached the service and is in the other tenant's log;
	// refusals before it are authorization's to record.
	b.mu.Lock()
	defer b.mu.Unlock()
	var failed []audit.Record
	for _, r := range b.records {
		if r.Action == "identity.export" {
			failed = append(failed, r)
		}
	}
	require.Len(t, failed, 1)
	require.Equal(t, audit.ResultError, failed[0].Result)
	require.Equal(t, id, failed[0].ResourceID)
	require.Equal(t, int32(errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND), failed[0].ErrorReason)
}
