package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// TestMutatingRequestsAreAudited checks the audit interceptor is in the chain: a
// create by an admin and a refused create by a readonly key both reach the tenant's
// hash-chained audit log, and the chain verifies.
func TestMutatingRequestsAreAudited(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	svc := a.Identity().Service()
	boot, err := svc.Bootstrap(ctx, "audited", "Audited")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	ids := identityv1.NewIdentityServiceClient(tgt.GRPC)
	admin := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)

	created, err := ids.CreateIdentity(admin, &identityv1.CreateIdentityRequest{ExternalId: "reader", Role: "readonly"})
	require.NoError(t, err)
	readerKey, err := svc.IssueAPIKey(ctx, boot.TenantID, created.GetIdentity().GetId(), "r", []string{"read"}, nil)
	require.NoError(t, err)
	_, err = ids.CreateIdentity(metadata.AppendToOutgoingContext(ctx, "x-api-key", readerKey),
		&identityv1.CreateIdentityRequest{ExternalId: "not-allowed"})
	require.Error(t, err)

	audit := eventsv1.NewAuditServiceClient(tgt.GRPC)
	require.Eventually(t, func() bool {
		resp, err := audit.ListAuditEntries(admin, &eventsv1.ListAuditEntriesRequest{PageSize: 1000})
		if err != nil {
			return false
		}
		var allowed, denied bool
		for _, e := range resp.GetEntries() {
			if !strings.HasSuffix(e.GetAction(), "CreateIdentity") {
				continue
			}
			switch e.GetResult() {
			case eventsv1.AuditResult_AUDIT_RESULT_SUCCESS:
				allowed = true
			case eventsv1.AuditResult_AUDIT_RESULT_DENIED:
				denied = true
			}
		}
		return allowed && denied
	}, 15*time.Second, 100*time.Millisecond)

	v, err := audit.VerifyAuditChain(admin, &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk(), "%v", v)
}

// TestAuditFromEveryProcess runs identity and webhooks in separate processes: the
// mutating requests, sign-ins and policy denials served by the identity process
// (which has no webhooks service) reach the audit chain through the audit stream,
// with client address and user agent and without the password; the events of
// those requests name their actor and request; the chain verifies.
func TestAuditFromEveryProcess(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	idp := s.start(t, "identity")
	hooks := s.start(t, "webhooks", "MANUSHYA_SERVICES_IDENTITY_ADDR="+idp.GRPCAddr())
	ctx := context.Background()
	svc := idp.Identity().Service()
	boot, err := svc.Bootstrap(ctx, "audited-split", "Audited split")
	require.NoError(t, err)
	admin := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)

	conn, err := grpc.NewClient(idp.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("audit-test-agent/1.0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ids := identityv1.NewIdentityServiceClient(conn)
	authc := identityv1.NewAuthServiceClient(conn)

	// A mutating request with a request id of our choosing.
	created, err := ids.CreateIdentity(metadata.AppendToOutgoingContext(admin, "x-request-id", "req-audit-create"),
		&identityv1.CreateIdentityRequest{ExternalId: "ana@example.com", Role: "readonly"})
	require.NoError(t, err)
	anaID := created.GetIdentity().GetId()
	const password = "correct-horse-battery-staple-42"
	require.NoError(t, svc.SetIdentityPassword(ctx, uuid.MustParse(boot.TenantID), uuid.MustParse(anaID), password))

	// A failed and a successful sign-in: public calls, recorded by the identity service.
	_, err = authc.Login(ctx, &identityv1.LoginRequest{Tenant: "audited-split", Identifier: "ana@example.com", Password: "wrong-password-wrong"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = authc.Login(ctx, &identityv1.LoginRequest{Tenant: "audited-split", Identifier: "ana@example.com", Password: password})
	require.NoError(t, err)

	// A policy denial: a readonly identity may not create identities.
	readerKey, err := svc.IssueAPIKey(ctx, boot.TenantID, anaID, "r", []string{"read"}, nil)
	require.NoError(t, err)
	_, err = ids.CreateIdentity(metadata.AppendToOutgoingContext(ctx, "x-api-key", readerKey),
		&identityv1.CreateIdentityRequest{ExternalId: "not-allowed"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	hc, err := grpc.NewClient(hooks.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Close() })
	auditc := eventsv1.NewAuditServiceClient(hc)
	find := func(entries []*eventsv1.AuditEntry, match func(*eventsv1.AuditEntry) bool) *eventsv1.AuditEntry {
		for _, e := range entries {
			if match(e) {
				return e
			}
		}
		return nil
	}
	var entries []*eventsv1.AuditEntry
	require.Eventually(t, func() bool {
		resp, err := auditc.ListAuditEntries(admin, &eventsv1.ListAuditEntriesRequest{PageSize: 1000})
		if err != nil {
			return false
		}
		entries = resp.GetEntries()
		return find(entries, func(e *eventsv1.AuditEntry) bool {
			return e.GetRequestId() == "req-audit-create" && strings.HasSuffix(e.GetAction(), "/CreateIdentity")
		}) != nil &&
			find(entries, func(e *eventsv1.AuditEntry) bool {
				return e.GetAction() == "auth.login" && e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_DENIED
			}) != nil &&
			find(entries, func(e *eventsv1.AuditEntry) bool {
				return e.GetAction() == "auth.login" && e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_SUCCESS
			}) != nil &&
			find(entries, func(e *eventsv1.AuditEntry) bool {
				return strings.HasPrefix(e.GetAction(), "authz.") && e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_DENIED
			}) != nil
	}, 20*time.Second, 100*time.Millisecond)

	create := find(entries, func(e *eventsv1.AuditEntry) bool {
		return e.GetRequestId() == "req-audit-create" && strings.HasSuffix(e.GetAction(), "/CreateIdentity")
	})
	require.Equal(t, boot.IdentityID, create.GetActor().GetIdentityId())
	require.Equal(t, eventsv1.AuditResult_AUDIT_RESULT_SUCCESS, create.GetResult())

	for _, res := range []eventsv1.AuditResult{eventsv1.AuditResult_AUDIT_RESULT_DENIED, eventsv1.AuditResult_AUDIT_RESULT_SUCCESS} {
		login := find(entries, func(e *eventsv1.AuditEntry) bool { return e.GetAction() == "auth.login" && e.GetResult() == res })
		require.Equal(t, anaID, login.GetActor().GetIdentityId(), res)
		require.Equal(t, "127.0.0.1", login.GetClientIp(), res)
		require.Contains(t, login.GetUserAgent(), "audit-test-agent/1.0", res)
		require.NotEmpty(t, login.GetRequestId(), res)
		raw, err := protojson.Marshal(login)
		require.NoError(t, err)
		require.NotContains(t, string(raw), password)
		require.NotContains(t, string(raw), "wrong-password-wrong")
	}
	denial := find(entries, func(e *eventsv1.AuditEntry) bool {
		return strings.HasPrefix(e.GetAction(), "authz.") && e.GetResult() == eventsv1.AuditResult_AUDIT_RESULT_DENIED
	})
	require.Equal(t, "authz.identity.create", denial.GetAction())
	require.Equal(t, anaID, denial.GetActor().GetIdentityId())
	require.NotEmpty(t, denial.GetAfter().GetFields()["reason"].GetStringValue())

	// The event of the create names who made it and in which request.
	events := eventsv1.NewEventServiceClient(hc)
	require.Eventually(t, func() bool {
		resp, err := events.ListEvents(admin, &eventsv1.ListEventsRequest{Type: "identity.created", IdentityId: boot.IdentityID})
		if err != nil {
			return false
		}
		for _, e := range resp.GetEvents() {
			if e.GetSubject() == anaID {
				return e.GetRequestId() == "req-audit-create" && e.GetIdentityId() == boot.IdentityID
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond)

	v, err := auditc.VerifyAuditChain(admin, &eventsv1.VerifyAuditChainRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk(), "%v", v)
}
