package identity

import (
	"google.golang.org/grpc"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// registerPending registers the identity-area services whose behaviour is not built
// yet, so that each of their RPCs exists and answers UNIMPLEMENTED naming itself
// rather than "unknown service".
func registerPending(s grpc.ServiceRegistrar) {
	identityv1.RegisterSsoServiceServer(s, identityv1.UnimplementedSsoServiceServer{})
}
