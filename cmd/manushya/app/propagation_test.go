package app_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
	"github.com/manushya-ai/manushya/pkg/testutil/apitest"
)

// EnvPropagation enables TestPolicyPropagationAcrossProcesses, which builds the
// binary and runs a second OS process (about a minute on a loaded machine):
//
//	MANUSHYA_TEST_PROPAGATION=1 go test -count=1 -run TestPolicyPropagationAcrossProcesses -v ./cmd/manushya/app/
const EnvPropagation = "MANUSHYA_TEST_PROPAGATION"

// TestPolicyPropagationAcrossProcesses measures how long a policy change made
// through the policy service takes to be enforced by a memory service running in
// another OS process (the built binary with -target=memory): the change goes
// through the policy outbox to NATS, the memory process reloads the tenant's
// set. Each round flips a deny on reading memories and polls the memory process
// until it answers accordingly.
func TestPolicyPropagationAcrossProcesses(t *testing.T) {
	if os.Getenv(EnvPropagation) == "" {
		t.Skipf("set %s=1 to build the binary and measure policy propagation to another process", EnvPropagation)
	}
	bin := filepath.Join(t.TempDir(), "manushya")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manushya")
	build.Dir = filepath.Join("..", "..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	s := newStack(t)
	a := s.start(t, "identity,policy,embedding,gateway")
	ctx := context.Background()
	boot, err := a.Identity().Service().Bootstrap(ctx, "prop", "Propagation")
	require.NoError(t, err)
	admin := boot.APIKey

	// The memory service alone, in its own process, verifying credentials with the
	// identity service of this one and reading policies from the shared database.
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	mem := exec.Command(bin, "serve")
	mem.Env = append(os.Environ(),
		"MANUSHYA_TARGET=memory",
		"MANUSHYA_DATABASE_URL="+s.db.AppURL,
		"MANUSHYA_NATS_URL="+s.natsURL,
		"MANUSHYA_GRPC_ADDR="+grpcAddr,
		"MANUSHYA_HTTP_ADDR="+httpAddr,
		"MANUSHYA_AUTH_API_KEY_PEPPER="+testPepper,
		"MANUSHYA_SERVICES_IDENTITY_ADDR="+a.GRPCAddr(),
		"MANUSHYA_SERVICES_EMBEDDING_ADDR="+a.GRPCAddr(),
		"MANUSHYA_LOG_LEVEL=warn",
	)
	if os.Getenv("MANUSHYA_TEST_LOG") != "" {
		mem.Stdout, mem.Stderr = os.Stdout, os.Stderr
	}
	require.NoError(t, mem.Start())
	t.Cleanup(func() {
		_ = mem.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = mem.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = mem.Process.Kill()
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "the memory process did not become ready")

	local := target(t, a.GRPCAddr(), a.HTTPAddr())
	remote := target(t, grpcAddr, httpAddr)
	created, err := apitest.CallGRPC(ctx, remote.GRPC, apitest.Case{Method: createMemory, Credential: admin,
		Request: &memoryv1.CreateMemoryRequest{Text: "propagation probe"}})
	require.NoError(t, err)
	memID := created.(*memoryv1.CreateMemoryResponse).GetMemory().GetId()
	read := func() codes.Code {
		_, err := apitest.CallGRPC(ctx, remote.GRPC, apitest.Case{Method: getMemory, Credential: admin,
			Request: &memoryv1.GetMemoryRequest{Id: memID}})
		return status.Code(err)
	}
	require.Equal(t, codes.OK, read())

	resp, err := apitest.CallGRPC(ctx, local.GRPC, apitest.Case{Method: createPolicy, Credential: admin,
		Request: &policyv1.CreatePolicyRequest{
			Name: "freeze-reads", Language: policyv1.PolicyLanguage_POLICY_LANGUAGE_REGO, Resource: "memory",
			Actions: []string{"read"}, Effect: policyv1.Effect_EFFECT_DENY, Priority: 9000,
			Source: "package freeze\nmatch := true\n", Enabled: proto.Bool(false),
		}})
	require.NoError(t, err)
	pol := resp.(*policyv1.CreatePolicyResponse).GetPolicy()

	const rounds = 10
	var lags []time.Duration
	for i := range rounds {
		enable := i%2 == 0
		want := codes.OK
		if enable {
			want = codes.PermissionDenied
		}
		start := time.Now()
		_, err := apitest.CallGRPC(ctx, local.GRPC, apitest.Case{Method: "/manushya.policy.v1.PolicyService/UpdatePolicy", Credential: admin,
			Request: &policyv1.UpdatePolicyRequest{
				Policy:     &policyv1.Policy{Id: pol.GetId(), Enabled: enable},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"enabled"}},
			}})
		require.NoError(t, err)
		for read() != want {
			require.Less(t, time.Since(start), 30*time.Second, "round %d: the memory process never enforced the change", i)
			time.Sleep(2 * time.Millisecond)
		}
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	t.Logf("policy change to enforcement in another process, %d rounds: min %v, median %v, max %v (includes the update RPC)",
		rounds, lags[0].Round(time.Millisecond), lags[rounds/2].Round(time.Millisecond), lags[rounds-1].Round(time.Millisecond))
	fmt.Printf("propagation-ms min=%d median=%d max=%d\n", lags[0].Milliseconds(), lags[rounds/2].Milliseconds(), lags[rounds-1].Milliseconds())
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
