package policy_test

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/authz"
	"github.com/manushya-ai/manushya/pkg/grpcserver"
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/postgres/pgtest"
	"github.com/manushya-ai/manushya/services/policy"
)

type allowAll struct{}

func (allowAll) Authorize(context.Context, *auth.Principal, authz.Access) error { return nil }

// BenchmarkGetPolicyAuthorization is the whole-request cost of authorization: the
// same GetPolicy call (gRPC over loopback, PostgreSQL read) with the tenant's
// policies deciding, and with an authorizer that allows everything.
func BenchmarkGetPolicyAuthorization(b *testing.B) {
	db := pgtest.New(b, policy.Migrations())
	mod, err := policy.New(policy.Config{}, policy.Deps{Pool: db.Pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	p := &auth.Principal{TenantID: uuid.NewString(), IdentityID: uuid.NewString(), Kind: "user", Roles: []string{"admin"}}
	authn := auth.AuthenticatorFunc(func(context.Context, auth.Credential) (*auth.Principal, error) { return p, nil })
	for _, tc := range []struct {
		name string
		az   authz.Authorizer
	}{{"allow-all-warmup", allowAll{}}, {"policies", mod.Authorizer()}, {"allow-all", allowAll{}}, {"policies-again", mod.Authorizer()}} {
		srv, err := grpcserver.New(grpcserver.Options{Logger: slog.New(slog.DiscardHandler), Authenticator: authn, Authorizer: tc.az})
		if err != nil {
			b.Fatal(err)
		}
		mod.Register(srv)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = srv.Serve(lis) }()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		client := policyv1.NewPolicyServiceClient(conn)
		ctx := as("any")
		created, err := client.CreatePolicy(ctx, createReq("bench-"+tc.name, "rego", denySecretRego, policyv1.Effect_EFFECT_DENY, 1))
		if err != nil {
			b.Fatal(err)
		}
		req := &policyv1.GetPolicyRequest{Id: created.GetPolicy().GetId()}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := client.GetPolicy(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		_ = conn.Close()
		srv.Stop()
	}
}
