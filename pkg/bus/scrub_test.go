package bus_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
)

// TestScrubRemovesOnlyMatchingEventsOfTheTenant: a scrub deletes the tenant's
// matching messages from the stream (their bytes are gone, not only hidden) and
// keeps the rest of the tenant's and every other tenant's; a second scrub finds
// nothing.
func TestScrubRemovesOnlyMatchingEventsOfTheTenant(t *testing.T) {
	t.Parallel()
	_, b := startBus(t)
	ctx := t.Context()
	st, err := b.EnsureStream(ctx)
	require.NoError(t, err)

	tenantA, tenantB := uuid.NewString(), uuid.NewString()
	erased, kept := uuid.NewString(), uuid.NewString()
	publish := func(tenant, typ, subject string, data any) {
		ev, err := bus.NewEvent(tenant, typ, "manushya/identity", subject, data)
		require.NoError(t, err)
		payload, err := ev.MarshalCloudEvent()
		require.NoError(t, err)
		_, err = b.JS.Publish(ctx, ev.NATSSubject(), payload, jetstream.WithMsgID(ev.ID))
		require.NoError(t, err)
	}
	for range 3 {
		publish(tenantA, "identity.updated", erased, map[string]string{"external_id": "gone@example.com"})
		publish(tenantA, "identity.updated", kept, map[string]string{"external_id": "stays@example.com"})
		publish(tenantB, "identity.updated", erased, map[string]string{"external_id": "other-tenant@example.com"})
	}
	publish(tenantA, "identity.erased", erased, map[string]string{"identity_id": erased})

	match := func(ev bus.Event) bool { return ev.Subject == erased && ev.Type != "identity.erased" }
	n, err := b.Scrub(ctx, tenantA, match, nil)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 10-3, info.State.Msgs)
	var left []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		left = append(left, string(msg.Data))
	}
	all := strings.Join(left, "\n")
	require.NotContains(t, all, "gone@example.com")
	require.Equal(t, 3, strings.Count(all, "stays@example.com"))
	require.Equal(t, 3, strings.Count(all, "other-tenant@example.com"), "another tenant's events are not touched")
	require.Contains(t, all, `"type":"identity.erased"`)

	n, err = b.Scrub(ctx, tenantA, match, nil)
	require.NoError(t, err)
	require.Zero(t, n)
}
