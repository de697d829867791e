package authz

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	_ "github.com/manushya-ai/manushya/pkg/pb/manushya/webhooks/v1"
)

// declared returns the permissions and actions the protos declare.
func declared(t *testing.T) (permissions, actions map[string]bool) {
	t.Helper()
	permissions, actions = map[string]bool{}, map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "manushya.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				a, err := AccessFor("/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name()))
				require.NoError(t, err)
				if a.Permission != "" {
					permissions[a.Permission] = true
					actions[a.Action] = true
				}
			}
		}
		return true
	})
	require.NotEmpty(t, permissions)
	return permissions, actions
}

// A rule naming a permission no RPC declares grants nothing, and hides that the
// RPC it meant is refused.
func TestBuiltinRulesNameDeclaredPermissions(t *testing.T) {
	t.Parallel()
	permissions, actions := declared(t)
	for _, p := range selfPermissions {
		require.True(t, permissions[p], "selfPermissions names %q, which no RPC declares", p)
	}
	for _, a := range readActions {
		require.True(t, actions[a], "readActions names %q, which no RPC declares", a)
	}
}
