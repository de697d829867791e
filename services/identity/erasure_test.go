package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/manushya-ai/manushya/pkg/erasure"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// adminCount counts rows as the database owner, past row-level security.
func adminCount(t *testing.T, db *pgtest.DB, sql string, args ...any) int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	var n int64
	require.NoError(t, conn.QueryRow(t.Context(), sql, args...).Scan(&n))
	return n
}

func countsOf(r *identityv1.ErasureReceipt) map[string]int64 {
	out := map[string]int64{}
	for _, c := range r.GetCounts() {
		out[c.GetService()+"/"+c.GetKind()] += c.GetCount()
	}
	return out
}

// Erasing an identity removes its rows in the identity schema at once, destroys its
// data key so a sealed value copied before no longer opens, and leaves a receipt
// without personal data that completes when the other services report.
func TestEraseIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, identity.Migrations(), keyring.Migrations())
	kr := keyringtest.New(t, db.Pool, identity.TenantIDs(db.Pool))
	mod, conn, _ := sealedModule(t, db, kr)
	svc := mod.Service()
	a, err := svc.Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	b, err := svc.Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	ids := identityv1.NewIdentityServiceClient(conn)
	authc := identityv1.NewAuthServiceClient(conn)
	keys := identityv1.NewApiKeyServiceClient(conn)
	sessions := identityv1.NewSessionServiceClient(conn)
	erase := identityv1.NewErasureServiceClient(conn)

	// The subject: a password, a session, an API key, MFA enrolled.
	mk := func(external string) string {
		created, err := ids.CreateIdentity(as(a.APIKey), &identityv1.CreateIdentityRequest{ExternalId: external, Role: "user"})
		require.NoError(t, err)
		_, err = authc.SetPassword(as(a.APIKey), &identityv1.SetPasswordRequest{IdentityId: created.GetIdentity().GetId(), NewPassword: testPassword})
		require.NoError(t, err)
		return created.GetIdentity().GetId()
	}
	subject, bystander := mk("erase-me@example.com"), mk("keep-me@example.com")
	login, err := authc.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "erase-me@example.com", Password: testPassword})
	require.NoError(t, err)
	access := login.GetTokens().GetAccessToken()
	setup, err := authc.SetupMfa(bearer(access), &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = authc.VerifyMfa(bearer(access), &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)
	key, err := keys.CreateApiKey(as(a.APIKey), &identityv1.CreateApiKeyRequest{Name: "subject's key", IdentityId: subject})
	require.NoError(t, err)
	_, err = ids.GetMe(as(key.GetKey()), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	tenant, sid := uuid.MustParse(a.TenantID), uuid.MustParse(subject)
	sealed := adminBytes(t, db, `SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1`, sid)[0]
	ref := keyring.Ref{Field: "identity.mfa_totp.secret_sealed", Scope: keyring.Identity(tenant, sid), Row: sid[:]}
	_, err = kr.Open(ctx, ref, sealed)
	require.NoError(t, err)

	// Who may not erase, and bad input.
	_, err = erase.EraseIdentity(bearer(access), &identityv1.EraseIdentityRequest{Id: bystander})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseIdentity(as(b.APIKey), &identityv1.EraseIdentityRequest{Id: subject})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseIdentity(as(a.APIKey), &identityv1.EraseIdentityRequest{Id: "not-a-uuid"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.GetErasureReceipt(as(a.APIKey), &identityv1.GetErasureReceiptRequest{Id: "nope"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseIdentity(as(a.APIKey), &identityv1.EraseIdentityRequest{Id: uuid.NewString()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)

	resp, err := erase.EraseIdentity(as(a.APIKey), &identityv1.EraseIdentityRequest{Id: subject, Reason: "GDPR request #42"})
	require.NoError(t, err)
	rec := resp.GetReceipt()
	require.Equal(t, identityv1.ErasureState_ERASURE_STATE_IN_PROGRESS, rec.GetState())
	require.Equal(t, identityv1.ErasureSubjectKind_ERASURE_SUBJECT_KIND_IDENTITY, rec.GetSubjectKind())
	require.Equal(t, subject, rec.GetSubjectId())
	require.Equal(t, a.TenantID, rec.GetTenantId())
	require.Equal(t, a.IdentityID, rec.GetRequestedBy())
	require.Equal(t, "GDPR request #42", rec.GetReason())
	require.Equal(t, erasure.Services, rec.GetPendingServices(), "the keyring's part is done in the request")
	require.Nil(t, rec.GetCompletedAt())
	c := countsOf(rec)
	require.EqualValues(t, 1, c["identity/identities"])
	require.EqualValues(t, 1, c["identity/sessions"])
	require.EqualValues(t, 1, c["identity/api_keys"])
	require.EqualValues(t, 1, c["identity/mfa_factors"])
	require.Positive(t, c["identity/mfa_backup_codes"])
	require.Positive(t, c["keyring/data_keys"])
	require.NotContains(t, rec.String(), "erase-me", "the receipt holds no personal data")

	// Nothing reads it back.
	_, err = ids.GetIdentity(as(a.APIKey), &identityv1.GetIdentityRequest{Id: subject})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = ids.GetMe(as(key.GetKey()), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = ids.GetMe(bearer(access), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = sessions.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
	require.Error(t, err)
	_, err = authc.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "erase-me@example.com", Password: testPassword})
	require.Error(t, err)
	for _, q := range []string{
		`SELECT count(*) FROM identity.identities WHERE id = $1`,
		`SELECT count(*) FROM identity.sessions WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.refresh_tokens r WHERE $1::uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM identity.sessions s WHERE s.id = r.session_id)`,
		`SELECT count(*) FROM identity.api_keys WHERE identity_id = $1 OR creator_identity_id = $1`,
		`SELECT count(*) FROM identity.mfa_totp WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.mfa_backup_codes WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.sso_links WHERE identity_id = $1`,
		`SELECT count(*) FROM identity.invitations WHERE accepted_identity_id = $1 OR inviter_identity_id = $1`,
		`SELECT count(*) FROM keyring.dek_material WHERE identity_id = $1`,
	} {
		require.Zero(t, adminCount(t, db, q, sid), q)
	}
	require.Zero(t, adminCount(t, db, `SELECT count(*) FROM identity.api_key_prefixes WHERE prefix = $1`, key.GetApiKey().GetPrefix()))
	_, err = kr.Open(ctx, ref, sealed)
	require.ErrorIs(t, err, keyring.ErrDestroyed, "the copy made before the erasure no longer opens")

	// Asking again returns the same receipt.
	again, err := erase.EraseIdentity(as(a.APIKey), &identityv1.EraseIdentityRequest{Id: subject})
	require.NoError(t, err)
	require.Equal(t, rec.GetId(), again.GetReceipt().GetId())

	// The services report; a redelivered report counts once; the last completes it.
	report := func(service string, n int64) {
		_, err := svc.RecordErasureProgress(ctx, tenant, erasure.Progress{ErasureID: rec.GetId(), Service: service,
			Counts: []erasure.Count{{Kind: service + "_rows", Count: n}}})
		require.NoError(t, err)
	}
	report(erasure.ServiceMemory, 7)
	report(erasure.ServiceMemory, 7)
	got, err := erase.GetErasureReceipt(as(a.APIKey), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.ErasureState_ERASURE_STATE_IN_PROGRESS, got.GetReceipt().GetState())
	require.Equal(t, []string{erasure.ServiceUsage, erasure.ServiceWebhooks}, got.GetReceipt().GetPendingServices())
	report(erasure.ServiceUsage, 3)
	report(erasure.ServiceWebhooks, 5)
	got, err = erase.GetErasureReceipt(as(a.APIKey), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	require.NoError(t, err)
	done := got.GetReceipt()
	require.Equal(t, identityv1.ErasureState_ERASURE_STATE_COMPLETED, done.GetState())
	require.Empty(t, done.GetPendingServices())
	require.NotNil(t, done.GetCompletedAt())
	require.EqualValues(t, 7, countsOf(done)["memory/memory_rows"])
	require.EqualValues(t, 3, countsOf(done)["usage/usage_rows"])
	require.EqualValues(t, 1, adminCount(t, db, `SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.identity.erasure.completed'`))

	// Receipts are the tenant's: listed there, invisible to another tenant, and
	// not readable by a user.
	list, err := erase.ListErasureReceipts(as(a.APIKey), &identityv1.ListErasureReceiptsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetReceipts(), 1)
	list, err = erase.ListErasureReceipts(as(b.APIKey), &identityv1.ListErasureReceiptsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetReceipts())
	_, err = erase.GetErasureReceipt(as(b.APIKey), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	bystanderLogin, err := authc.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "keep-me@example.com", Password: testPassword})
	require.NoError(t, err, "another identity is untouched")
	_, err = erase.GetErasureReceipt(bearer(bystanderLogin.GetTokens().GetAccessToken()), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = ids.GetIdentity(as(b.APIKey), &identityv1.GetIdentityRequest{Id: b.IdentityID})
	require.NoError(t, err, "another tenant is untouched")
}

// Erasing a tenant (operators only) removes every identity and the tenant itself,
// destroys the tenant's keys and its identities', and keeps a receipt the operator
// still reads after the tenant is gone.
func TestEraseTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, identity.Migrations(), keyring.Migrations())
	kr := keyringtest.New(t, db.Pool, identity.TenantIDs(db.Pool))
	mod, conn, _ := sealedModule(t, db, kr)
	svc := mod.Service()
	a, err := svc.Bootstrap(ctx, "tenant-a", "Tenant A") // the operator's tenant
	require.NoError(t, err)
	b, err := svc.Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	ids := identityv1.NewIdentityServiceClient(conn)
	authc := identityv1.NewAuthServiceClient(conn)
	erase := identityv1.NewErasureServiceClient(conn)
	_, err = ids.CreateIdentity(as(b.APIKey), &identityv1.CreateIdentityRequest{ExternalId: "b-user@example.com", Role: "user"})
	require.NoError(t, err)
	_, err = authc.SetupMfa(as(b.APIKey), &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	tb, bAdmin := uuid.MustParse(b.TenantID), uuid.MustParse(b.IdentityID)
	sealed := adminBytes(t, db, `SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1`, bAdmin)[0]
	ref := keyring.Ref{Field: "identity.mfa_totp.secret_sealed", Scope: keyring.Identity(tb, bAdmin), Row: bAdmin[:]}
	_, err = kr.Open(ctx, ref, sealed)
	require.NoError(t, err)

	// Every bootstrap key is an operator's; an admin's ordinary key is not.
	plain, err := identityv1.NewApiKeyServiceClient(conn).CreateApiKey(as(b.APIKey), &identityv1.CreateApiKeyRequest{Name: "plain admin", IdentityId: b.IdentityID})
	require.NoError(t, err)
	_, err = erase.EraseTenant(as(plain.GetKey()), &identityv1.EraseTenantRequest{Id: b.TenantID})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseTenant(as(a.APIKey), &identityv1.EraseTenantRequest{Id: a.TenantID})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseTenant(as(a.APIKey), &identityv1.EraseTenantRequest{Id: "x"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = erase.EraseTenant(as(a.APIKey), &identityv1.EraseTenantRequest{Id: uuid.NewString()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)

	resp, err := erase.EraseTenant(as(a.APIKey), &identityv1.EraseTenantRequest{Id: b.TenantID, Reason: "contract ended"})
	require.NoError(t, err)
	rec := resp.GetReceipt()
	require.Equal(t, identityv1.ErasureSubjectKind_ERASURE_SUBJECT_KIND_TENANT, rec.GetSubjectKind())
	require.Equal(t, b.TenantID, rec.GetTenantId())
	require.Equal(t, erasure.Services, rec.GetPendingServices())
	c := countsOf(rec)
	require.EqualValues(t, 1, c["identity/tenants"])
	require.EqualValues(t, 2, c["identity/identities"])
	require.Positive(t, c["keyring/data_keys"])

	_, err = ids.GetMe(as(b.APIKey), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	for _, q := range []string{
		`SELECT count(*) FROM identity.tenants WHERE id = $1`,
		`SELECT count(*) FROM identity.identities WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.api_keys WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.api_key_prefixes WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.sessions WHERE tenant_id = $1`,
		`SELECT count(*) FROM identity.mfa_totp WHERE tenant_id = $1`,
		`SELECT count(*) FROM keyring.dek_material WHERE tenant_id = $1`,
	} {
		require.Zero(t, adminCount(t, db, q, tb), q)
	}
	_, err = kr.Open(ctx, ref, sealed)
	require.ErrorIs(t, err, keyring.ErrDestroyed)

	// The receipt outlives the tenant: the operator reads it and erasing again
	// returns it; tenant A is untouched.
	got, err := erase.GetErasureReceipt(as(a.APIKey), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	require.NoError(t, err)
	require.Equal(t, rec.GetId(), got.GetReceipt().GetId())
	again, err := erase.EraseTenant(as(a.APIKey), &identityv1.EraseTenantRequest{Id: b.TenantID})
	require.NoError(t, err)
	require.Equal(t, rec.GetId(), again.GetReceipt().GetId())
	for _, s := range erasure.Services {
		_, err := svc.RecordErasureProgress(ctx, tb, erasure.Progress{ErasureID: rec.GetId(), Service: s})
		require.NoError(t, err)
	}
	got, err = erase.GetErasureReceipt(as(a.APIKey), &identityv1.GetErasureReceiptRequest{Id: rec.GetId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.ErasureState_ERASURE_STATE_COMPLETED, got.GetReceipt().GetState())
	_, err = ids.GetMe(as(a.APIKey), &identityv1.GetMeRequest{})
	require.NoError(t, err)
}
