package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/keyring"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// TestSecretsAreSealedByTheKeyring checks the keyring module is wired into the
// binary: the signing key made at start and a new webhook's secret are sealed by
// the keyring under the configured key-encryption key, and the tenant got a data key.
func TestSecretsAreSealedByTheKeyring(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	kek := strings.Repeat("5a", 32)
	a := s.start(t, "all", "MANUSHYA_ENCRYPTION_KEK="+kek, "MANUSHYA_WEBHOOKS_ALLOWED_ADDRESSES=127.0.0.0/8")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "sealed", "Sealed")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	admin := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)
	hook, err := webhooksv1.NewWebhookServiceClient(tgt.GRPC).CreateWebhook(admin, &webhooksv1.CreateWebhookRequest{
		Name: "sealed", Url: "http://127.0.0.1:9/hook", Events: []string{"identity.created"},
	})
	require.NoError(t, err)

	conn, err := pgx.Connect(ctx, s.db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	var secret, signing []byte
	require.NoError(t, conn.QueryRow(ctx, `SELECT secret FROM webhooks.endpoints WHERE id = $1`, hook.GetWebhook().GetId()).Scan(&secret))
	require.True(t, keyring.IsSealed(secret))
	require.NotContains(t, string(secret), hook.GetWebhook().GetSecret())
	require.NoError(t, conn.QueryRow(ctx, `SELECT private_key FROM identity.signing_keys LIMIT 1`).Scan(&signing))
	require.True(t, keyring.IsSealed(signing))
	kekBytes, err := keyring.ParseKEK(kek)
	require.NoError(t, err)
	var keys int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM keyring.deks WHERE tenant_id = $1 AND state = 'primary' AND kek_id = $2`,
		boot.TenantID, keyring.KEKID(kekBytes)).Scan(&keys))
	require.Equal(t, 1, keys)
}
