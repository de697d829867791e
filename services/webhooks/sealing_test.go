package webhooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/keyring"
	webhooksv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// adminRow reads an endpoint's sealed columns as the superuser, past row-level
// security: what a database dump would hold.
func (b *testBundle) adminRow(t *testing.T, id string) (secret, previous, headers []byte) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), b.db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT secret, previous_secret, headers FROM webhooks.endpoints WHERE id = $1`, id).
		Scan(&secret, &previous, &headers))
	return secret, previous, headers
}

func (b *testBundle) adminExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), b.db.AdminURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
}

func TestSecretsAndHeadersAreNeverStoredPlain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	resp, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{
		Name: "sealed", Url: rc.URL, Events: []string{"*"}, Headers: map[string]string{"X-Token": "header-secret-value"},
	})
	require.NoError(t, err)
	hook := resp.GetWebhook()
	first := hook.GetSecret()
	rot, err := b.hooks.RotateWebhookSecret(as(tenantA), &webhooksv1.RotateWebhookSecretRequest{Id: hook.GetId()})
	require.NoError(t, err)
	second := rot.GetWebhook().GetSecret()

	secret, previous, headers := b.adminRow(t, hook.GetId())
	for name, c := range map[string][]byte{"secret": secret, "previous_secret": previous, "headers": headers} {
		require.True(t, keyring.IsSealed(c), "%s is sealed by the keyring", name)
	}
	for _, plain := range []string{first, second, "header-secret-value"} {
		for _, c := range [][]byte{secret, previous, headers} {
			require.NotContains(t, string(c), plain)
		}
	}
	// Both secrets still sign (the rotation overlap), and the header is sent.
	b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	got := rc.all()[0]
	verify(t, first, got)
	verify(t, second, got)
	require.Equal(t, "header-secret-value", got.header.Get("X-Token"))
}

// Values sealed before the keyring (stored plain when webhooks.secret_key was
// unset) still open, and the re-encryption job re-seals them.
func TestPlainLegacySecretsOpenAndAreResealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	hook := b.createWebhook(t, tenantA, rc.URL, "*")
	legacy := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	b.adminExec(t, `UPDATE webhooks.endpoints SET secret = $2, headers = $3 WHERE id = $1`,
		hook.GetId(), append([]byte{0}, legacy...), append([]byte{0}, `{"X-Old":"yes"}`...))

	got, err := b.hooks.GetWebhook(as(tenantA), &webhooksv1.GetWebhookRequest{Id: hook.GetId()})
	require.NoError(t, err)
	require.Equal(t, "yes", got.GetWebhook().GetHeaders()["X-Old"])
	b.publish(t, tenantA, "identity.created", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	verify(t, legacy, rc.all()[0])

	rep, err := b.keyring.Reencrypt(t.Context())
	require.NoError(t, err)
	var resealed int64
	for _, p := range rep.Fields {
		resealed += p.Resealed
	}
	require.EqualValues(t, 2, resealed, "the secret and the headers")
	secret, _, headers := b.adminRow(t, hook.GetId())
	require.True(t, keyring.IsSealed(secret))
	require.True(t, keyring.IsSealed(headers))
	require.NotContains(t, string(secret), legacy)

	b.publish(t, tenantA, "identity.updated", map[string]any{})
	require.Eventually(t, func() bool { return len(rc.all()) == 2 }, 10*time.Second, 10*time.Millisecond)
	verify(t, legacy, rc.all()[1])
	require.Equal(t, "yes", rc.all()[1].header.Get("X-Old"))
}

// A sealed value copied to another webhook (of the same tenant or another) does not
// open there.
func TestMovedSealedHeadersDoNotOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rc := newReceiver(t, nil)
	resp, err := b.hooks.CreateWebhook(as(tenantA), &webhooksv1.CreateWebhookRequest{
		Name: "a", Url: rc.URL, Events: []string{"*"}, Headers: map[string]string{"X-Token": "a"},
	})
	require.NoError(t, err)
	src := resp.GetWebhook()
	sameTenant := b.createWebhook(t, tenantA, rc.URL, "*")
	otherTenant := b.createWebhook(t, tenantB, rc.URL, "*")
	_, _, headers := b.adminRow(t, src.GetId())
	for tenant, dst := range map[string]*webhooksv1.Webhook{tenantA: sameTenant, tenantB: otherTenant} {
		b.adminExec(t, `UPDATE webhooks.endpoints SET headers = $2 WHERE id = $1`, dst.GetId(), headers)
		_, err := b.hooks.GetWebhook(as(tenant), &webhooksv1.GetWebhookRequest{Id: dst.GetId()})
		require.Error(t, err, "headers moved to a webhook of tenant %s", tenant)
	}
}
