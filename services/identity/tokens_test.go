package identity_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

const testPassword = "correct horse battery staple"

// tokLogBuffer collects log output from concurrent handlers.
type tokLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *tokLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *tokLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type tokBundle struct {
	db       *pgtest.DB
	mod      *identity.Module
	conn     *grpc.ClientConn
	logs     *tokLogBuffer
	ids      identityv1.IdentityServiceClient
	authn    identityv1.AuthServiceClient
	sessions identityv1.SessionServiceClient
	adminA   string // API key: admin of tenant A (and operator)
	adminB   string
	tenantA  string
	tenantB  string
}

type tokOptions struct {
	cfg identity.TokenConfig
	bus *bus.Bus
}

func tokSetup(t testing.TB, opts tokOptions) *tokBundle {
	t.Helper()
	db := pgtest.New(t, identity.Migrations())
	logs := &tokLogBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mod, err := identity.New(identity.Config{APIKeyPepper: pepper, Tokens: opts.cfg},
		identity.Deps{Pool: db.Pool, Logger: logger, Bus: opts.bus})
	require.NoError(t, err)
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator(), Logger: logger})
	require.NoError(t, err)
	mod.Register(srv)
	ctx := context.Background()
	require.NoError(t, mod.Start(ctx))
	t.Cleanup(func() { _ = mod.Stop(context.Background()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	a, err := mod.Service().Bootstrap(ctx, "tenant-a", "Tenant A")
	require.NoError(t, err)
	b, err := mod.Service().Bootstrap(ctx, "tenant-b", "Tenant B")
	require.NoError(t, err)
	return &tokBundle{
		db: db, mod: mod, conn: conn, logs: logs,
		ids: identityv1.NewIdentityServiceClient(conn), authn: identityv1.NewAuthServiceClient(conn),
		sessions: identityv1.NewSessionServiceClient(conn),
		adminA:   a.APIKey, adminB: b.APIKey, tenantA: a.TenantID, tenantB: b.TenantID,
	}
}

func bearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// user creates an identity in tenant A with the test password.
func (b *tokBundle) user(t testing.TB, externalID, role string) string {
	t.Helper()
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: externalID, Role: role})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	_, err = b.authn.SetPassword(as(b.adminA), &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: testPassword})
	require.NoError(t, err)
	return id
}

func (b *tokBundle) login(t testing.TB, externalID string) *identityv1.Tokens {
	t.Helper()
	resp, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{
		Tenant: "tenant-a", Identifier: externalID, Password: testPassword, DeviceName: "Work laptop",
	})
	require.NoError(t, err)
	require.NotNil(t, resp.GetTokens())
	return resp.GetTokens()
}

func (b *tokBundle) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestLoginRefreshLogout(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	id := b.user(t, "ada@example.com", "user")
	toks := b.login(t, "ada@example.com")
	require.Equal(t, "Bearer", toks.GetTokenType())
	require.Equal(t, int32(900), toks.GetExpiresIn())
	require.True(t, strings.HasPrefix(toks.GetRefreshToken(), "mrt_"))

	me, err := b.ids.GetMe(bearer(toks.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	require.Equal(t, id, me.GetIdentity().GetId())

	// The token verifies with any standard library given the published key.
	jwks, err := b.authn.GetJwks(context.Background(), &identityv1.GetJwksRequest{})
	require.NoError(t, err)
	require.Len(t, jwks.GetKeys(), 1)
	require.Equal(t, "EdDSA", jwks.GetKeys()[0].GetAlg())
	remote, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.NewJWKSKeys(b.authn, 0), Issuer: "manushya", Audience: "manushya",
	})
	require.NoError(t, err)
	p, err := remote.Verify(context.Background(), toks.GetAccessToken())
	require.NoError(t, err)
	require.Equal(t, b.tenantA, p.TenantID)
	require.Equal(t, toks.GetSessionId(), p.SessionID)
	require.Equal(t, []string{"user"}, p.Roles)

	sessions, err := b.sessions.ListSessions(bearer(toks.GetAccessToken()), &identityv1.ListSessionsRequest{})
	require.NoError(t, err)
	require.Len(t, sessions.GetSessions(), 1)
	s := sessions.GetSessions()[0]
	require.True(t, s.GetCurrent())
	require.Equal(t, "Work laptop", s.GetDeviceName())
	require.Equal(t, "127.0.0.1", s.GetClientIp())
	require.NotEmpty(t, s.GetUserAgent())
	require.Equal(t, identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_PASSWORD, s.GetAuthMethod())

	next, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: toks.GetRefreshToken()})
	require.NoError(t, err)
	require.NotEqual(t, toks.GetRefreshToken(), next.GetTokens().GetRefreshToken())
	require.Equal(t, toks.GetSessionId(), next.GetTokens().GetSessionId())
	_, err = b.ids.GetMe(bearer(next.GetTokens().GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	out, err := b.authn.Logout(bearer(next.GetTokens().GetAccessToken()), &identityv1.LogoutRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(1), out.GetRevokedCount())
	for _, access := range []string{toks.GetAccessToken(), next.GetTokens().GetAccessToken()} {
		_, err = b.ids.GetMe(bearer(access), &identityv1.GetMeRequest{})
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	}
	_, err = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: next.GetTokens().GetRefreshToken()})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)

	// Malformed and unknown refresh tokens.
	_, err = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: "nope"})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED)
	_, err = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: "mrt_" + strings.Repeat("A", 43)})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN)

	// Nothing secret reached the logs.
	logs := b.logs.String()
	for _, secret := range []string{testPassword, toks.GetRefreshToken(), toks.GetAccessToken(), next.GetTokens().GetRefreshToken(), b.adminA} {
		require.NotContains(t, logs, secret)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	t.Parallel()
	// A grace window of a nanosecond: any second use is a reuse.
	b := tokSetup(t, tokOptions{cfg: identity.TokenConfig{RefreshGrace: time.Nanosecond}})
	b.user(t, "bob", "user")
	first := b.login(t, "bob")
	second, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: first.GetRefreshToken()})
	require.NoError(t, err)

	// The thief replays the spent token: the whole session dies.
	_, err = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: first.GetRefreshToken()})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: second.GetTokens().GetRefreshToken()})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = b.ids.GetMe(bearer(second.GetTokens().GetAccessToken()), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)

	got, err := b.sessions.GetSession(as(b.adminA), &identityv1.GetSessionRequest{Id: first.GetSessionId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_REFRESH_TOKEN_REUSE, got.GetSession().GetRevokeReason())
	var events int
	require.NoError(t, b.admin(t).QueryRow(context.Background(),
		"SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.session.revoked'").Scan(&events))
	require.Equal(t, 1, events)
}

func TestConcurrentRefreshGetsOneSuccessor(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	b.user(t, "carol", "user")
	first := b.login(t, "carol")
	const n = 8
	results := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: first.GetRefreshToken()})
			errs[i] = err
			results[i] = resp.GetTokens().GetRefreshToken()
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, results[0], results[i], "every racing refresh gets the same successor")
	}
	// The successor works and the session is alive.
	next, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: results[0]})
	require.NoError(t, err)
	_, err = b.ids.GetMe(bearer(next.GetTokens().GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)
}

func TestLoginFailuresLookAlikeAndLock(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	b.user(t, "dave", "user")
	attempt := func(tenant, identifier, password string) error {
		_, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: tenant, Identifier: identifier, Password: password})
		return err
	}
	var failures []*status.Status
	for _, err := range []error{
		attempt("tenant-a", "dave", "wrong password here"),
		attempt("tenant-a", "nobody", testPassword),
		attempt("no-such-tenant", "dave", testPassword),
		attempt(b.tenantB, "dave", testPassword),
	} {
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED)
		failures = append(failures, status.Convert(err))
	}
	for _, st := range failures[1:] {
		require.Equal(t, failures[0].Message(), st.Message(), "no answer tells whether the identifier exists")
	}
	// Four more failures reach the threshold (5); then even the right password waits.
	for range 4 {
		requireCode(t, attempt("tenant-a", "dave", "wrong password here"), codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED)
	}
	var header metadata.MD
	_, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "dave", Password: testPassword}, grpc.Header(&header))
	requireCode(t, err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_ACCOUNT_LOCKED)
	require.NotEmpty(t, header.Get("retry-after"))
	// An unknown identifier locks the same way, so lockout reveals nothing either.
	for range 5 {
		_ = attempt("tenant-a", "ghost", "wrong password here")
	}
	requireCode(t, attempt("tenant-a", "ghost", "wrong password here"), codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_ACCOUNT_LOCKED)
	require.NotContains(t, b.logs.String(), "wrong password here")
}

func TestPasswordPolicyAndBcryptRehash(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: "erin"})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	for _, weak := range []string{"short", "password1234", "Qwerty123456!", "aaaaaaaaaaaaaaaa", "iloveyou2024!!"} {
		_, err := b.authn.SetPassword(as(b.adminA), &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: weak})
		requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	}
	// A hash imported from a bcrypt system signs in and is upgraded to argon2id.
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	require.NoError(t, err)
	admin := b.admin(t)
	_, err = admin.Exec(context.Background(), "UPDATE identity.identities SET password_hash = $1 WHERE id = $2", string(h), id)
	require.NoError(t, err)
	toks := b.login(t, "erin")
	var stored string
	require.NoError(t, admin.QueryRow(context.Background(), "SELECT password_hash FROM identity.identities WHERE id = $1", id).Scan(&stored))
	require.True(t, strings.HasPrefix(stored, "$argon2id$v=19$m=19456,t=2,p=1$"), stored)

	// ChangePassword needs the current one and revokes other sessions.
	other := b.login(t, "erin")
	_, err = b.authn.ChangePassword(bearer(toks.GetAccessToken()), &identityv1.ChangePasswordRequest{CurrentPassword: "not it at all", NewPassword: "a much better passphrase"})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	resp, err := b.authn.ChangePassword(bearer(toks.GetAccessToken()), &identityv1.ChangePasswordRequest{CurrentPassword: testPassword, NewPassword: "a much better passphrase"})
	require.NoError(t, err)
	require.Equal(t, int32(1), resp.GetRevokedCount())
	_, err = b.ids.GetMe(bearer(other.GetAccessToken()), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = b.ids.GetMe(bearer(toks.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	// A user cannot set an admin's password.
	_, err = b.authn.SetPassword(bearer(toks.GetAccessToken()), &identityv1.SetPasswordRequest{IdentityId: id, NewPassword: "another fine passphrase"})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
}

func TestSessionCapAndIsolation(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	_, err := b.admin(t).Exec(context.Background(),
		`UPDATE identity.tenants SET settings = settings || '{"max_sessions_per_identity": 2}' WHERE id = $1`, b.tenantA)
	require.NoError(t, err)
	b.user(t, "frank", "user")
	first := b.login(t, "frank")
	b.login(t, "frank")
	third := b.login(t, "frank")
	_, err = b.ids.GetMe(bearer(first.GetAccessToken()), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	list, err := b.sessions.ListSessions(bearer(third.GetAccessToken()), &identityv1.ListSessionsRequest{IncludeRevoked: true})
	require.NoError(t, err)
	require.Len(t, list.GetSessions(), 3)
	oldest := list.GetSessions()[2]
	require.Equal(t, first.GetSessionId(), oldest.GetId())
	require.Equal(t, identityv1.SessionRevokeReason_SESSION_REVOKE_REASON_SESSION_LIMIT, oldest.GetRevokeReason())

	// Another tenant's admin sees and revokes nothing of tenant A.
	_, err = b.sessions.GetSession(as(b.adminB), &identityv1.GetSessionRequest{Id: third.GetSessionId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.sessions.RevokeSession(as(b.adminB), &identityv1.RevokeSessionRequest{Id: third.GetSessionId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	all, err := b.sessions.ListSessions(as(b.adminB), &identityv1.ListSessionsRequest{AllIdentities: true, IncludeRevoked: true})
	require.NoError(t, err)
	require.Empty(t, all.GetSessions())
	_, err = b.ids.GetMe(bearer(third.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)

	// A plain user sees only their own sessions, and not another's.
	b.user(t, "grace", "user")
	graceToks := b.login(t, "grace")
	_, err = b.sessions.ListSessions(bearer(graceToks.GetAccessToken()), &identityv1.ListSessionsRequest{AllIdentities: true})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.sessions.RevokeSession(bearer(graceToks.GetAccessToken()), &identityv1.RevokeSessionRequest{Id: third.GetSessionId()})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.sessions.CleanupSessions(bearer(graceToks.GetAccessToken()), &identityv1.CleanupSessionsRequest{})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)

	// The tenant admin lists everyone, revokes one, and others revoke the rest.
	all, err = b.sessions.ListSessions(as(b.adminA), &identityv1.ListSessionsRequest{AllIdentities: true})
	require.NoError(t, err)
	require.Len(t, all.GetSessions(), 3)
	_, err = b.sessions.RevokeSession(as(b.adminA), &identityv1.RevokeSessionRequest{Id: graceToks.GetSessionId()})
	require.NoError(t, err)
	_, err = b.ids.GetMe(bearer(graceToks.GetAccessToken()), &identityv1.GetMeRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	others, err := b.sessions.RevokeOtherSessions(bearer(third.GetAccessToken()), &identityv1.RevokeOtherSessionsRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(1), others.GetRevokedCount())
	cleaned, err := b.sessions.CleanupSessions(as(b.adminA), &identityv1.CleanupSessionsRequest{DryRun: true})
	require.NoError(t, err)
	require.Zero(t, cleaned.GetRemovedCount(), "revoked sessions are kept for the retention period")
}

func TestCreateIdentityIssueToken(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	req := &identityv1.CreateIdentityRequest{
		ExternalId: "agent-42", Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT, Role: "agent", IssueToken: true, IdempotencyKey: "agent-42",
	}
	created, err := b.ids.CreateIdentity(as(b.adminA), req)
	require.NoError(t, err)
	toks := created.GetTokens()
	require.NotEmpty(t, toks.GetAccessToken())
	me, err := b.ids.GetMe(bearer(toks.GetAccessToken()), &identityv1.GetMeRequest{})
	require.NoError(t, err)
	require.Equal(t, created.GetIdentity().GetId(), me.GetIdentity().GetId())
	got, err := b.sessions.GetSession(bearer(toks.GetAccessToken()), &identityv1.GetSessionRequest{Id: toks.GetSessionId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_ISSUED, got.GetSession().GetAuthMethod())

	// A retry returns the same identity with fresh credentials; tokens are never
	// stored with the replayable response.
	again, err := b.ids.CreateIdentity(as(b.adminA), req)
	require.NoError(t, err)
	require.Equal(t, created.GetIdentity().GetId(), again.GetIdentity().GetId())
	require.NotEqual(t, toks.GetRefreshToken(), again.GetTokens().GetRefreshToken())
	var leaked int
	require.NoError(t, b.admin(t).QueryRow(context.Background(),
		"SELECT count(*) FROM identity.idempotency_keys WHERE position($1::bytea in response) > 0", []byte(toks.GetRefreshToken())).Scan(&leaked))
	require.Zero(t, leaked)
}

func TestRevocationReachesAnotherVerifier(t *testing.T) {
	t.Parallel()
	nats, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(nats.Shutdown)
	ctx := t.Context()
	connect := func(name string) *bus.Bus {
		bb, err := bus.Connect(ctx, nats.URL(), name)
		require.NoError(t, err)
		t.Cleanup(bb.Close)
		_, err = bb.EnsureStream(ctx)
		require.NoError(t, err)
		return bb
	}
	b := tokSetup(t, tokOptions{bus: connect("identity")})
	b.user(t, "heidi", "user")
	toks := b.login(t, "heidi")

	// Another process: keys from GetJwks, revocations from the bus.
	other := connect("memory")
	revoked := auth.NewRevocations()
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- revoked.Follow(followCtx, other.JS, other.StreamName(), slog.Default()) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	v, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.NewJWKSKeys(b.authn, 0), Issuer: "manushya", Audience: "manushya", Revoked: revoked,
	})
	require.NoError(t, err)
	_, err = v.Verify(ctx, toks.GetAccessToken())
	require.NoError(t, err)

	_, err = b.sessions.RevokeSession(bearer(toks.GetAccessToken()), &identityv1.RevokeSessionRequest{Id: toks.GetSessionId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, toks.GetAccessToken())
		return apierr.ReasonOf(err) == errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED
	}, 10*time.Second, 10*time.Millisecond)

	// A process that starts later learns the revocation from the stream's history.
	late := auth.NewRevocations()
	lateCtx, stopLate := context.WithCancel(ctx)
	lateDone := make(chan error, 1)
	go func() { lateDone <- late.Follow(lateCtx, other.JS, other.StreamName(), slog.Default()) }()
	t.Cleanup(func() { stopLate(); require.NoError(t, <-lateDone) })
	require.Eventually(t, func() bool { return late.IsRevoked(toks.GetSessionId()) }, 10*time.Second, 10*time.Millisecond)
}

func TestSigningKeyRotationKeepsTokensValid(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{cfg: identity.TokenConfig{KeyPrepublish: time.Nanosecond}})
	b.user(t, "ivan", "user")
	old := b.login(t, "ivan")
	remote, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.NewJWKSKeys(b.authn, 0), Issuer: "manushya", Audience: "manushya",
	})
	require.NoError(t, err)
	_, err = remote.Verify(context.Background(), old.GetAccessToken())
	require.NoError(t, err)

	require.NoError(t, b.mod.Service().RotateSigningKey(context.Background()))
	jwks, err := b.authn.GetJwks(context.Background(), &identityv1.GetJwksRequest{})
	require.NoError(t, err)
	require.Len(t, jwks.GetKeys(), 2, "the retired key is still published")
	fresh := b.login(t, "ivan")
	kid := func(tok string) string {
		p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		require.NoError(t, err)
		return p.Header["kid"].(string)
	}
	require.NotEqual(t, kid(old.GetAccessToken()), kid(fresh.GetAccessToken()))
	require.Equal(t, jwks.GetKeys()[0].GetKid(), kid(fresh.GetAccessToken()), "the newest key signs")
	for _, tok := range []string{old.GetAccessToken(), fresh.GetAccessToken()} {
		_, err = b.ids.GetMe(bearer(tok), &identityv1.GetMeRequest{})
		require.NoError(t, err)
	}
	_, err = remote.Verify(context.Background(), old.GetAccessToken())
	require.NoError(t, err)

	// The private key is stored sealed: its seed never appears in the row.
	var sealed, public []byte
	require.NoError(t, b.admin(t).QueryRow(context.Background(),
		"SELECT private_key, public_key FROM identity.signing_keys ORDER BY create_time LIMIT 1").Scan(&sealed, &public))
	require.NotContains(t, string(sealed), string(public))
	require.Greater(t, len(sealed), 32+12)
}

// codeFactor is a second factor for one identity that accepts one code.
type codeFactor struct {
	identity string
	code     string
}

func (f codeFactor) Enabled(_ context.Context, _, identity uuid.UUID) (bool, error) {
	return identity.String() == f.identity, nil
}

func (f codeFactor) Verify(_ context.Context, _, _ uuid.UUID, code string) error {
	if code != f.code {
		return errors.New("wrong code")
	}
	return nil
}

func TestLoginSecondFactorHook(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	id := b.user(t, "judy", "user")
	b.mod.Service().SetSecondFactor(codeFactor{identity: id, code: "246810"})

	resp, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "judy", Password: testPassword})
	require.NoError(t, err)
	ch := resp.GetMfaChallenge()
	require.NotNil(t, ch)
	require.Nil(t, resp.GetTokens())
	done, err := b.authn.CompleteMfaLogin(context.Background(), &identityv1.CompleteMfaLoginRequest{ChallengeId: ch.GetChallengeId(), Code: "246810"})
	require.NoError(t, err)
	got, err := b.sessions.GetSession(bearer(done.GetTokens().GetAccessToken()), &identityv1.GetSessionRequest{Id: done.GetTokens().GetSessionId()})
	require.NoError(t, err)
	require.Equal(t, identityv1.SessionAuthMethod_SESSION_AUTH_METHOD_PASSWORD_MFA, got.GetSession().GetAuthMethod())
	// A challenge is single-use.
	_, err = b.authn.CompleteMfaLogin(context.Background(), &identityv1.CompleteMfaLoginRequest{ChallengeId: ch.GetChallengeId(), Code: "246810"})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED)

	// One step with the code works; a right password with wrong codes keeps counting
	// towards the lockout.
	_, err = b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "judy", Password: testPassword, MfaCode: "246810"})
	require.NoError(t, err)
	for range 5 {
		_, err = b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "judy", Password: testPassword, MfaCode: "000000"})
		requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_LOGIN_FAILED)
	}
	_, err = b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "judy", Password: testPassword, MfaCode: "246810"})
	requireCode(t, err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_ACCOUNT_LOCKED)
}
