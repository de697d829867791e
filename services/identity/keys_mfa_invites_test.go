package identity_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	"github.com/manushya-ai/manushya/pkg/kv"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/identity"
)

// --- shared infrastructure: one embedded NATS server for the package's tests ---

var (
	natsOnce sync.Once
	natsSrv  *bus.Embedded
	natsErr  error
)

func natsURL(t testing.TB) string {
	natsOnce.Do(func() {
		dir, err := mkTempDir()
		if err != nil {
			natsErr = err
			return
		}
		natsSrv, natsErr = bus.StartEmbedded(dir, -1)
	})
	require.NoError(t, natsErr)
	return natsSrv.URL()
}

// --- a tiny SMTP server: enough of RFC 5321 for net/smtp to deliver to it ---

type sentMail struct {
	From, To string
	Data     string
}

type smtpSink struct {
	lis  net.Listener
	mail chan sentMail
}

func startSMTPSink(t testing.TB) *smtpSink {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &smtpSink{lis: lis, mail: make(chan sentMail, 16)}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) serve(c net.Conn) {
	defer func() { _ = c.Close() }()
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	say("220 sink ESMTP")
	var m sentMail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-sink")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m = sentMail{From: strings.TrimSpace(line[len("MAIL FROM:"):])}
			say("250 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.To = strings.TrimSpace(line[len("RCPT TO:"):])
			say("250 OK")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = b.String()
			s.mail <- m
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 OK")
		}
	}
}

func (s *smtpSink) port() int { return s.lis.Addr().(*net.TCPAddr).Port }

func (s *smtpSink) next(t *testing.T) sentMail {
	t.Helper()
	select {
	case m := <-s.mail:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no email arrived")
		return sentMail{}
	}
}

// --- test bundle with bus, Redis and SMTP ---

type kmiBundle struct {
	db               *pgtest.DB
	conn             *grpc.ClientConn
	svc              *identity.Service
	keys             identityv1.ApiKeyServiceClient
	invites          identityv1.InvitationServiceClient
	authc            identityv1.AuthServiceClient
	ids              identityv1.IdentityServiceClient
	adminA, adminB   string
	tenantA, tenantB string
	smtp             *smtpSink
	logs             *kmiLogBuffer
}

type kmiLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *kmiLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *kmiLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type kmiOptions struct {
	db        *pgtest.DB // share a database with another bundle (second verifier)
	withBus   bool
	noCache   bool
	noRedis   bool
	bootstrap bool
}

func serveModule(t testing.TB, mod *identity.Module) *grpc.ClientConn {
	srv, err := grpcserver.New(grpcserver.Options{Authenticator: mod.Authenticator(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	mod.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func setupKMI(t testing.TB, o kmiOptions) *kmiBundle {
	t.Helper()
	ctx := context.Background()
	b := &kmiBundle{db: o.db, logs: &kmiLogBuffer{}}
	if b.db == nil {
		b.db = pgtest.New(t, identity.Migrations())
	}
	b.smtp = startSMTPSink(t)
	deps := identity.Deps{Pool: b.db.Pool, Logger: slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if !o.noRedis {
		store, err := kv.Open(ctx, "redis://127.0.0.1:6379/0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		deps.KV = store
	}
	if o.withBus {
		bs, err := bus.Connect(ctx, natsURL(t), "identity-test", bus.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		_, err = bs.EnsureStream(ctx)
		require.NoError(t, err)
		t.Cleanup(bs.Close)
		deps.Bus = bs
	}
	mod, err := identity.New(identity.Config{
		APIKeyPepper: pepper,
		APIKeyCache:  identity.APIKeyCacheConfig{Disabled: o.noCache},
		MFA:          identity.MFAConfig{EncryptionKey: strings.Repeat("ab", 32)},
		Invitations: identity.InvitationConfig{
			AcceptURL: "https://app.example.com/join?token={token}",
			SMTP: identity.SMTPConfig{
				Host: "127.0.0.1", Port: b.smtp.port(), From: "Manushya <no-reply@example.com>", TLSMode: "none",
			},
		},
	}, deps)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	require.NoError(t, mod.Start(runCtx))
	t.Cleanup(func() {
		cancel()
		stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = mod.Stop(stopCtx)
	})
	conn := serveModule(t, mod)
	b.conn = conn
	b.svc = mod.Service()
	b.keys = identityv1.NewApiKeyServiceClient(conn)
	b.invites = identityv1.NewInvitationServiceClient(conn)
	b.authc = identityv1.NewAuthServiceClient(conn)
	b.ids = identityv1.NewIdentityServiceClient(conn)
	if o.bootstrap {
		a, err := b.svc.Bootstrap(ctx, "tenant-a", "Tenant A")
		require.NoError(t, err)
		bb, err := b.svc.Bootstrap(ctx, "tenant-b", "Tenant B")
		require.NoError(t, err)
		b.adminA, b.tenantA, b.adminB, b.tenantB = a.APIKey, a.TenantID, bb.APIKey, bb.TenantID
	}
	return b
}

// member creates an identity with role in tenant A and returns its id and a key
// with scopes.
func (b *kmiBundle) member(t *testing.T, external, role string, scopes ...string) (string, string) {
	t.Helper()
	created, err := b.ids.CreateIdentity(as(b.adminA), &identityv1.CreateIdentityRequest{ExternalId: external, Role: role})
	require.NoError(t, err)
	id := created.GetIdentity().GetId()
	key, err := b.svc.IssueAPIKey(context.Background(), b.tenantA, id, "test", scopes, nil)
	require.NoError(t, err)
	return id, key
}

func (b *kmiBundle) admin(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.db.AdminURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// --- API keys ---

func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	// The contract's payload, as written.
	created, err := b.keys.CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{
		Name: "Production Key", Scopes: []string{"read", "write"}, ExpiresInDays: 365,
	})
	require.NoError(t, err)
	key := created.GetKey()
	require.True(t, strings.HasPrefix(key, "mk_live_"), key)
	ak := created.GetApiKey()
	require.Equal(t, "Production Key", ak.GetName())
	require.Equal(t, []string{"read", "write"}, ak.GetScopes())
	require.Equal(t, identityv1.ApiKeyState_API_KEY_STATE_ACTIVE, ak.GetState())
	require.WithinDuration(t, time.Now().Add(365*24*time.Hour), ak.GetExpireTime().AsTime(), time.Minute)
	require.True(t, strings.HasPrefix(key, ak.GetPrefix()))

	// The new key authenticates, and reads its own record.
	got, err := b.keys.GetApiKey(as(key), &identityv1.GetApiKeyRequest{Id: ak.GetId()})
	require.NoError(t, err)
	require.Equal(t, ak.GetId(), got.GetApiKey().GetId())

	test, err := b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: key})
	require.NoError(t, err)
	require.True(t, test.GetValid())
	require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_VALID, test.GetCode())
	require.Equal(t, []string{"read", "write"}, test.GetScopes())
	require.Equal(t, "admin", test.GetIdentity().GetExternalId())
	require.NotNil(t, test.GetExpireTime())

	upd, err := b.keys.UpdateApiKey(as(b.adminA), &identityv1.UpdateApiKeyRequest{
		ApiKey:     &identityv1.ApiKey{Id: ak.GetId(), Name: "Renamed", Scopes: []string{"read"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"scopes"}},
	})
	require.NoError(t, err)
	require.Equal(t, "Production Key", upd.GetApiKey().GetName(), "only masked fields change")
	require.Equal(t, []string{"read"}, upd.GetApiKey().GetScopes())
	_, err = b.keys.UpdateApiKey(as(b.adminA), &identityv1.UpdateApiKeyRequest{
		ApiKey: &identityv1.ApiKey{Id: ak.GetId()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"identity_id"}},
	})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)

	list, err := b.keys.ListApiKeys(as(b.adminA), &identityv1.ListApiKeysRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetApiKeys(), 2, "the bootstrap key and the new one")

	// Reroll with an overlap: both keys work until the overlap ends.
	rr, err := b.keys.RerollApiKey(as(b.adminA), &identityv1.RerollApiKeyRequest{Id: ak.GetId(), OverlapSeconds: 3600})
	require.NoError(t, err)
	require.NotEqual(t, key, rr.GetKey())
	require.Equal(t, ak.GetId(), rr.GetApiKey().GetRerolledFromId())
	require.WithinDuration(t, time.Now().Add(time.Hour), rr.GetPreviousApiKey().GetExpireTime().AsTime(), time.Minute)
	for _, k := range []string{key, rr.GetKey()} {
		_, err = b.keys.ListApiKeys(as(k), &identityv1.ListApiKeysRequest{})
		require.NoError(t, err)
	}
	// Without an overlap the old key stops at once.
	rr2, err := b.keys.RerollApiKey(as(b.adminA), &identityv1.RerollApiKeyRequest{Id: rr.GetApiKey().GetId()})
	require.NoError(t, err)
	_, err = b.keys.ListApiKeys(as(rr.GetKey()), &identityv1.ListApiKeysRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = b.keys.ListApiKeys(as(rr2.GetKey()), &identityv1.ListApiKeysRequest{})
	require.NoError(t, err)

	// Revoke: refused at once in this process (cached before), twice is fine.
	rev, err := b.keys.RevokeApiKey(as(b.adminA), &identityv1.RevokeApiKeyRequest{Id: rr2.GetApiKey().GetId(), Reason: "leaked"})
	require.NoError(t, err)
	require.Equal(t, identityv1.ApiKeyState_API_KEY_STATE_REVOKED, rev.GetApiKey().GetState())
	_, err = b.keys.ListApiKeys(as(rr2.GetKey()), &identityv1.ListApiKeysRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
	_, err = b.keys.RevokeApiKey(as(b.adminA), &identityv1.RevokeApiKeyRequest{Id: rr2.GetApiKey().GetId()})
	require.NoError(t, err)
	test, err = b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: rr2.GetKey()})
	require.NoError(t, err)
	require.False(t, test.GetValid())
	require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_REVOKED, test.GetCode())
	require.Nil(t, test.GetIdentity())

	// Idempotent create returns the metadata, never the key a second time.
	req := &identityv1.CreateApiKeyRequest{Name: "ci", IdempotencyKey: "k1"}
	first, err := b.keys.CreateApiKey(as(b.adminA), req)
	require.NoError(t, err)
	again, err := b.keys.CreateApiKey(as(b.adminA), req)
	require.NoError(t, err)
	require.Equal(t, first.GetApiKey().GetId(), again.GetApiKey().GetId())
	require.Empty(t, again.GetKey())
	var stored int
	require.NoError(t, b.admin(t).QueryRow(context.Background(),
		"SELECT count(*) FROM identity.idempotency_keys WHERE position($1::bytea IN response) > 0", []byte(first.GetKey())).Scan(&stored))
	require.Zero(t, stored, "the clear key is never stored")

	// Expiry: a key past its expire_time is refused with its reason.
	_, err = b.admin(t).Exec(context.Background(), "UPDATE identity.api_keys SET expire_time = now() - interval '1 second' WHERE id = $1", first.GetApiKey().GetId())
	require.NoError(t, err)
	test, err = b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: first.GetKey()})
	require.NoError(t, err)
	require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_EXPIRED, test.GetCode())

	test, err = b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: "mk_live_short"})
	require.NoError(t, err)
	require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_MALFORMED, test.GetCode())

	require.NotContains(t, b.logs.String(), key)
	require.NotContains(t, b.logs.String(), rr.GetKey())
}

func TestAPIKeyTenantIsolationAndRoles(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	created, err := b.keys.CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{Name: "a-key", Scopes: []string{"read"}})
	require.NoError(t, err)
	id, key := created.GetApiKey().GetId(), created.GetKey()

	// Tenant B's admin sees and changes nothing of tenant A.
	_, err = b.keys.GetApiKey(as(b.adminB), &identityv1.GetApiKeyRequest{Id: id})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.keys.UpdateApiKey(as(b.adminB), &identityv1.UpdateApiKeyRequest{ApiKey: &identityv1.ApiKey{Id: id, Name: "x"}})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.keys.RevokeApiKey(as(b.adminB), &identityv1.RevokeApiKeyRequest{Id: id})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.keys.RerollApiKey(as(b.adminB), &identityv1.RerollApiKeyRequest{Id: id})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	list, err := b.keys.ListApiKeys(as(b.adminB), &identityv1.ListApiKeysRequest{AllIdentities: true, IncludeRevoked: true})
	require.NoError(t, err)
	for _, k := range list.GetApiKeys() {
		require.Equal(t, b.tenantB, k.GetTenantId())
	}
	aIdentity := created.GetApiKey().GetIdentityId()
	_, err = b.keys.CreateApiKey(as(b.adminB), &identityv1.CreateApiKeyRequest{Name: "x", IdentityId: aIdentity})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)

	// TestApiKey never says a key exists in another tenant.
	for _, ctx := range []context.Context{as(b.adminB), context.Background()} {
		tenant := ""
		if ctx == context.Background() {
			tenant = "tenant-b"
		}
		res, err := b.keys.TestApiKey(ctx, &identityv1.TestApiKeyRequest{Key: key, Tenant: tenant})
		require.NoError(t, err)
		require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN, res.GetCode())
		require.Nil(t, res.GetIdentity())
	}
	res, err := b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: key, Tenant: "no-such-tenant"})
	require.NoError(t, err)
	require.Equal(t, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN, res.GetCode())
	res, err = b.keys.TestApiKey(context.Background(), &identityv1.TestApiKeyRequest{Key: key, Tenant: "tenant-a"})
	require.NoError(t, err)
	require.True(t, res.GetValid())

	// Lower roles: a user's key reaches no other identity's keys. (Whether users
	// manage their own keys is the authorizer's call; either way nothing else.)
	_, userKey := b.member(t, "u1", "user", "read", "write")
	_, err = b.keys.CreateApiKey(as(userKey), &identityv1.CreateApiKeyRequest{Name: "for admin", IdentityId: created.GetApiKey().GetIdentityId()})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = b.keys.CreateApiKey(as(userKey), &identityv1.CreateApiKeyRequest{Name: "wider", Scopes: []string{"*"}})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = b.keys.ListApiKeys(as(userKey), &identityv1.ListApiKeysRequest{AllIdentities: true})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = b.keys.GetApiKey(as(userKey), &identityv1.GetApiKeyRequest{Id: id})
	require.Contains(t, []codes.Code{codes.NotFound, codes.PermissionDenied}, status.Code(err))
	_, err = b.keys.RevokeApiKey(as(userKey), &identityv1.RevokeApiKeyRequest{Id: id})
	require.Contains(t, []codes.Code{codes.NotFound, codes.PermissionDenied}, status.Code(err))

	// Narrower keys: a scope-limited admin key hands out only its own scopes.
	narrow, err := b.keys.CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{Name: "narrow", Scopes: []string{"api_key.create", "read"}})
	require.NoError(t, err)
	_, err = b.keys.CreateApiKey(as(narrow.GetKey()), &identityv1.CreateApiKeyRequest{Name: "wider", Scopes: []string{"*"}})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION)
	_, err = b.keys.CreateApiKey(as(narrow.GetKey()), &identityv1.CreateApiKeyRequest{Name: "wider", Scopes: []string{"write"}})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION)
	own, err := b.keys.CreateApiKey(as(narrow.GetKey()), &identityv1.CreateApiKeyRequest{Name: "inherits"})
	require.NoError(t, err)
	require.Equal(t, []string{"api_key.create", "read"}, own.GetApiKey().GetScopes(), "an empty request inherits the caller's scopes")
	sub, err := b.keys.CreateApiKey(as(narrow.GetKey()), &identityv1.CreateApiKeyRequest{Name: "subset", Scopes: []string{"read"}})
	require.NoError(t, err)
	require.Equal(t, []string{"read"}, sub.GetApiKey().GetScopes())

	_, roKey := b.member(t, "ro", "readonly")
	_, err = b.keys.CreateApiKey(as(roKey), &identityv1.CreateApiKeyRequest{Name: "ro"})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)

	// A tenant admin whose key has every scope but not the operator's cannot mint one.
	adminStar, err := b.keys.CreateApiKey(as(b.adminA), &identityv1.CreateApiKeyRequest{Name: "star", Scopes: []string{"*"}})
	require.NoError(t, err)
	_, err = b.keys.CreateApiKey(as(adminStar.GetKey()), &identityv1.CreateApiKeyRequest{Name: "op", Scopes: []string{auth.ScopeOperator}})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_ROLE_ESCALATION)
}

func TestAPIKeyRevocationReachesEveryVerifier(t *testing.T) {
	t.Parallel()
	one := setupKMI(t, kmiOptions{bootstrap: true, withBus: true})
	two := setupKMI(t, kmiOptions{db: one.db, withBus: true})
	cached, err := one.keys.CreateApiKey(as(one.adminA), &identityv1.CreateApiKeyRequest{Name: "cached"})
	require.NoError(t, err)
	doomed, err := one.keys.CreateApiKey(as(one.adminA), &identityv1.CreateApiKeyRequest{Name: "doomed"})
	require.NoError(t, err)
	for _, k := range []string{cached.GetKey(), doomed.GetKey()} {
		_, err = two.keys.ListApiKeys(as(k), &identityv1.ListApiKeysRequest{})
		require.NoError(t, err)
	}

	// A change behind the service's back (no event) is not seen while cached: the
	// second verifier really answers from its cache.
	_, err = one.admin(t).Exec(context.Background(), "UPDATE identity.api_keys SET revoke_time = now() WHERE id = $1", cached.GetApiKey().GetId())
	require.NoError(t, err)
	_, err = two.keys.ListApiKeys(as(cached.GetKey()), &identityv1.ListApiKeysRequest{})
	require.NoError(t, err)

	// A revocation through the API reaches the other verifier over the bus.
	_, err = one.keys.RevokeApiKey(as(one.adminA), &identityv1.RevokeApiKeyRequest{Id: doomed.GetApiKey().GetId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := two.keys.ListApiKeys(as(doomed.GetKey()), &identityv1.ListApiKeysRequest{})
		return err != nil
	}, 2*time.Second, 10*time.Millisecond)
	_, err = two.keys.ListApiKeys(as(doomed.GetKey()), &identityv1.ListApiKeysRequest{})
	requireCode(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED)
}

// --- MFA ---

func TestMFA(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	ctx := context.Background()
	userID, userKey := b.member(t, "mfa-user", "user")
	_, roKey := b.member(t, "mfa-ro", "readonly")

	setup, err := b.authc.SetupMfa(as(userKey), &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(setup.GetOtpauthUri(), "otpauth://totp/"), setup.GetOtpauthUri())
	require.Contains(t, setup.GetOtpauthUri(), "mfa-user")
	require.Equal(t, []byte("\x89PNG\r\n\x1a\n"), setup.GetQrCodePng()[:8])
	require.Len(t, setup.GetBackupCodes(), 10)
	secret := setup.GetSecret()

	// Secrets and backup codes are not stored in clear.
	var sealed []byte
	require.NoError(t, b.admin(t).QueryRow(ctx, "SELECT secret_sealed FROM identity.mfa_totp WHERE identity_id = $1", userID).Scan(&sealed))
	require.NotContains(t, string(sealed), secret)
	var clear int
	require.NoError(t, b.admin(t).QueryRow(ctx, "SELECT count(*) FROM identity.mfa_backup_codes WHERE position(convert_to($1, 'UTF8') IN code_hash) > 0",
		setup.GetBackupCodes()[0]).Scan(&clear))
	require.Zero(t, clear)

	_, err = b.authc.VerifyMfa(as(userKey), &identityv1.VerifyMfaRequest{Token: "000000"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	code, err := totp.GenerateCode(secret, time.Now())
	require.NoError(t, err)
	on, err := b.authc.VerifyMfa(as(userKey), &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)
	require.True(t, on.GetMfaEnabled())

	tenant, identityID := mustUUID(t, b.tenantA), mustUUID(t, userID)
	enabled, err := b.svc.MfaEnabled(ctx, tenant, identityID)
	require.NoError(t, err)
	require.True(t, enabled)
	// The code that activated MFA cannot be used again: it is replayed.
	require.ErrorIs(t, b.svc.VerifySecondFactor(ctx, tenant, identityID, code), identity.ErrSecondFactor)
	// A backup code works once.
	backup := setup.GetBackupCodes()[3]
	require.NoError(t, b.svc.VerifySecondFactor(ctx, tenant, identityID, backup))
	require.ErrorIs(t, b.svc.VerifySecondFactor(ctx, tenant, identityID, backup), identity.ErrSecondFactor)
	// Another tenant's context cannot check or spend this identity's codes.
	require.Error(t, b.svc.VerifySecondFactor(ctx, mustUUID(t, b.tenantB), identityID, setup.GetBackupCodes()[4]))
	require.NoError(t, b.svc.VerifySecondFactor(ctx, tenant, identityID, setup.GetBackupCodes()[4]))

	// Setup again while active is refused; a readonly identity manages only itself.
	_, err = b.authc.SetupMfa(as(userKey), &identityv1.SetupMfaRequest{})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)
	roEnabled, err := b.svc.MfaEnabled(ctx, tenant, identityID)
	require.NoError(t, err)
	require.True(t, roEnabled)
	_, err = b.authc.DisableMfa(as(roKey), &identityv1.DisableMfaRequest{Token: setup.GetBackupCodes()[5]})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)

	// Disabling needs a valid proof: a used backup code is not one.
	_, err = b.authc.DisableMfa(as(userKey), &identityv1.DisableMfaRequest{Token: backup})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	_, err = b.authc.DisableMfa(as(userKey), &identityv1.DisableMfaRequest{Password: "not-the-password"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	off, err := b.authc.DisableMfa(as(userKey), &identityv1.DisableMfaRequest{Token: setup.GetBackupCodes()[5]})
	require.NoError(t, err)
	require.False(t, off.GetMfaEnabled())
	enabled, err = b.svc.MfaEnabled(ctx, tenant, identityID)
	require.NoError(t, err)
	require.False(t, enabled)

	var events int
	require.NoError(t, b.admin(t).QueryRow(ctx, "SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.mfa.enabled' OR subject LIKE '%.mfa.disabled'").Scan(&events))
	require.Equal(t, 2, events)
	logs := b.logs.String()
	require.NotContains(t, logs, secret)
	require.NotContains(t, logs, backup)
}

// --- Invitations ---

func TestInvitationFlow(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	ctx := context.Background()
	created, err := b.invites.CreateInvitation(as(b.adminA), &identityv1.CreateInvitationRequest{
		Email: "new.person@example.com", Role: "user", Message: "Welcome aboard",
	})
	require.NoError(t, err)
	token := created.GetToken()
	require.True(t, strings.HasPrefix(token, "inv_"))
	inv := created.GetInvitation()
	require.Equal(t, identityv1.InvitationState_INVITATION_STATE_PENDING, inv.GetState())
	require.EqualValues(t, 1, inv.GetSendCount())

	m := b.smtp.next(t)
	require.Equal(t, "<new.person@example.com>", m.To)
	require.Contains(t, m.Data, "https://app.example.com/join?token="+token)
	require.Contains(t, m.Data, "Subject: You are invited to join Tenant A")
	require.Contains(t, m.Data, "Welcome aboard")
	require.NotContains(t, m.Data, b.adminA)
	require.NotContains(t, m.Data, pepper)
	require.Equal(t, 1, strings.Count(m.Data, token), "the token appears once, in the link")

	var stored int
	require.NoError(t, b.admin(t).QueryRow(ctx, "SELECT count(*) FROM identity.invitations WHERE position(convert_to($1, 'UTF8') IN token_hash) > 0 OR token_prefix = $1", token).Scan(&stored))
	require.Zero(t, stored, "tokens are hashed at rest")

	val, err := b.invites.ValidateInvitation(ctx, &identityv1.ValidateInvitationRequest{Token: token})
	require.NoError(t, err)
	require.Equal(t, "tenant-a", val.GetTenantSlug())
	require.Equal(t, "admin", val.GetInviterExternalId())

	// A pending invitation for the same email cannot be duplicated.
	_, err = b.invites.CreateInvitation(as(b.adminA), &identityv1.CreateInvitationRequest{Email: "new.person@example.com"})
	requireCode(t, err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS)

	// Resend within a minute changes nothing; later it issues a new token.
	again, err := b.invites.ResendInvitation(as(b.adminA), &identityv1.ResendInvitationRequest{Id: inv.GetId()})
	require.NoError(t, err)
	require.Empty(t, again.GetToken())
	_, err = b.admin(t).Exec(ctx, "UPDATE identity.invitations SET last_send_time = now() - interval '2 minutes' WHERE id = $1", inv.GetId())
	require.NoError(t, err)
	resent, err := b.invites.ResendInvitation(as(b.adminA), &identityv1.ResendInvitationRequest{Id: inv.GetId()})
	require.NoError(t, err)
	newToken := resent.GetToken()
	require.NotEmpty(t, newToken)
	require.NotEqual(t, token, newToken)
	require.EqualValues(t, 2, resent.GetInvitation().GetSendCount())
	require.Contains(t, b.smtp.next(t).Data, newToken)
	_, err = b.invites.ValidateInvitation(ctx, &identityv1.ValidateInvitationRequest{Token: token})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.invites.AcceptInvitation(ctx, &identityv1.AcceptInvitationRequest{Token: token, Password: "a long and uncommon passphrase"})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)

	// Accept: a common password is refused, then the identity is created.
	_, err = b.invites.AcceptInvitation(ctx, &identityv1.AcceptInvitationRequest{Token: newToken, Password: "password"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	acc, err := b.invites.AcceptInvitation(ctx, &identityv1.AcceptInvitationRequest{Token: newToken, Password: "a long and uncommon passphrase"})
	require.NoError(t, err)
	require.Equal(t, "new.person@example.com", acc.GetIdentity().GetExternalId())
	require.Equal(t, "user", acc.GetIdentity().GetRole())
	require.Equal(t, identityv1.InvitationState_INVITATION_STATE_ACCEPTED, acc.GetInvitation().GetState())
	require.Equal(t, acc.GetIdentity().GetId(), acc.GetInvitation().GetAcceptedIdentityId())
	_, err = b.invites.AcceptInvitation(ctx, &identityv1.AcceptInvitationRequest{Token: newToken, Password: "a long and uncommon passphrase"})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)
	_, err = b.invites.RevokeInvitation(as(b.adminA), &identityv1.RevokeInvitationRequest{Id: inv.GetId()})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)

	// The password set on accept is the one DisableMfa and sign-in check.
	var hash string
	require.NoError(t, b.admin(t).QueryRow(ctx, "SELECT password_hash FROM identity.identities WHERE id = $1", acc.GetIdentity().GetId()).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "$argon2id$"), hash)

	// The invitee signs in with the tokens from accepting, turns MFA on, and
	// turns it off again with the password chosen on accept.
	require.NotNil(t, acc.GetTokens(), "accepting signs the new identity in")
	bearer := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+acc.GetTokens().GetAccessToken())
	setup, err := b.authc.SetupMfa(bearer, &identityv1.SetupMfaRequest{})
	require.NoError(t, err)
	code, err := totp.GenerateCode(setup.GetSecret(), time.Now())
	require.NoError(t, err)
	_, err = b.authc.VerifyMfa(bearer, &identityv1.VerifyMfaRequest{Token: code})
	require.NoError(t, err)
	// Sign-in now asks for the second factor; a backup code completes it once.
	login, err := b.authc.Login(ctx, &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "new.person@example.com", Password: "a long and uncommon passphrase"})
	require.NoError(t, err)
	ch := login.GetMfaChallenge()
	require.NotNil(t, ch, "MFA is on: a challenge, not tokens")
	done, err := b.authc.CompleteMfaLogin(ctx, &identityv1.CompleteMfaLoginRequest{ChallengeId: ch.GetChallengeId(), BackupCode: setup.GetBackupCodes()[0]})
	require.NoError(t, err)
	require.NotEmpty(t, done.GetTokens().GetAccessToken())
	require.EqualValues(t, 9, done.GetBackupCodesRemaining())
	_, err = b.authc.DisableMfa(bearer, &identityv1.DisableMfaRequest{Password: "a long and uncommon passphrase!"})
	requireCode(t, err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT)
	_, err = b.authc.DisableMfa(bearer, &identityv1.DisableMfaRequest{Password: "a long and uncommon passphrase"})
	require.NoError(t, err)

	logs := b.logs.String()
	require.NotContains(t, logs, token)
	require.NotContains(t, logs, newToken)
	require.NotContains(t, logs, "a long and uncommon passphrase")
}

func TestInvitationExpiryRevokeIsolationAndRoles(t *testing.T) {
	t.Parallel()
	b := setupKMI(t, kmiOptions{bootstrap: true})
	ctx := context.Background()
	created, err := b.invites.CreateInvitation(as(b.adminA), &identityv1.CreateInvitationRequest{Email: "late@example.com", SkipEmail: true, ExpiresInHours: 1})
	require.NoError(t, err)
	id, token := created.GetInvitation().GetId(), created.GetToken()
	require.EqualValues(t, 0, created.GetInvitation().GetSendCount())

	// Another tenant's admin sees and changes nothing.
	_, err = b.invites.GetInvitation(as(b.adminB), &identityv1.GetInvitationRequest{Id: id})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.invites.RevokeInvitation(as(b.adminB), &identityv1.RevokeInvitationRequest{Id: id})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	_, err = b.invites.ResendInvitation(as(b.adminB), &identityv1.ResendInvitationRequest{Id: id, SkipEmail: true})
	requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	list, err := b.invites.ListInvitations(as(b.adminB), &identityv1.ListInvitationsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetInvitations())
	list, err = b.invites.ListInvitations(as(b.adminA), &identityv1.ListInvitationsRequest{State: identityv1.InvitationState_INVITATION_STATE_PENDING})
	require.NoError(t, err)
	require.Len(t, list.GetInvitations(), 1)

	// Lower roles cannot invite, and nobody invites above their own role.
	_, userKey := b.member(t, "plain", "user")
	_, err = b.invites.CreateInvitation(as(userKey), &identityv1.CreateInvitationRequest{Email: "x@example.com", SkipEmail: true})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.invites.RevokeInvitation(as(userKey), &identityv1.RevokeInvitationRequest{Id: id})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)
	_, err = b.invites.ListInvitations(as(userKey), &identityv1.ListInvitationsRequest{})
	requireCode(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED)

	// Expired: validate and accept refuse it.
	_, err = b.admin(t).Exec(ctx, "UPDATE identity.invitations SET expire_time = now() - interval '1 second' WHERE id = $1", id)
	require.NoError(t, err)
	_, err = b.invites.ValidateInvitation(ctx, &identityv1.ValidateInvitationRequest{Token: token})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)
	_, err = b.invites.AcceptInvitation(ctx, &identityv1.AcceptInvitationRequest{Token: token, Password: "a long and uncommon passphrase"})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)
	expired, err := b.invites.ListInvitations(as(b.adminA), &identityv1.ListInvitationsRequest{State: identityv1.InvitationState_INVITATION_STATE_EXPIRED})
	require.NoError(t, err)
	require.Len(t, expired.GetInvitations(), 1)

	// Revoke: the token stops working; revoking twice is fine.
	rev, err := b.invites.RevokeInvitation(as(b.adminA), &identityv1.RevokeInvitationRequest{Id: id})
	require.NoError(t, err)
	require.Equal(t, identityv1.InvitationState_INVITATION_STATE_REVOKED, rev.GetInvitation().GetState())
	_, err = b.invites.RevokeInvitation(as(b.adminA), &identityv1.RevokeInvitationRequest{Id: id})
	require.NoError(t, err)
	_, err = b.invites.ValidateInvitation(ctx, &identityv1.ValidateInvitationRequest{Token: token})
	requireCode(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION)

	// Wrong and malformed tokens look the same.
	for _, bad := range []string{"inv_nope", token[:len(token)-3] + "zzz", "whatever"} {
		_, err = b.invites.ValidateInvitation(ctx, &identityv1.ValidateInvitationRequest{Token: bad})
		requireCode(t, err, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND)
	}
}
