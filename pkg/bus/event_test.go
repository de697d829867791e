package bus_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
)

const tenant = "0190f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5f"

func TestCloudEventRoundTrip(t *testing.T) {
	t.Parallel()
	data := map[string]any{"external_id": "user@example.com", "claims": map[string]any{"name": "John Doe"}}
	e, err := bus.NewEvent(tenant, "identity.created", "manushya/identity", "0190f1c2-0000-7000-8000-000000000001", data)
	require.NoError(t, err)
	require.Len(t, e.ID, 36)
	require.Equal(t, "manushya."+tenant+".identity.created", e.NATSSubject())

	b, err := e.MarshalCloudEvent()
	require.NoError(t, err)

	// The wire form is what non-Go consumers (webhook receivers, SDKs) see.
	var wire map[string]any
	require.NoError(t, json.Unmarshal(b, &wire))
	require.Equal(t, "1.0", wire["specversion"])
	require.Equal(t, e.ID, wire["id"])
	require.Equal(t, "identity.created", wire["type"])
	require.Equal(t, "manushya/identity", wire["source"])
	require.Equal(t, e.Subject, wire["subject"])
	require.Equal(t, "application/json", wire["datacontenttype"])
	require.Equal(t, tenant, wire["tenantid"])
	require.Equal(t, data["external_id"], wire["data"].(map[string]any)["external_id"])

	got, err := bus.ParseCloudEvent(b)
	require.NoError(t, err)
	require.Equal(t, e, got)
}

func TestCloudEventWithoutData(t *testing.T) {
	t.Parallel()
	e, err := bus.NewEvent(tenant, "api_key.revoked", "manushya/identity", "", nil)
	require.NoError(t, err)
	b, err := e.MarshalCloudEvent()
	require.NoError(t, err)
	require.NotContains(t, string(b), `"data"`)
	got, err := bus.ParseCloudEvent(b)
	require.NoError(t, err)
	require.Equal(t, e, got)
}

func TestCloudEventRawData(t *testing.T) {
	t.Parallel()
	e, err := bus.NewEvent(tenant, "memory.created", "manushya/memory", "m1", json.RawMessage(`{"text":"hi"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"hi"}`, string(e.Data))

	_, err = bus.NewEvent(tenant, "memory.created", "manushya/memory", "m1", json.RawMessage(`{"text":`))
	require.ErrorIs(t, err, bus.ErrInvalidEvent)

	// Data that is not one JSON value would be spliced into the envelope.
	e.Data = json.RawMessage(`1, "tenantid": "00000000-0000-0000-0000-000000000000"`)
	_, err = e.MarshalCloudEvent()
	require.ErrorIs(t, err, bus.ErrInvalidEvent)
}

func TestNewEventRejectsBadTokens(t *testing.T) {
	t.Parallel()
	badTenants := []string{
		"", "*", ">", "acme", tenant + ".x", strings.ToUpper(tenant),
		"{" + tenant + "}", "urn:uuid:" + tenant, strings.ReplaceAll(tenant, "-", ""),
		"0190f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5*",
	}
	for _, bad := range badTenants {
		_, err := bus.NewEvent(bad, "identity.created", "manushya/identity", "", nil)
		require.ErrorIs(t, err, bus.ErrInvalidEvent, "tenant %q", bad)
	}
	badTypes := []string{
		"", "identity", "identity.", ".created", "identity..created", "identity.*", "identity.>",
		">", "Identity.created", "identity.created ", "identity. created", "identity\tcreated.x",
		"1identity.created", "identity.created\n", "identité.created", strings.Repeat("a.", 70) + "b",
	}
	for _, bad := range badTypes {
		_, err := bus.NewEvent(tenant, bad, "manushya/identity", "", nil)
		require.ErrorIs(t, err, bus.ErrInvalidEvent, "type %q", bad)
	}
	_, err := bus.NewEvent(tenant, "identity.created", "", "", nil)
	require.ErrorIs(t, err, bus.ErrInvalidEvent, "empty source")

	for _, good := range []string{"identity.created", "api_key.revoked", "memory.bulk-deleted", "usage.daily.rolled_up2"} {
		_, err := bus.NewEvent(tenant, good, "manushya/x", "", nil)
		require.NoError(t, err, good)
	}
}

func TestParseCloudEventRejects(t *testing.T) {
	t.Parallel()
	e, err := bus.NewEvent(tenant, "identity.created", "manushya/identity", "r1", map[string]int{"n": 1})
	require.NoError(t, err)
	good, err := e.MarshalCloudEvent()
	require.NoError(t, err)

	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(good, &m))
		f(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	cases := map[string][]byte{
		"not json":        []byte(`{"specversion":`),
		"trailing data":   append(append([]byte{}, good...), []byte(`{}`)...),
		"no tenant":       mutate(func(m map[string]any) { delete(m, "tenantid") }),
		"wildcard tenant": mutate(func(m map[string]any) { m["tenantid"] = "*" }),
		"bad type":        mutate(func(m map[string]any) { m["type"] = "identity.>" }),
		"old spec":        mutate(func(m map[string]any) { m["specversion"] = "0.3" }),
		"xml data":        mutate(func(m map[string]any) { m["datacontenttype"] = "application/xml"; m["data"] = "<a/>" }),
		"id not uuid":     mutate(func(m map[string]any) { m["id"] = "42" }),
		"id upper case":   mutate(func(m map[string]any) { m["id"] = strings.ToUpper(e.ID) }),
		"no time":         mutate(func(m map[string]any) { delete(m, "time") }),
		"base64 data":     mutate(func(m map[string]any) { delete(m, "data"); m["data_base64"] = "e30=" }),
	}
	for name, b := range cases {
		_, err := bus.ParseCloudEvent(b)
		require.Error(t, err, name)
	}
}

func FuzzParseCloudEvent(f *testing.F) {
	e, err := bus.NewEvent(tenant, "identity.created", "manushya/identity", "r1", map[string]any{"a": []int{1, 2}})
	require.NoError(f, err)
	good, err := e.MarshalCloudEvent()
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","type":"a.b","source":"s","data":`))
	f.Add([]byte(`{"specversion":"1.0","datacontenttype":"text/plain","data":"x"}`))
	f.Add([]byte(`{"specversion":"1.0","data_base64":"!!"}`))
	f.Add([]byte(`{"specversion":"1.0","tenantid":{"x":1},"time":"yesterday"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := bus.ParseCloudEvent(b)
		if err != nil {
			return
		}
		// Whatever parses is a valid event, safe to route, and survives a
		// second round trip unchanged.
		require.NoError(t, ev.Validate())
		require.NoError(t, bus.ValidateTenant(ev.Tenant))
		require.NoError(t, bus.ValidateType(ev.Type))
		again, err := ev.MarshalCloudEvent()
		require.NoError(t, err)
		ev2, err := bus.ParseCloudEvent(again)
		require.NoError(t, err)
		require.Equal(t, ev.ID, ev2.ID)
		require.Equal(t, ev.Tenant, ev2.Tenant)
		require.Equal(t, ev.Type, ev2.Type)
		require.True(t, ev.Time.Equal(ev2.Time))
		require.JSONEq(t, orNull(ev.Data), orNull(ev2.Data))
	})
}

func orNull(b []byte) string {
	if b == nil {
		return "null"
	}
	return string(b)
}

func TestCloudEventCarriesActorAndRequest(t *testing.T) {
	t.Parallel()
	e, err := bus.NewEvent(tenant, "memory.created", "manushya/memory", "m1", map[string]any{"k": "v"})
	require.NoError(t, err)
	e.ActorID, e.ActorKind, e.RequestID = "0190f1c2-0000-7000-8000-000000000002", "agent", "req-42"
	b, err := e.MarshalCloudEvent()
	require.NoError(t, err)
	var wire map[string]any
	require.NoError(t, json.Unmarshal(b, &wire))
	require.Equal(t, e.ActorID, wire["actorid"])
	require.Equal(t, "agent", wire["actorkind"])
	require.Equal(t, "req-42", wire["requestid"])
	got, err := bus.ParseCloudEvent(b)
	require.NoError(t, err)
	require.Equal(t, e, got)

	// A request id that could forge log lines is refused.
	e.RequestID = "req\n42"
	_, err = e.MarshalCloudEvent()
	require.ErrorIs(t, err, bus.ErrInvalidEvent)
}
