package identity

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

var kindNames = map[identityv1.IdentityKind]string{
	identityv1.IdentityKind_IDENTITY_KIND_UNSPECIFIED: "user",
	identityv1.IdentityKind_IDENTITY_KIND_USER:        "user",
	identityv1.IdentityKind_IDENTITY_KIND_AGENT:       "agent",
	identityv1.IdentityKind_IDENTITY_KIND_SERVICE:     "service",
}

func kindFromName(name string) identityv1.IdentityKind {
	for k, n := range kindNames {
		if n == name && k != identityv1.IdentityKind_IDENTITY_KIND_UNSPECIFIED {
			return k
		}
	}
	return identityv1.IdentityKind_IDENTITY_KIND_UNSPECIFIED
}

func tenantToProto(t sqlc.IdentityTenant) (*identityv1.Tenant, error) {
	settings := &identityv1.TenantSettings{}
	if err := protojson.Unmarshal(t.Settings, settings); err != nil {
		return nil, fmt.Errorf("decode settings of tenant %s: %w", t.ID, err)
	}
	return &identityv1.Tenant{
		Id: t.ID.String(), Slug: t.Slug, Name: t.Name, Settings: settings,
		CreateTime: timestamppb.New(t.CreateTime), UpdateTime: timestamppb.New(t.UpdateTime),
	}, nil
}

func identityToProto(i sqlc.IdentityIdentity) (*identityv1.Identity, error) {
	claims := &structpb.Struct{}
	if err := protojson.Unmarshal(i.Claims, claims); err != nil {
		return nil, fmt.Errorf("decode claims of identity %s: %w", i.ID, err)
	}
	out := &identityv1.Identity{
		Id: i.ID.String(), TenantId: i.TenantID.String(), ExternalId: i.ExternalID,
		Kind: kindFromName(i.Kind), Role: i.Role, Roles: i.Roles, Claims: claims, IsActive: i.IsActive,
		CreateTime: timestamppb.New(i.CreateTime), UpdateTime: timestamppb.New(i.UpdateTime),
	}
	if i.DeleteTime != nil {
		out.DeleteTime = timestamppb.New(*i.DeleteTime)
	}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	return out, nil
}

// claimsJSON encodes claims for the jsonb column; nil becomes {}.
func claimsJSON(s *structpb.Struct) ([]byte, error) {
	if s == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(s.AsMap())
}
