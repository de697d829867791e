package erasure

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/bus"
)

func TestDecodeErased(t *testing.T) {
	t.Parallel()
	tenant, erasureID, identity := uuid.New(), uuid.New(), uuid.New()
	ev, err := bus.NewEvent(tenant.String(), EventIdentityErased, "manushya/identity", identity.String(),
		Erased{ErasureID: erasureID.String(), IdentityID: identity.String()})
	require.NoError(t, err)
	req, err := decodeErased(ev)
	require.NoError(t, err)
	require.Equal(t, Request{Tenant: tenant, ErasureID: erasureID, Identity: &identity}, req)

	ev, err = bus.NewEvent(tenant.String(), EventTenantErased, "manushya/identity", tenant.String(),
		Erased{ErasureID: erasureID.String(), TenantID: tenant.String()})
	require.NoError(t, err)
	req, err = decodeErased(ev)
	require.NoError(t, err)
	require.Nil(t, req.Identity, "a tenant erasure names no identity")

	for name, data := range map[string]string{
		"no erasure":    `{"identity_id":"` + identity.String() + `"}`,
		"no identity":   `{"erasure_id":"` + erasureID.String() + `"}`,
		"not an object": `[1]`,
	} {
		ev.Type, ev.Data = EventIdentityErased, []byte(data)
		_, err := decodeErased(ev)
		require.Error(t, err, name)
	}
}

// FuzzDecodeErased: whatever an event carries, decoding never panics and an
// accepted identity erasure always names its identity.
func FuzzDecodeErased(f *testing.F) {
	f.Add(EventIdentityErased, uuid.NewString(), []byte(`{"erasure_id":"`+uuid.NewString()+`","identity_id":"`+uuid.NewString()+`"}`))
	f.Add(EventTenantErased, "not-a-uuid", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ, tenant string, data []byte) {
		req, err := decodeErased(bus.Event{Type: typ, Tenant: tenant, Data: data})
		if err == nil && typ == EventIdentityErased && req.Identity == nil {
			t.Fatalf("identity erasure accepted without an identity: %+v", req)
		}
	})
}
