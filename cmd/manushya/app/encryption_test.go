package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
)

// TestEncryptionAPIThroughTheBinary checks EncryptionService is served by the
// binary over gRPC and REST: the tenant's key is listed with the fields the
// services registered, a rotation makes a new primary, and the operator runs a
// pass that leaves every field's rows under the new key.
func TestEncryptionAPIThroughTheBinary(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	a := s.start(t, "all")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "enc", "Enc")
	require.NoError(t, err)
	tgt := target(t, a.GRPCAddr(), a.HTTPAddr())
	op := metadata.AppendToOutgoingContext(ctx, "x-api-key", boot.APIKey)
	enc := adminv1.NewEncryptionServiceClient(tgt.GRPC)

	rest := func(method, path, body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctx, method, tgt.RESTBase+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-API-Key", boot.APIKey)
		resp, err := tgt.HTTPClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
		return resp.StatusCode, out
	}
	code, body := rest(http.MethodPost, "/v1/admin/encryption/rotate", `{"scope":"ENCRYPTION_SCOPE_TENANT"}`)
	require.Equal(t, http.StatusOK, code, body)
	key := body["key"].(map[string]any)
	require.Equal(t, boot.TenantID, key["tenant_id"])

	st, err := enc.GetEncryptionStatus(op, &adminv1.GetEncryptionStatusRequest{TenantId: boot.TenantID})
	require.NoError(t, err)
	require.Equal(t, uint32(key["key_id"].(float64)), st.GetKeys()[0].GetKeyId(), "newest first: the new primary")
	require.Equal(t, adminv1.DataKeyState_DATA_KEY_STATE_PRIMARY, st.GetKeys()[0].GetState())
	fields := map[string]bool{}
	for _, f := range st.GetFields() {
		fields[f.GetField()] = true
	}
	require.True(t, fields["identity.signing_keys.private_key"], "%v", fields)

	code, body = rest(http.MethodPost, "/v1/admin/encryption/reencrypt", `{"wait":true}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["completed"], body)
	code, body = rest(http.MethodGet, "/v1/admin/encryption/", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "ENCRYPTION_SCOPE_SYSTEM", body["scope"])
	require.NotEmpty(t, body["kek_id"])
}
