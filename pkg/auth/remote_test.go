package auth_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

const testJWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJpMSJ9.c2ln"

// seen is what the identity service received on one call.
type seen struct {
	apiKey        []string
	authorization []string
	requestID     []string
}

// credentialServer is a stand-in for the identity service's CredentialService: it
// knows one API key and one JWT and records every call.
type credentialServer struct {
	identityv1.UnimplementedCredentialServiceServer

	mu    sync.Mutex
	calls []seen
}

func (s *credentialServer) IntrospectCredential(ctx context.Context, _ *identityv1.IntrospectCredentialRequest) (*identityv1.IntrospectCredentialResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	call := seen{apiKey: md.Get("x-api-key"), authorization: md.Get("authorization"), requestID: md.Get("x-request-id")}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()

	switch {
	case len(call.apiKey) == 1 && call.apiKey[0] == testAPIKey && len(call.authorization) == 0:
		return &identityv1.IntrospectCredentialResponse{
			TenantId: "tenant-1", IdentityId: "identity-key", ExternalId: "ci-bot", Kind: auth.KindService,
			Roles: []string{auth.RoleAdmin}, Scopes: []string{"read"}, ApiKeyId: "key-1",
		}, nil
	case len(call.authorization) == 1 && call.authorization[0] == "Bearer "+testJWT && len(call.apiKey) == 0:
		return &identityv1.IntrospectCredentialResponse{
			TenantId: "tenant-1", IdentityId: "identity-jwt", ExternalId: "ada@example.com", Kind: auth.KindUser,
			Roles: []string{auth.RoleUser, "billing"}, SessionId: "session-1",
		}, nil
	case len(call.authorization) == 1 && call.authorization[0] == "Bearer unavailable":
		return nil, status.Error(codes.Unavailable, "store down")
	}
	return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, "credential revoked")
}

func (s *credentialServer) seen() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.calls...)
}

func (s *credentialServer) count() int { return len(s.seen()) }

// startCredentialServer serves a fresh credentialServer on a loopback port and returns
// it with a client connected to it.
func startCredentialServer(t *testing.T) (*credentialServer, identityv1.CredentialServiceClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &credentialServer{}
	gs := grpc.NewServer()
	identityv1.RegisterCredentialServiceServer(gs, srv)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		require.NoError(t, <-done)
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close()) })
	return srv, identityv1.NewCredentialServiceClient(conn)
}

func withRequestID(id string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", id))
}

func TestRemoteForwardsAPIKey(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	p, err := r.Authenticate(withRequestID("req-key-1"), auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey})
	require.NoError(t, err)
	require.Equal(t, &auth.Principal{
		TenantID: "tenant-1", IdentityID: "identity-key", ExternalID: "ci-bot", Kind: auth.KindService,
		Roles: []string{auth.RoleAdmin}, Scopes: []string{"read"}, APIKeyID: "key-1",
	}, p)

	calls := srv.seen()
	require.Len(t, calls, 1)
	require.Equal(t, []string{testAPIKey}, calls[0].apiKey)
	require.Empty(t, calls[0].authorization)
	require.Equal(t, []string{"req-key-1"}, calls[0].requestID)
}

func TestRemoteForwardsJWT(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	p, err := r.Authenticate(withRequestID("req-jwt-1"), auth.Credential{Kind: auth.CredentialJWT, Value: testJWT})
	require.NoError(t, err)
	require.Equal(t, &auth.Principal{
		TenantID: "tenant-1", IdentityID: "identity-jwt", ExternalID: "ada@example.com", Kind: auth.KindUser,
		Roles: []string{auth.RoleUser, "billing"}, SessionID: "session-1",
	}, p)

	calls := srv.seen()
	require.Len(t, calls, 1)
	require.Equal(t, []string{"Bearer " + testJWT}, calls[0].authorization)
	require.Empty(t, calls[0].apiKey)
	require.Equal(t, []string{"req-jwt-1"}, calls[0].requestID)
}

func TestRemoteWithoutRequestID(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	_, err := r.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialJWT, Value: testJWT})
	require.NoError(t, err)
	calls := srv.seen()
	require.Len(t, calls, 1)
	require.Empty(t, calls[0].requestID)
}

func TestRemoteCachesWithinTTL(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)
	key := auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey}

	first, err := r.Authenticate(withRequestID("a"), key)
	require.NoError(t, err)
	require.Equal(t, 1, srv.count())

	second, err := r.Authenticate(withRequestID("b"), key)
	require.NoError(t, err)
	require.Equal(t, 1, srv.count(), "a cached credential costs no round trip")
	require.Equal(t, first, second)

	// Another credential is its own cache entry.
	_, err = r.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialJWT, Value: testJWT})
	require.NoError(t, err)
	require.Equal(t, 2, srv.count())
}

func TestRemoteCacheSeparatesKinds(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	_, err := r.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialJWT, Value: testJWT})
	require.NoError(t, err)

	// The same secret sent as an API key is a different credential: the identity
	// service must judge it, not the cache of the JWT.
	_, err = r.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialAPIKey, Value: testJWT})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	calls := srv.seen()
	require.Len(t, calls, 2)
	require.Equal(t, []string{testJWT}, calls[1].apiKey)
}

func TestRemoteCallsAgainAfterTTL(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Millisecond)
	cred := auth.Credential{Kind: auth.CredentialJWT, Value: testJWT}

	_, err := r.Authenticate(context.Background(), cred)
	require.NoError(t, err)
	require.Equal(t, 1, srv.count())

	require.Eventually(t, func() bool {
		p, err := r.Authenticate(context.Background(), cred)
		return err == nil && p.IdentityID == "identity-jwt" && srv.count() >= 2
	}, 10*time.Second, time.Millisecond, "an expired entry is asked for again")
}

func TestRemotePassesErrorsThroughUncached(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	revoked := auth.Credential{Kind: auth.CredentialJWT, Value: "revoked-token"}
	for range 2 {
		p, err := r.Authenticate(context.Background(), revoked)
		require.Nil(t, p)
		require.Equal(t, codes.Unauthenticated, status.Code(err))
		require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, apierr.ReasonOf(err),
			"the identity service's reason reaches the caller")
		require.Equal(t, "credential revoked", status.Convert(err).Message())
	}
	require.Equal(t, 2, srv.count(), "failures are not cached")

	_, err := r.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialJWT, Value: "unavailable"})
	require.Equal(t, codes.Unavailable, status.Code(err))
}

func TestRemoteConcurrentUse(t *testing.T) {
	t.Parallel()
	srv, client := startCredentialServer(t)
	r := auth.NewRemote(client, time.Hour)

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			cred := auth.Credential{Kind: auth.CredentialJWT, Value: testJWT}
			if i%2 == 0 {
				cred = auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey}
			}
			p, err := r.Authenticate(context.Background(), cred)
			if err != nil || p == nil {
				t.Errorf("authenticate: %v", err)
			}
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, srv.count(), 2)
	require.LessOrEqual(t, srv.count(), 16)
}
