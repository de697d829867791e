package auth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

const testAPIKey = "mk_test_0123456789abcdefghijABCDEFGHIJ0123456789"

func TestCredentialFromMetadata(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		md   metadata.MD
		want auth.Credential
	}{
		"no metadata": {},
		"empty metadata": {
			md: metadata.MD{},
		},
		"x-api-key": {
			md:   metadata.Pairs("x-api-key", testAPIKey),
			want: auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey},
		},
		"x-api-key trimmed": {
			md:   metadata.Pairs("x-api-key", "  "+testAPIKey+" "),
			want: auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey},
		},
		"x-api-key without the mk_ prefix is still an API key": {
			md:   metadata.Pairs("x-api-key", "legacy-key"),
			want: auth.Credential{Kind: auth.CredentialAPIKey, Value: "legacy-key"},
		},
		"x-api-key wins over authorization": {
			md:   metadata.Pairs("x-api-key", testAPIKey, "authorization", "Bearer eyJhbGciOi.jwt.sig"),
			want: auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey},
		},
		"empty x-api-key falls back to authorization": {
			md:   metadata.Pairs("x-api-key", "", "authorization", "Bearer eyJhbGciOi.jwt.sig"),
			want: auth.Credential{Kind: auth.CredentialJWT, Value: "eyJhbGciOi.jwt.sig"},
		},
		"blank x-api-key falls back to authorization": {
			md:   metadata.Pairs("x-api-key", "   ", "authorization", "Bearer eyJhbGciOi.jwt.sig"),
			want: auth.Credential{Kind: auth.CredentialJWT, Value: "eyJhbGciOi.jwt.sig"},
		},
		"blank x-api-key alone is no credential": {
			md: metadata.Pairs("x-api-key", " "),
		},
		"bearer API key": {
			md:   metadata.Pairs("authorization", "Bearer "+testAPIKey),
			want: auth.Credential{Kind: auth.CredentialAPIKey, Value: testAPIKey},
		},
		"bearer JWT": {
			md:   metadata.Pairs("authorization", "Bearer eyJhbGciOi.jwt.sig"),
			want: auth.Credential{Kind: auth.CredentialJWT, Value: "eyJhbGciOi.jwt.sig"},
		},
		"scheme is case-insensitive and spaces are trimmed": {
			md:   metadata.Pairs("authorization", "  bEaReR   eyJhbGciOi.jwt.sig  "),
			want: auth.Credential{Kind: auth.CredentialJWT, Value: "eyJhbGciOi.jwt.sig"},
		},
		"empty authorization": {
			md: metadata.Pairs("authorization", ""),
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tc.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tc.md)
			}
			got, err := auth.CredentialFromMetadata(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCredentialFromMetadataMalformed(t *testing.T) {
	t.Parallel()
	for _, header := range []string{
		"Basic dXNlcjpwYXNz",
		"Bearer",
		"Bearer    ",
		"Token " + testAPIKey,
		testAPIKey,
	} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
			got, err := auth.CredentialFromMetadata(ctx)
			require.Error(t, err)
			require.Equal(t, auth.Credential{}, got)
			require.Equal(t, codes.Unauthenticated, status.Code(err))
			require.Equal(t, errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED, apierr.ReasonOf(err))
			require.NotContains(t, err.Error(), "dXNlcjpwYXNz", "the credential is never echoed")
		})
	}
}

func TestAuthenticatorFunc(t *testing.T) {
	t.Parallel()
	want := &auth.Principal{TenantID: "t1", IdentityID: "i1"}
	var got auth.Credential
	var a auth.Authenticator = auth.AuthenticatorFunc(func(_ context.Context, cred auth.Credential) (*auth.Principal, error) {
		got = cred
		return want, nil
	})
	p, err := a.Authenticate(context.Background(), auth.Credential{Kind: auth.CredentialJWT, Value: "tok"})
	require.NoError(t, err)
	require.Same(t, want, p)
	require.Equal(t, auth.Credential{Kind: auth.CredentialJWT, Value: "tok"}, got)
}
