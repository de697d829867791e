package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// CredentialKind says how a credential must be verified.
type CredentialKind int

// Credential kinds.
const (
	CredentialNone CredentialKind = iota
	CredentialAPIKey
	CredentialJWT
	// CredentialService is a signed service-to-service credential (ServiceHeader).
	CredentialService
)

// APIKeyPrefix starts every Manushya API key ("mk_<env>_<random>").
const APIKeyPrefix = "mk_"

// Credential is what the caller presented. Value is a secret: never log it.
type Credential struct {
	Kind  CredentialKind
	Value string
}

// CredentialFromMetadata reads the caller's credential from incoming gRPC metadata.
func CredentialFromMetadata(ctx context.Context) (Credential, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(ServiceHeader); len(v) > 0 && v[0] != "" {
		return Credential{Kind: CredentialService, Value: v[0]}, nil
	}
	// A blank header counts as absent, so no empty secret goes to the authenticator.
	if keys := md.Get("x-api-key"); len(keys) > 0 {
		if key := strings.TrimSpace(keys[0]); key != "" {
			return Credential{Kind: CredentialAPIKey, Value: key}, nil
		}
	}
	authz := md.Get("authorization")
	if len(authz) == 0 || authz[0] == "" {
		return Credential{}, nil
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authz[0]), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return Credential{}, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED,
			"authorization header must be \"Bearer <token>\"")
	}
	if strings.HasPrefix(token, APIKeyPrefix) {
		return Credential{Kind: CredentialAPIKey, Value: token}, nil
	}
	return Credential{Kind: CredentialJWT, Value: token}, nil
}

// Authenticator verifies a credential and returns its principal. Errors are
// *apierr.Error values with an UNAUTHENTICATED reason that leaks nothing.
type Authenticator interface {
	Authenticate(ctx context.Context, cred Credential) (*Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, cred Credential) (*Principal, error)

// Authenticate implements Authenticator.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, cred Credential) (*Principal, error) {
	return f(ctx, cred)
}
