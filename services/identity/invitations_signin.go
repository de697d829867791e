package identity

import (
	"context"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// signInInvited opens the first session of an identity created by accepting an
// invitation, in tx. after runs once tx has committed (session-cap revocations).
func (s *Service) signInInvited(ctx context.Context, tx *store.Tx, ident sqlc.IdentityIdentity, userAgent, deviceName string) (*identityv1.Tokens, func(), error) {
	if s.tokens == nil {
		return nil, nil, nil
	}
	// In a tenant that requires MFA the new person's tokens are an MFA-enrollment
	// token only (openSession).
	toks, over, _, err := s.openSession(ctx, tx, ident, methodInvitation, userAgent, deviceName)
	if err != nil {
		return nil, nil, err
	}
	return toks, func() { s.applyRevocations(over) }, nil
}
