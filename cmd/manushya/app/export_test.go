package app_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// exportLine is one record of an export.
type exportLine struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// verifyExport parses an export's JSON lines, checks the signature line against
// the deployment's published keys with a JOSE library, as a recipient would, and
// returns the records by kind.
func verifyExport(t *testing.T, jwks *jose.JSONWebKeySet, raw []byte, identityID, tenantID string) map[string][]json.RawMessage {
	t.Helper()
	require.True(t, bytes.HasSuffix(raw, []byte("\n")), "the export ends with a newline")
	lines := bytes.SplitAfter(raw, []byte("\n"))
	lines = lines[:len(lines)-1]
	byKind := map[string][]json.RawMessage{}
	for i, l := range lines {
		var r exportLine
		require.NoError(t, json.Unmarshal(l, &r), "line %d: %s", i, l)
		byKind[r.Kind] = append(byKind[r.Kind], r.Data)
		switch i {
		case 0:
			require.Equal(t, "export", r.Kind)
		case len(lines) - 1:
			require.Equal(t, "signature", r.Kind)
		}
	}
	signed := raw[:len(raw)-len(lines[len(lines)-1])]

	var sig struct{ Alg, Kid, SHA256, JWS string }
	require.NoError(t, json.Unmarshal(byKind["signature"][0], &sig))
	obj, err := jose.ParseSignedCompact(sig.JWS, []jose.SignatureAlgorithm{jose.EdDSA})
	require.NoError(t, err)
	keys := jwks.Key(obj.Signatures[0].Header.KeyID)
	require.Len(t, keys, 1, "the signing key %q is published", obj.Signatures[0].Header.KeyID)
	payload, err := obj.Verify(keys[0])
	require.NoError(t, err)
	var claims struct {
		SHA256     string `json:"sha256"`
		IdentityID string `json:"identity_id"`
		TenantID   string `json:"tenant_id"`
		IAT        int64  `json:"iat"`
	}
	require.NoError(t, json.Unmarshal(payload, &claims))
	sum := sha256.Sum256(signed)
	require.Equal(t, hex.EncodeToString(sum[:]), claims.SHA256, "the signed digest is of every line before the signature")
	require.Equal(t, claims.SHA256, sig.SHA256)
	require.Equal(t, identityID, claims.IdentityID)
	require.Equal(t, tenantID, claims.TenantID)
	require.NotZero(t, claims.IAT)

	// Changing one line (a memory's text) no longer matches the signed digest.
	tampered := bytes.Replace(signed, []byte("Prefers tea"), []byte("Prefers gin"), 1)
	require.NotEqual(t, signed, tampered)
	bad := sha256.Sum256(tampered)
	require.NotEqual(t, claims.SHA256, hex.EncodeToString(bad[:]))
	return byKind
}

func joined(records []json.RawMessage) string {
	var b strings.Builder
	for _, r := range records {
		b.Write(r)
	}
	return b.String()
}

func unzipExport(t *testing.T, raw []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err)
	require.Len(t, zr.File, 1)
	require.Equal(t, "export.jsonl", zr.File[0].Name)
	f, err := zr.File[0].Open()
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	inner, err := io.ReadAll(f)
	require.NoError(t, err)
	return inner
}

const bulkyMemories = 12

// TestIdentityExport exports an identity with sessions, an API key, MFA,
// memories (one edited), usage and audit entries over REST, as its admin and as
// the identity itself, in both formats: every line parses, every kind is there,
// no secret appears, and the signature verifies against /.well-known/jwks.json.
func TestIdentityExport(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	svc := a.Identity().Service()
	boot, err := svc.Bootstrap(ctx, "exporting", "Exporting")
	require.NoError(t, err)
	other, err := svc.Bootstrap(ctx, "elsewhere", "Elsewhere")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	admin := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)
	ids := identityv1.NewIdentityServiceClient(tgt.GRPC)
	authn := identityv1.NewAuthServiceClient(tgt.GRPC)

	claims, _ := structpb.NewStruct(map[string]any{"name": "Asha Rao"})
	created, err := ids.CreateIdentity(admin, &identityv1.CreateIdentityRequest{ExternalId: "asha@example.com", Role: "user", Claims: claims})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	bystander, err := ids.CreateIdentity(admin, &identityv1.CreateIdentityRequest{ExternalId: "ravi@example.com", Role: "user"})
	require.NoError(t, err)
	const password = "a long and uncommon passphrase"
	_, err = authn.SetPassword(admin, &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: password})
	require.NoError(t, err)
	var refresh []string
	var access string
	for range 2 {
		resp, err := authn.Login(ctx, &identityv1.LoginRequest{Tenant: "exporting", Identifier: "asha@example.com", Password: password, DeviceName: "Phone"})
		require.NoError(t, err)
		refresh, access = append(refresh, resp.GetTokens().GetRefreshToken()), resp.GetTokens().GetAccessToken()
	}
	me := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access)
	key, err := identityv1.NewApiKeyServiceClient(tgt.GRPC).CreateApiKey(admin, &identityv1.CreateApiKeyRequest{IdentityId: id, Name: "laptop"})
	require.NoError(t, err)
	mfa, err := authn.SetupMfa(me, &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(mfa.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = authn.VerifyMfa(me, &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)

	mem := memoryv1.NewMemoryServiceClient(tgt.GRPC)
	for _, text := range []string{"Prefers tea over coffee", "Lives in Pune", "Allergic to peanuts"} {
		md, _ := structpb.NewStruct(map[string]any{"source": "chat", "confidence": 0.9})
		m, err := mem.CreateMemory(me, &memoryv1.CreateMemoryRequest{Text: text, Type: "preference", Metadata: md})
		require.NoError(t, err)
		if strings.HasPrefix(text, "Lives") {
			_, err = mem.UpdateMemory(me, &memoryv1.UpdateMemoryRequest{
				Memory:     &memoryv1.Memory{Id: m.GetMemory().GetId(), Text: "Lives in Mumbai"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"text"}},
			})
			require.NoError(t, err)
		}
	}
	// Long memories of text that compresses poorly, so that both formats
	// stream in several chunks.
	seed := sha256.Sum256([]byte("export"))
	for i := range bulkyMemories {
		var text strings.Builder
		for text.Len() < 24<<10 {
			seed = sha256.Sum256(seed[:])
			text.WriteString(hex.EncodeToString(seed[:]))
		}
		md, _ := structpb.NewStruct(map[string]any{"source": "chat", "n": i})
		_, err := mem.CreateMemory(me, &memoryv1.CreateMemoryRequest{Text: text.String(), Metadata: md})
		require.NoError(t, err)
	}
	// The bystander's memory is not the exported identity's.
	_, err = mem.CreateMemory(admin, &memoryv1.CreateMemoryRequest{Text: "Ravi's note", IdentityId: bystander.GetIdentity().GetId()})
	require.NoError(t, err)
	usage := usagev1.NewUsageServiceClient(tgt.GRPC)
	_, err = usage.IngestUsageEvents(admin, &usagev1.IngestUsageEventsRequest{Events: []*usagev1.UsageEvent{
		{Id: "export-u1", Type: "api.request", IdentityId: id},
		{Id: "export-u2", Type: "api.request", IdentityId: id},
		{Id: "export-u3", Type: "api.request", IdentityId: bystander.GetIdentity().GetId()},
	}})
	require.NoError(t, err)
	// Audit entries and metered usage arrive through the bus: wait until the
	// identity's sign-ins and its own memory writes are in the log.
	auditc := eventsv1.NewAuditServiceClient(tgt.GRPC)
	require.Eventually(t, func() bool {
		acted, err := auditc.ListAuditEntries(admin, &eventsv1.ListAuditEntriesRequest{ActorIdentityId: id, PageSize: 100})
		if err != nil {
			return false
		}
		about, err := auditc.ListAuditEntries(admin, &eventsv1.ListAuditEntriesRequest{ResourceId: id, PageSize: 100})
		return err == nil && len(acted.GetEntries()) >= 4 && len(about.GetEntries()) >= 2
	}, 20*time.Second, 100*time.Millisecond)

	var hash string
	admConn, err := pgx.Connect(ctx, s.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admConn.Close(context.Background()) })
	require.NoError(t, admConn.QueryRow(ctx, "SELECT password_hash FROM identity.identities WHERE id = $1", id).Scan(&hash))
	secrets := append([]string{key.GetKey(), password, hash, mfa.GetSecret(), access}, refresh...)
	secrets = append(secrets, mfa.GetBackupCodes()...)

	jwks := &jose.JSONWebKeySet{}
	_, _, body, err := apitest.CallRaw(ctx, tgt, apitest.RawCase{Path: "/.well-known/jwks.json"})
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(body, jwks))

	get := func(path string, headers map[string]string) (int, http.Header, []byte) {
		t.Helper()
		code, header, body, err := apitest.CallRaw(ctx, tgt, apitest.RawCase{Path: path, Headers: headers})
		require.NoError(t, err)
		return code, header, body
	}
	asAdmin := map[string]string{"X-API-Key": boot.APIKey}
	asSelf := map[string]string{"Authorization": "Bearer " + access}
	check := func(t *testing.T, raw []byte) {
		for _, secret := range secrets {
			require.NotContains(t, string(raw), secret)
		}
		recs := verifyExport(t, jwks, raw, id, boot.TenantID)
		require.Len(t, recs["identity"], 1)
		require.Contains(t, string(recs["identity"][0]), `"name":"Asha Rao"`)
		require.Len(t, recs["session"], 2)
		require.Len(t, recs["api_key"], 1)
		require.Len(t, recs["mfa"], 1)
		require.Contains(t, string(recs["mfa"][0]), `"totp_enabled":true`)
		require.Len(t, recs["memory"], 3+bulkyMemories)
		require.Greater(t, len(raw), 4*64<<10, "several chunks")
		for _, m := range recs["memory"] {
			require.Contains(t, string(m), `"source":"chat"`, "memories carry their metadata")
			require.Contains(t, string(m), `"identity_id":"`+id+`"`)
		}
		require.Len(t, recs["memory_version"], 2, "the history of the edited memory: its two versions")
		require.Contains(t, joined(recs["memory_version"]), "Lives in Pune", "the history keeps the old text")
		require.GreaterOrEqual(t, len(recs["audit_entry"]), 6)
		var usageIDs []string
		for _, u := range recs["usage_event"] {
			var ev struct {
				ID         string `json:"id"`
				IdentityID string `json:"identity_id"`
			}
			require.NoError(t, json.Unmarshal(u, &ev))
			require.Equal(t, id, ev.IdentityID)
			usageIDs = append(usageIDs, ev.ID)
		}
		require.Subset(t, usageIDs, []string{"export-u1", "export-u2"})
		require.NotEmpty(t, recs["usage_daily"])
		require.NotContains(t, joined(recs["memory"]), "Ravi's note")
	}

	t.Run("admin, JSON lines", func(t *testing.T) {
		code, header, raw := get("/v1/identity/"+id+"/export", asAdmin)
		require.Equal(t, http.StatusOK, code, string(raw))
		require.Equal(t, "application/x-ndjson", header.Get("Content-Type"))
		require.Contains(t, header.Get("Content-Disposition"), `attachment; filename="manushya-export-`+id)
		require.Contains(t, header.Get("Content-Disposition"), `.jsonl"`)
		check(t, raw)
	})
	t.Run("admin, zip", func(t *testing.T) {
		code, header, raw := get("/v1/identity/"+id+"/export/?format=EXPORT_FORMAT_ZIP", asAdmin)
		require.Equal(t, http.StatusOK, code, string(raw))
		require.Equal(t, "application/zip", header.Get("Content-Type"))
		require.Contains(t, header.Get("Content-Disposition"), `.zip"`)
		require.Greater(t, len(raw), 2*64<<10, "the archive streams in several chunks")
		check(t, unzipExport(t, raw))
	})
	t.Run("self, JSON lines", func(t *testing.T) {
		code, header, raw := get("/v1/identity/me/export", asSelf)
		require.Equal(t, http.StatusOK, code, string(raw))
		require.Equal(t, "application/x-ndjson", header.Get("Content-Type"))
		check(t, raw)
	})
	t.Run("self, zip", func(t *testing.T) {
		code, header, raw := get("/v1/identity/me/export/?format=EXPORT_FORMAT_ZIP", asSelf)
		require.Equal(t, http.StatusOK, code, string(raw))
		require.Equal(t, "application/zip", header.Get("Content-Type"))
		require.Greater(t, len(raw), 2*64<<10, "the archive streams in several chunks")
		check(t, unzipExport(t, raw))
	})
	t.Run("refusals", func(t *testing.T) {
		apitest.RunRaw(t, tgt,
			apitest.RawCase{
				Name: "a user exporting another identity", Path: "/v1/identity/" + bystander.GetIdentity().GetId() + "/export",
				Headers: asSelf, WantStatus: http.StatusForbidden,
			},
			apitest.RawCase{
				Name: "another tenant's admin", Path: "/v1/identity/" + id + "/export", Credential: other.APIKey,
				WantStatus: http.StatusNotFound,
			},
			apitest.RawCase{
				Name: "a malformed id", Path: "/v1/identity/not-a-uuid/export", Credential: boot.APIKey,
				WantStatus: http.StatusBadRequest, WantField: "id",
			},
			apitest.RawCase{
				Name: "an unknown format", Path: "/v1/identity/me/export?format=EXPORT_FORMAT_PDF", Headers: asSelf,
				WantStatus: http.StatusBadRequest,
			},
			apitest.RawCase{Name: "no credential", Path: "/v1/identity/me/export", WantStatus: http.StatusUnauthorized},
		)
	})

	// Each export is in the audit log, with the digest of what was handed out.
	require.Eventually(t, func() bool {
		resp, err := auditc.ListAuditEntries(admin, &eventsv1.ListAuditEntriesRequest{Action: "identity.export", PageSize: 100})
		if err != nil {
			return false
		}
		var ok int
		for _, e := range resp.GetEntries() {
			if e.GetResourceId() == id && e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_SUCCESS &&
				e.GetAfter().GetFields()["sha256"].GetStringValue() != "" {
				ok++
			}
		}
		return ok == 4
	}, 20*time.Second, 100*time.Millisecond)
}
