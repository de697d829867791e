package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

const testTenant = "01a21409-cd96-736d-b0b6-c852e218836f"

func TestServiceCredential(t *testing.T) {
	t.Parallel()
	s := NewServiceSigner("a-pepper-of-at-least-thirty-two-bytes!!")
	now := time.Now()
	s.now = func() time.Time { return now }

	p, err := s.Verify(s.sign("memory", testTenant, now))
	require.NoError(t, err)
	require.Equal(t, testTenant, p.TenantID)
	require.Equal(t, []string{"embedding.embed", "embedding.read"}, p.Scopes, "a service gets only what its table grants")
	require.Equal(t, KindService, p.Kind)

	other := NewServiceSigner("another-pepper-of-at-least-thirty-two-b")
	for name, tc := range map[string]struct {
		value  string
		reason errorsv1.ErrorReason
	}{
		"other key":       {other.sign("memory", testTenant, now), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"tampered tenant": {strings.Replace(s.sign("memory", testTenant, now), "01a2", "01a3", 1), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"unknown service": {s.sign("webhooks", testTenant, now), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"no tenant":       {s.sign("memory", "x", now), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
		"too old":         {s.sign("memory", testTenant, now.Add(-time.Hour)), errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED},
		"garbage":         {"not-a-credential", errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN},
	} {
		_, err := s.Verify(tc.value)
		require.Error(t, err, name)
		require.Equal(t, tc.reason, apierr.ReasonOf(err), name)
	}
}
