package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

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
