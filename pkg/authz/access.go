package authz

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	optionsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/options/v1"
)

// Access is the declared access of one RPC.
type Access struct {
	Method     string // full gRPC method, "/pkg.Service/Method"
	Permission string // "<resource>.<action>"
	Resource   string
	Action     string
	Public     bool
	Operator   bool
}

// Infrastructure methods that are not ours and need no credential.
var publicPrefixes = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

var accessCache sync.Map // full method -> Access or error

// AccessFor returns the declared access of a full gRPC method name. Methods without a
// declaration are an error: the server refuses them rather than guessing.
func AccessFor(fullMethod string) (Access, error) {
	if v, ok := accessCache.Load(fullMethod); ok {
		if err, isErr := v.(error); isErr {
			return Access{}, err
		}
		return v.(Access), nil
	}
	a, err := lookup(fullMethod)
	if err != nil {
		accessCache.Store(fullMethod, err)
		return Access{}, err
	}
	accessCache.Store(fullMethod, a)
	return a, nil
}

func lookup(fullMethod string) (Access, error) {
	for _, p := range publicPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return Access{Method: fullMethod, Public: true}, nil
		}
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return Access{}, fmt.Errorf("malformed method name %q", fullMethod)
	}
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return Access{}, fmt.Errorf("find service %s: %w", svc, err)
	}
	sd, ok := desc.(protoreflect.ServiceDescriptor)
	if !ok {
		return Access{}, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return Access{}, fmt.Errorf("service %s has no method %s", svc, method)
	}
	opt, _ := proto.GetExtension(md.Options(), optionsv1.E_Access).(*optionsv1.Access)
	if opt == nil {
		return Access{}, fmt.Errorf("method %s declares no access option", fullMethod)
	}
	a := Access{Method: fullMethod, Permission: opt.GetPermission(), Public: opt.GetPublic(), Operator: opt.GetOperator()}
	if a.Permission != "" {
		res, act, ok := strings.Cut(a.Permission, ".")
		if !ok {
			return Access{}, fmt.Errorf("method %s: permission %q is not <resource>.<action>", fullMethod, a.Permission)
		}
		a.Resource, a.Action = res, act
	} else if !a.Public && !a.Operator {
		return Access{}, fmt.Errorf("method %s: access option names no permission", fullMethod)
	}
	return a, nil
}
