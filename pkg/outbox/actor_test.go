package outbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/outbox"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/telemetry"
)

// TestEventsCarryActorAndRequest checks that events written inside a request say
// who caused them and in which request, and that events naming their own actor
// keep it.
func TestEventsCarryActorAndRequest(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := tb.startRelay(t)

	ctx := auth.WithPrincipal(t.Context(), &auth.Principal{TenantID: tb.tenant, IdentityID: "0190f1c2-0000-7000-8000-0000000000aa", Kind: auth.KindAgent})
	ctx = telemetry.WithRequestID(ctx, "req-outbox-1")
	events := tb.newEvents(t, 2)
	events[1].ActorID, events[1].ActorKind = "someone-else", "user"
	err := postgres.InTenantTx(ctx, tb.db.Pool, tb.tenant, func(tx pgx.Tx) error {
		for _, e := range events {
			if _, err := tx.Exec(ctx, `INSERT INTO relaytest.notes (id, tenant_id, body) VALUES ($1, $2, 'x')`, e.Subject, e.Tenant); err != nil {
				return err
			}
		}
		return outbox.Write(ctx, tx, schema, events...)
	})
	require.NoError(t, err)
	tb.waitDrained(t, r, 2)

	got := tb.streamEvents(t)
	require.Len(t, got, 2)
	require.Equal(t, "0190f1c2-0000-7000-8000-0000000000aa", got[0].ActorID)
	require.Equal(t, auth.KindAgent, got[0].ActorKind)
	require.Equal(t, "req-outbox-1", got[0].RequestID)
	require.Equal(t, "someone-else", got[1].ActorID)
	require.Equal(t, "user", got[1].ActorKind)
	require.Equal(t, "req-outbox-1", got[1].RequestID)

	// Outside a request nothing is made up.
	id, kind := outbox.ActorOf(context.Background())
	require.Empty(t, id)
	require.Empty(t, kind)
}
