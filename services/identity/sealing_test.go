package identity_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/keyring/keyringtest"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// sealedModule runs the identity service over db with the given sealer (nil: the
// pre-keyring secretbox keys) and returns a client connection to it.
func sealedModule(t *testing.T, db *pgtest.DB, kr identity.Sealer) (*identity.Module, *grpc.ClientConn, func()) {
	t.Helper()
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper}, identity.Deps{Pool: db.Pool, Logger: slog.New(slog.DiscardHandler), Keyring: kr})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	mod.Register(srv)
	require.NoError(t, mod.Start(context.Background()))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	stop := func() {
		_ = conn.Close()
		srv.Stop()
		_ = mod.Stop(context.Background())
	}
	t.Cleanup(stop)
	return mod, conn, stop
}

func adminBytes(t *testing.T, db *pgtest.DB, sql string, args ...any) [][]byte {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(t.Context(), sql, args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	require.NoError(t, err)
	return out
}

// A database written before the keyring keeps working: signing keys and TOTP
// secrets sealed the old way open, the re-encryption job moves them to the
// keyring, and everything sealed from then on is in the keyring format.
func TestSecretsMoveToTheKeyring(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, identity.Migrations(), keyring.Migrations())

	// Before: the secretbox keys derived from the pepper.
	old, oldConn, stopOld := sealedModule(t, db, nil)
	boot, err := old.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	setup, err := identityv1.NewAuthServiceClient(oldConn).SetupMfa(as(boot.APIKey), &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	for _, c := range adminBytes(t, db, `SELECT private_key FROM identity.signing_keys UNION ALL SELECT secret_sealed FROM identity.mfa_totp`) {
		require.False(t, keyring.IsSealed(c))
	}
	stopOld()

	// After: the keyring, over the same database.
	kr := keyringtest.New(t, db.Pool, identity.TenantIDs(db.Pool))
	mod, conn, _ := sealedModule(t, db, kr)
	require.Len(t, adminBytes(t, db, `SELECT private_key FROM identity.signing_keys`), 1, "the old signing key is still usable")
	authc := identityv1.NewAuthServiceClient(conn)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	on, err := authc.VerifyMfa(as(boot.APIKey), &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err, "the TOTP secret sealed the old way opens")
	require.True(t, on.GetMfaEnabled())

	// A password login and a refresh: the successor is sealed by the keyring.
	ids := identityv1.NewIdentityServiceClient(conn)
	user, err := ids.CreateIdentity(as(boot.APIKey), &identityv1.CreateIdentityRequest{ExternalId: "sealed-user", Role: "user"})
	require.NoError(t, err)
	_, err = authc.SetPassword(as(boot.APIKey), &identityv1.SetPasswordRequest{IdentityId: user.GetIdentity().GetId(), NewPassword: testPassword})
	require.NoError(t, err)
	login, err := authc.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "sealed-user", Password: testPassword})
	require.NoError(t, err)
	_, err = identityv1.NewSessionServiceClient(conn).RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
	require.NoError(t, err)
	successors := adminBytes(t, db, `SELECT successor FROM identity.refresh_tokens WHERE successor IS NOT NULL`)
	require.Len(t, successors, 1)
	require.True(t, keyring.IsSealed(successors[0]))

	rep, err := kr.Reencrypt(ctx)
	require.NoError(t, err)
	moved := map[string]int64{}
	for _, p := range rep.Fields {
		moved[p.Field] = p.Resealed
		require.Zero(t, p.Failed, p.Field)
	}
	require.EqualValues(t, 1, moved["identity.signing_keys.private_key"])
	require.EqualValues(t, 1, moved["identity.mfa_totp.secret_sealed"])
	for _, c := range adminBytes(t, db, `SELECT private_key FROM identity.signing_keys UNION ALL SELECT secret_sealed FROM identity.mfa_totp`) {
		require.True(t, keyring.IsSealed(c))
		require.NotContains(t, string(c), setup.GetSecret())
	}

	// The TOTP secret is bound to its identity under the identity's own key: it
	// opens for that identity only.
	tenant, admin := uuid.MustParse(boot.TenantID), uuid.MustParse(boot.IdentityID)
	sealed := adminBytes(t, db, `SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1`, admin)[0]
	ref := keyring.Ref{Field: "identity.mfa_totp.secret_sealed", Scope: keyring.Identity(tenant, admin), Row: admin[:]}
	plain, err := kr.Open(ctx, ref, sealed)
	require.NoError(t, err)
	require.Equal(t, setup.GetSecret(), string(plain))
	other := uuid.MustParse(user.GetIdentity().GetId())
	_, err = kr.Open(ctx, keyring.Ref{Field: ref.Field, Scope: keyring.Identity(tenant, other), Row: other[:]}, sealed)
	require.Error(t, err, "moved to another identity")

	// A signing-key rotation after the move: sealed by the keyring, and tokens still
	// verify.
	require.NoError(t, mod.Service().RotateSigningKey(ctx))
	for _, c := range adminBytes(t, db, `SELECT private_key FROM identity.signing_keys`) {
		require.True(t, keyring.IsSealed(c))
	}
	_, err = ids.GetMe(bearer(login.GetTokens().GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	// Crypto-shredding the identity makes its TOTP secret unreadable.
	_, err = kr.Destroy(ctx, keyring.Identity(tenant, admin))
	require.NoError(t, err)
	_, err = kr.Open(ctx, ref, sealed)
	require.ErrorIs(t, err, keyring.ErrDestroyed)
}
