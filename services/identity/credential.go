package identity

import (
	"context"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// credentialServer implements CredentialService. The authentication interceptor has
// already verified the request's credential; this only reports the result.
type credentialServer struct {
	identityv1.UnimplementedCredentialServiceServer
}

func (credentialServer) IntrospectCredential(ctx context.Context, _ *identityv1.IntrospectCredentialRequest) (*identityv1.IntrospectCredentialResponse, error) {
	p, ok := auth.FromContext(ctx)
	if err := auth.CredentialError(ctx); !ok && err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING,
			"send the credential to introspect as \"Authorization: Bearer <token>\" or \"X-API-Key: <key>\"")
	}
	return &identityv1.IntrospectCredentialResponse{
		TenantId: p.TenantID, IdentityId: p.IdentityID, ExternalId: p.ExternalID, Kind: p.Kind,
		Roles: p.Roles, Scopes: p.Scopes, ApiKeyId: p.APIKeyID, SessionId: p.SessionID,
	}, nil
}
