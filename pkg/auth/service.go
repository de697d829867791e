package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// ServiceHeader carries a service-to-service credential: work a service does on its
// own behalf for a tenant (the memory embedder calling the embedding service), where
// no caller's credential exists to forward.
const ServiceHeader = "x-manushya-service"

// serviceScopes is what each calling service may do through a service credential;
// a service missing here cannot call others.
var serviceScopes = map[string][]string{
	// The memory embedder embeds, and asks which model is the default (to
	// re-embed what a fallback provider embedded once the default is back).
	"memory": {"embedding.embed", "embedding.read"},
	// Data exports (identity ExportService) read what other services hold about
	// the exported identity.
	"identity": {"memory.list", "memory.read", "audit.read", "usage.read"},
}

// serviceCredentialTTL bounds how long a captured service credential can be
// replayed.
const serviceCredentialTTL = 2 * time.Minute

// ServiceSigner signs and verifies service credentials with a key every process
// shares (derived from auth.api_key_pepper).
type ServiceSigner struct {
	key []byte
	now func() time.Time
}

// NewServiceSigner derives the signing key from secret under its own label, so the
// key is never the pepper itself.
func NewServiceSigner(secret string) *ServiceSigner {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("manushya service credential v1"))
	return &ServiceSigner{key: m.Sum(nil), now: time.Now}
}

type serviceCallKey struct{}

type serviceCall struct {
	service string
	tenant  string
}

// AsService marks ctx for an outgoing call made by service on tenant's behalf; the
// client interceptor of the process signs it.
func AsService(ctx context.Context, service, tenant string) context.Context {
	return context.WithValue(ctx, serviceCallKey{}, serviceCall{service: service, tenant: tenant})
}

func (s *ServiceSigner) sign(service, tenant string, at time.Time) string {
	payload := service + "." + tenant + "." + strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// UnaryClientInterceptor signs outgoing calls marked with AsService.
func (s *ServiceSigner) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if call, ok := ctx.Value(serviceCallKey{}).(serviceCall); ok {
			ctx = metadata.AppendToOutgoingContext(ctx, ServiceHeader, s.sign(call.service, call.tenant, s.now()))
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Verify checks a service credential and returns its principal: the calling service
// in the named tenant, limited to what serviceScopes grants it.
func (s *ServiceSigner) Verify(value string) (*Principal, error) {
	bad := func(why string) error {
		return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "service credential %s", why)
	}
	idx := strings.LastIndexByte(value, '.')
	if idx < 0 {
		return nil, bad("is malformed")
	}
	payload, sig := value[:idx], value[idx+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return nil, bad("is not valid")
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 {
		return nil, bad("is malformed")
	}
	service, tenant := parts[0], parts[1]
	unix, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return nil, bad("is malformed")
	}
	if age := s.now().Sub(time.Unix(unix, 0)); age > serviceCredentialTTL || age < -serviceCredentialTTL {
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "service credential has expired")
	}
	scopes, ok := serviceScopes[service]
	if !ok {
		return nil, bad(fmt.Sprintf("names unknown service %q", service))
	}
	if _, err := uuid.Parse(tenant); err != nil {
		return nil, bad("names no tenant")
	}
	return &Principal{
		TenantID: tenant, ExternalID: "service:" + service, Kind: KindService,
		Roles: []string{RoleAdmin}, Scopes: scopes, Service: service,
	}, nil
}
