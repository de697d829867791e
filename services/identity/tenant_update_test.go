package identity_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

const updateTenantMethod = "/manushya.identity.v1.TenantService/UpdateTenant"

func tenantUpdate(id string, settings *identityv1.TenantSettings, name string, paths ...string) *identityv1.UpdateTenantRequest {
	req := &identityv1.UpdateTenantRequest{Tenant: &identityv1.Tenant{Id: id, Name: name, Settings: settings}}
	if len(paths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
	}
	return req
}

// TestUpdateTenant covers who may change a tenant's settings and what is checked:
// a tenant admin its own tenant only (another tenant does not exist for it), the
// operator any tenant, a user none; bad masks and values name the field.
func TestUpdateTenant(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	// Password sign-ins carry the role without the bootstrap key's operator scope.
	b.user(t, "root@example.com", "admin")
	b.user(t, "ada@example.com", "user")
	adminHdr := map[string]string{"Authorization": "Bearer " + b.login(t, "root@example.com").GetAccessToken()}
	userHdr := map[string]string{"Authorization": "Bearer " + b.login(t, "ada@example.com").GetAccessToken()}

	apitest.Run(t, target,
		apitest.Case{
			Name: "admin updates own tenant", Method: updateTenantMethod, Headers: adminHdr,
			Request: tenantUpdate(b.tenantA, &identityv1.TenantSettings{
				SelfRegistration: true, PasswordMinLength: 14, MaxSessionsPerIdentity: 3,
			}, "Tenant A, renamed", "name", "settings.self_registration", "settings.password_min_length", "settings.max_sessions_per_identity"),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				tn := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant()
				require.Equal(t, b.tenantA, tn.GetId())
				require.Equal(t, "tenant-a", tn.GetSlug())
				require.Equal(t, "Tenant A, renamed", tn.GetName())
				require.True(t, tn.GetSettings().GetSelfRegistration())
				require.False(t, tn.GetSettings().GetMfaRequired())
				require.Equal(t, int32(14), tn.GetSettings().GetPasswordMinLength())
				require.Equal(t, int32(3), tn.GetSettings().GetMaxSessionsPerIdentity())
			},
		},
		apitest.Case{
			Name: "one setting leaves the others", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{SelfRegistration: false}, "", "settings.self_registration"),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				tn := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant()
				require.Equal(t, "Tenant A, renamed", tn.GetName())
				require.False(t, tn.GetSettings().GetSelfRegistration())
				require.Equal(t, int32(14), tn.GetSettings().GetPasswordMinLength())
				require.Equal(t, int32(3), tn.GetSettings().GetMaxSessionsPerIdentity())
			},
		},
		apitest.Case{
			Name: "no mask changes what is set", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{PasswordMinLength: 16}, ""),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				tn := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant()
				require.Equal(t, "Tenant A, renamed", tn.GetName())
				require.Equal(t, int32(16), tn.GetSettings().GetPasswordMinLength())
				require.Equal(t, int32(3), tn.GetSettings().GetMaxSessionsPerIdentity())
			},
		},
		apitest.Case{
			Name: "admin of A cannot see tenant B", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantB, &identityv1.TenantSettings{SelfRegistration: true}, "", "settings.self_registration"),
			WantCode: codes.NotFound,
		},
		apitest.Case{
			Name: "user cannot update", Method: updateTenantMethod, Headers: userHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{SelfRegistration: true}, "", "settings.self_registration"),
			WantCode: codes.PermissionDenied,
		},
		apitest.Case{
			Name: "operator updates another tenant", Method: updateTenantMethod, Credential: b.adminA,
			Request:  tenantUpdate(b.tenantB, &identityv1.TenantSettings{MaxSessionsPerIdentity: 7}, "", "settings.max_sessions_per_identity"),
			WantCode: codes.OK,
			Check: func(t testing.TB, resp proto.Message) {
				tn := apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant()
				require.Equal(t, b.tenantB, tn.GetId())
				require.Equal(t, int32(7), tn.GetSettings().GetMaxSessionsPerIdentity())
			},
		},
		apitest.Case{
			Name: "slug cannot be changed", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, nil, "", "slug"),
			WantCode: codes.InvalidArgument, WantField: "update_mask",
		},
		apitest.Case{
			Name: "unknown setting", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, nil, "", "settings.colour"),
			WantCode: codes.InvalidArgument, WantField: "update_mask",
		},
		apitest.Case{
			Name: "password minimum below 8", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{PasswordMinLength: 5}, "", "settings.password_min_length"),
			WantCode: codes.InvalidArgument, WantField: "tenant.settings.password_min_length",
		},
		apitest.Case{
			Name: "negative session cap", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{MaxSessionsPerIdentity: -1}, "", "settings.max_sessions_per_identity"),
			WantCode: codes.InvalidArgument, WantField: "tenant.settings.max_sessions_per_identity",
		},
		apitest.Case{
			Name: "empty name", Method: updateTenantMethod, Headers: adminHdr,
			Request:  tenantUpdate(b.tenantA, nil, "", "name"),
			WantCode: codes.InvalidArgument, WantField: "tenant.name",
		},
	)

	// Nothing refused was written: tenant B kept its name and the bad values of A
	// did not land.
	got, err := identityv1.NewTenantServiceClient(b.conn).GetTenant(as(b.adminA), &identityv1.GetTenantRequest{Id: b.tenantA})
	require.NoError(t, err)
	require.Equal(t, int32(16), got.GetTenant().GetSettings().GetPasswordMinLength())
	require.Equal(t, int32(3), got.GetTenant().GetSettings().GetMaxSessionsPerIdentity())
	var events int
	require.NoError(t, b.admin(t).QueryRow(context.Background(),
		"SELECT count(*) FROM identity.outbox WHERE subject LIKE '%.tenant.updated'").Scan(&events))
	require.Equal(t, 8, events, "four successful cases, each over gRPC and REST")
}

// TestUpdateTenantMFARequiredAtNextLogin turns mfa_required on through the API: the
// next password sign-in of a person without MFA gets only an enrollment token.
func TestUpdateTenantMFARequiredAtNextLogin(t *testing.T) {
	t.Parallel()
	b := tokSetup(t, tokOptions{})
	base := restFront(t, b, httptest.NewUnstartedServer(nil))
	target := apitest.Target{GRPC: b.conn, RESTBase: base}
	b.user(t, "mara@example.com", "user")
	// Before the change the sign-in is complete: it carries a refresh token.
	require.NotEmpty(t, b.login(t, "mara@example.com").GetRefreshToken())

	apitest.Run(t, target, apitest.Case{
		Name: "require mfa", Method: updateTenantMethod, Credential: b.adminA,
		Request:  tenantUpdate(b.tenantA, &identityv1.TenantSettings{MfaRequired: true}, "", "settings.mfa_required"),
		WantCode: codes.OK,
		Check: func(t testing.TB, resp proto.Message) {
			require.True(t, apitest.As[*identityv1.UpdateTenantResponse](t, resp).GetTenant().GetSettings().GetMfaRequired())
		},
	})
	apitest.Run(t, target, apitest.Case{
		Name: "next login needs enrollment", Method: "/manushya.identity.v1.AuthService/Login",
		Request:  &identityv1.LoginRequest{Tenant: "tenant-a", Identifier: "mara@example.com", Password: testPassword},
		WantCode: codes.OK,
		Check: func(t testing.TB, resp proto.Message) {
			r := apitest.As[*identityv1.LoginResponse](t, resp)
			require.True(t, r.GetMfaEnrollmentRequired())
			require.Empty(t, r.GetTokens().GetRefreshToken())
		},
	})
}
