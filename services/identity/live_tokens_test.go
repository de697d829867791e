package identity_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
	"github.com/manushya-ai/manushya/services/identity"
)

// followingVerifier is the access-token verifier of another process: keys from
// GetJwks, revocations from the bus.
func followingVerifier(t *testing.T, b *tokBundle, other *bus.Bus) *auth.JWTVerifier {
	t.Helper()
	revoked := auth.NewRevocations()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- revoked.Follow(ctx, other.JS, other.StreamName(), slog.Default()) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	v, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{
		Keys: auth.NewJWKSKeys(b.authn, 0), Issuer: "manushya", Audience: "manushya", Revoked: revoked,
	})
	require.NoError(t, err)
	return v
}

func embeddedBus(t *testing.T) func(name string) *bus.Bus {
	t.Helper()
	nats, err := bus.StartEmbedded(t.TempDir(), -1)
	require.NoError(t, err)
	t.Cleanup(nats.Shutdown)
	return func(name string) *bus.Bus {
		bb, err := bus.Connect(t.Context(), nats.URL(), name)
		require.NoError(t, err)
		t.Cleanup(bb.Close)
		_, err = bb.EnsureStream(t.Context())
		require.NoError(t, err)
		return bb
	}
}

// TestRoleRemovalRetiresLiveTokens takes the admin role from an identity that holds
// an access token: the token stops working at once in this process, within moments
// in another one (over the bus) and in a process started later (from the table),
// while the session lives on and its refresh carries the reduced roles.
func TestRoleRemovalRetiresLiveTokens(t *testing.T) {
	t.Parallel()
	connect := embeddedBus(t)
	b := tokSetup(t, tokOptions{bus: connect("identity")})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	id := b.user(t, "ivan@example.com", "admin")
	toks := b.login(t, "ivan@example.com")
	bearerHdr := map[string]string{"Authorization": "Bearer " + toks.GetAccessToken()}
	other := followingVerifier(t, b, connect("memory"))
	ctx := t.Context()
	_, err := other.Verify(ctx, toks.GetAccessToken())
	require.NoError(t, err)
	listCase := apitest.Case{
		Name: "admin token lists", Method: "/manushya.identity.v1.IdentityService/ListIdentities",
		Request: &identityv1.ListIdentitiesRequest{}, Headers: bearerHdr, WantCode: codes.OK,
	}
	apitest.Run(t, target, listCase)

	// Keeping admin and adding a role takes nothing away: the token stays good.
	_, err = b.ids.UpdateIdentity(as(b.adminA), &identityv1.UpdateIdentityRequest{
		Identity:   &identityv1.Identity{Id: id, Roles: []string{"auditor"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"roles"}},
	})
	require.NoError(t, err)
	apitest.Run(t, target, listCase)

	_, err = b.ids.UpdateIdentity(as(b.adminA), &identityv1.UpdateIdentityRequest{
		Identity:   &identityv1.Identity{Id: id, Role: "user"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"role"}},
	})
	require.NoError(t, err)
	apitest.Run(t, target, apitest.Case{
		Name: "old token refused at once", Method: "/manushya.identity.v1.IdentityService/GetMe",
		Request: &identityv1.GetMeRequest{}, Headers: bearerHdr,
		WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_CREDENTIALS_EXPIRED",
	})
	require.Eventually(t, func() bool {
		_, err := other.Verify(ctx, toks.GetAccessToken())
		return apierr.ReasonOf(err) == errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED
	}, 10*time.Second, 5*time.Millisecond)

	// A process started now loads the floor from the database.
	late, err := identity.New(identity.Config{APIKeyPepper: pepper}, identity.Deps{Pool: b.db.Pool, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, late.Start(ctx))
	t.Cleanup(func() { _ = late.Stop(context.Background()) })
	_, err = late.Service().Verifier().Verify(ctx, toks.GetAccessToken())
	require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, apierr.ReasonOf(err))

	// The session survives: a refresh gets a token with the roles as they are now.
	next, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: toks.GetRefreshToken()})
	require.NoError(t, err)
	p, err := other.Verify(ctx, next.GetTokens().GetAccessToken())
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"user", "auditor"}, p.Roles)
	newHdr := map[string]string{"Authorization": "Bearer " + next.GetTokens().GetAccessToken()}
	apitest.Run(t, target,
		apitest.Case{
			Name: "new token reads itself", Method: "/manushya.identity.v1.IdentityService/GetMe",
			Request: &identityv1.GetMeRequest{}, Headers: newHdr, WantCode: codes.OK,
		},
		apitest.Case{
			Name: "new token is no admin", Method: "/manushya.identity.v1.IdentityService/ListIdentities",
			Request: &identityv1.ListIdentitiesRequest{}, Headers: newHdr, WantCode: codes.PermissionDenied,
		})
}

// TestSignInRacingDeactivation runs sign-ins and refreshes against deactivations
// of the same identities at the same time: whichever wins, no token that comes out
// works for an identity that ends up deactivated.
func TestSignInRacingDeactivation(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	const rounds = 6
	deactivate := func(id string) {
		_, err := b.ids.UpdateIdentity(as(b.adminA), &identityv1.UpdateIdentityRequest{
			Identity:   &identityv1.Identity{Id: id, IsActive: false},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"is_active"}},
		})
		require.NoError(t, err)
	}
	mustRefuse := func(access string) {
		t.Helper()
		_, err := b.ids.GetMe(bearer(access), &identityv1.GetMeRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "a token of a deactivated identity still works: %v", err)
	}
	for i := range rounds {
		external := "racer-" + string(rune('a'+i))
		id := b.user(t, external, "user")
		held := b.login(t, external) // for the refresh race
		var (
			wg                  sync.WaitGroup
			login               *identityv1.LoginResponse
			refreshed           *identityv1.RefreshSessionResponse
			loginErr, refreshEr error
		)
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			login, loginErr = b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: external, Password: testPassword})
		})
		wg.Go(func() {
			<-start
			refreshed, refreshEr = b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: held.GetRefreshToken()})
		})
		wg.Go(func() {
			<-start
			deactivate(id)
		})
		close(start)
		wg.Wait()
		if loginErr == nil {
			mustRefuse(login.GetTokens().GetAccessToken())
			_, err := b.sessions.RefreshSession(context.Background(), &identityv1.RefreshSessionRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
			require.Error(t, err)
		} else {
			require.Equal(t, codes.Unauthenticated, status.Code(loginErr), "%v", loginErr)
		}
		if refreshEr == nil {
			mustRefuse(refreshed.GetTokens().GetAccessToken())
		}
		mustRefuse(held.GetAccessToken())
	}
}

// TestMFARequiredTenant signs in to a tenant that requires MFA: a person without
// MFA gets only an enrollment token (no refresh token) that can set MFA up and
// nothing else; once it is on, sign-in asks for the code and gives full tokens.
// Agents are not people and sign in as usual.
func TestMFARequiredTenant(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	_, err := b.admin(t).Exec(context.Background(), `UPDATE identity.tenants SET settings = '{"mfa_required": true}' WHERE slug = 'tenant-a'`)
	require.NoError(t, err)
	b.user(t, "mara@example.com", "admin")
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{
		ExternalId: "bot-7", Kind: identityv1.IdentityKind_IDENTITY_KIND_AGENT, Role: "agent",
	})
	require.NoError(t, err)
	_, err = b.authn.SetPassword(as(b.adminA), &identityv1.SetPasswordRequest{IdentityId: created.GetIdentity().GetId(), NewPassword: testPassword})
	require.NoError(t, err)

	var enrollToken string
	apitest.Run(t, target, apitest.Case{
		Name: "login without mfa", Method: "/manushya.identity.v1.AuthService/Login",
		Request:  &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "mara@example.com", Password: testPassword},
		WantCode: codes.OK,
		Check: func(t testing.TB, resp proto.Message) {
			r := apitest.As[*identityv1.LoginResponse](t, resp)
			require.True(t, r.GetMfaEnrollmentRequired())
			require.NotEmpty(t, r.GetTokens().GetAccessToken())
			require.Empty(t, r.GetTokens().GetRefreshToken())
			require.Equal(t, "mara@example.com", r.GetIdentity().GetExternalId())
			enrollToken = r.GetTokens().GetAccessToken()
		},
	})
	hdr := map[string]string{"Authorization": "Bearer " + enrollToken}
	apitest.Run(t, target,
		apitest.Case{
			Name: "enrollment token cannot read", Method: "/manushya.identity.v1.IdentityService/GetMe",
			Request: &identityv1.GetMeRequest{}, Headers: hdr,
			WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_MFA_REQUIRED",
		},
		apitest.Case{
			Name: "enrollment token cannot administer", Method: "/manushya.identity.v1.IdentityService/ListIdentities",
			Request: &identityv1.ListIdentitiesRequest{}, Headers: hdr,
			WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_MFA_REQUIRED",
		},
		apitest.Case{
			Name: "enrollment token cannot make api keys", Method: "/manushya.identity.v1.ApiKeyService/CreateApiKey",
			Request: &identityv1.CreateApiKeyRequest{Name: "escape"}, Headers: hdr,
			WantCode: codes.Unauthenticated, WantReason: "ERROR_REASON_MFA_REQUIRED",
		})
	// A standard verifier expecting our audience refuses it outright.
	plain, err := auth.NewJWTVerifier(auth.JWTVerifierConfig{Keys: auth.NewJWKSKeys(b.authn, 0), Issuer: "manushya", Audience: "manushya"})
	require.NoError(t, err)
	_, err = plain.Verify(context.Background(), enrollToken)
	require.Error(t, err)

	setup, err := b.authn.SetupMfa(bearer(enrollToken), &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = b.authn.VerifyMfa(bearer(enrollToken), &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)

	// Now sign-in is the ordinary two-step one, and its tokens are full.
	resp, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "mara@example.com", Password: testPassword})
	require.NoError(t, err)
	require.False(t, resp.GetMfaEnrollmentRequired())
	ch := resp.GetMfaChallenge()
	require.NotNil(t, ch)
	done, err := b.authn.CompleteMfaLogin(context.Background(), &identityv1.CompleteMfaLoginRequest{
		ChallengeId: ch.GetChallengeId(), BackupCode: setup.GetBackupCodes()[0],
	})
	require.NoError(t, err)
	require.NotEmpty(t, done.GetTokens().GetRefreshToken())
	_, err = b.ids.ListIdentities(bearer(done.GetTokens().GetAccessToken()), &identityv1.ListIdentitiesRequest{})
	require.NoError(t, err)

	agent, err := b.authn.Login(context.Background(), &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "bot-7", Password: testPassword})
	require.NoError(t, err)
	require.False(t, agent.GetMfaEnrollmentRequired())
	require.NotEmpty(t, agent.GetTokens().GetRefreshToken())
}
