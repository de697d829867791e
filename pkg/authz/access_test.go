package authz_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/manushya-ai/manushya/pkg/authz"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/options/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

var permissionPattern = regexp.MustCompile(`^[a-z_]+\.[a-z_]+$`)

func TestAccessForDeclaredMethods(t *testing.T) {
	t.Parallel()
	for method, want := range map[string]authz.Access{
		identityv1.IdentityService_CreateIdentity_FullMethodName: {
			Permission: "identity.create", Resource: "identity", Action: "create",
		},
		identityv1.IdentityService_GetMe_FullMethodName: {
			Permission: "identity.read_self", Resource: "identity", Action: "read_self",
		},
		identityv1.TenantService_CreateTenant_FullMethodName: {
			Permission: "tenant.create", Resource: "tenant", Action: "create", Operator: true,
		},
		identityv1.CredentialService_IntrospectCredential_FullMethodName: {Public: true},
		healthpb.Health_Check_FullMethodName:                             {Public: true},
		healthpb.Health_Watch_FullMethodName:                             {Public: true},
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},
	} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			want.Method = method
			got, err := authz.AccessFor(method)
			require.NoError(t, err)
			require.Equal(t, want, got)

			// The second lookup is served from the cache and answers the same.
			again, err := authz.AccessFor(method)
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestAccessForRefusesUnknownMethods(t *testing.T) {
	t.Parallel()
	for method, wantErr := range map[string]string{
		"/manushya.identity.v1.NoSuchService/Get":            "find service manushya.identity.v1.NoSuchService",
		"/manushya.identity.v1.IdentityService/NoSuchMethod": "service manushya.identity.v1.IdentityService has no method NoSuchMethod",
		"/manushya.identity.v1.Identity/Get":                 "manushya.identity.v1.Identity is not a service",
		"/manushya.identity.v1.IdentityService":              "malformed method name",
		"":                                                   "malformed method name",
		// Services registered without the option, outside our protos.
		"/grpc.health.v2.Health/Check": "find service grpc.health.v2.Health",
	} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			for range 2 { // the failure is cached, and stays a failure
				got, err := authz.AccessFor(method)
				require.ErrorContains(t, err, wantErr)
				require.Equal(t, authz.Access{}, got)
			}
		})
	}
}

// TestEveryMethodDeclaresAccess is the guard behind "a method without an access
// declaration is refused": it fails the build of a proto change that forgets one,
// instead of letting the server refuse the method at run time.
func TestEveryMethodDeclaresAccess(t *testing.T) {
	t.Parallel()
	registered := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "manushya.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				registered["/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name())] = true
			}
		}
		return true
	})
	require.NotEmpty(t, registered)

	// Every generated method must be in the registry walked above, so a new pb
	// package without a blank import here cannot slip past the guard.
	generated := generatedMethods(t)
	require.NotEmpty(t, generated)
	for _, m := range generated {
		require.True(t, registered[m], "%s is generated but not registered: import its package above", m)
	}

	for method := range registered {
		a, err := authz.AccessFor(method)
		require.NoError(t, err, "%s has no usable access declaration", method)
		require.Equal(t, method, a.Method)
		require.True(t, a.Public || a.Operator || a.Permission != "", "%s declares nothing", method)
		if a.Permission != "" {
			require.Regexp(t, permissionPattern, a.Permission, "%s: permission must be <resource>.<action>", method)
			require.Equal(t, a.Resource+"."+a.Action, a.Permission)
		}
		if a.Public {
			require.False(t, a.Operator, "%s is both public and operator-only", method)
		}
	}
}

// generatedMethods reads the full method names out of the generated gRPC code.
func generatedMethods(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "pb", "manushya", "*", "v1", "*_grpc.pb.go"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	constant := regexp.MustCompile(`(?m)^\s*\w+_FullMethodName\s*=\s*"([^"]+)"`)
	var out []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range constant.FindAllSubmatch(src, -1) {
			out = append(out, string(m[1]))
		}
	}
	slices.Sort(out)
	return out
}
