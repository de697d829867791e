package policy

import (
	"context"

	policyv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/policy/v1"
)

// policyServer is the gRPC face of Service: validation by protovalidate and
// authorization by the interceptors have run before any of these.
type policyServer struct {
	policyv1.UnimplementedPolicyServiceServer
	svc *Service
}

func (s *policyServer) CreatePolicy(ctx context.Context, req *policyv1.CreatePolicyRequest) (*policyv1.CreatePolicyResponse, error) {
	p, err := s.svc.createPolicy(ctx, req)
	if err != nil {
		return nil, err
	}
	return &policyv1.CreatePolicyResponse{Policy: p}, nil
}

func (s *policyServer) GetPolicy(ctx context.Context, req *policyv1.GetPolicyRequest) (*policyv1.GetPolicyResponse, error) {
	p, err := s.svc.getPolicy(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &policyv1.GetPolicyResponse{Policy: p}, nil
}

func (s *policyServer) ListPolicies(ctx context.Context, req *policyv1.ListPoliciesRequest) (*policyv1.ListPoliciesResponse, error) {
	return s.svc.listPolicies(ctx, req)
}

func (s *policyServer) UpdatePolicy(ctx context.Context, req *policyv1.UpdatePolicyRequest) (*policyv1.UpdatePolicyResponse, error) {
	p, err := s.svc.updatePolicy(ctx, req)
	if err != nil {
		return nil, err
	}
	return &policyv1.UpdatePolicyResponse{Policy: p}, nil
}

func (s *policyServer) DeletePolicy(ctx context.Context, req *policyv1.DeletePolicyRequest) (*policyv1.DeletePolicyResponse, error) {
	if err := s.svc.deletePolicy(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &policyv1.DeletePolicyResponse{}, nil
}

func (s *policyServer) BulkUpsertPolicies(ctx context.Context, req *policyv1.BulkUpsertPoliciesRequest) (*policyv1.BulkUpsertPoliciesResponse, error) {
	return s.svc.bulkUpsert(ctx, req)
}

func (s *policyServer) TestPolicy(ctx context.Context, req *policyv1.TestPolicyRequest) (*policyv1.TestPolicyResponse, error) {
	return s.svc.testPolicy(ctx, req)
}

func (s *policyServer) ListPolicyVersions(ctx context.Context, req *policyv1.ListPolicyVersionsRequest) (*policyv1.ListPolicyVersionsResponse, error) {
	return s.svc.listVersions(ctx, req)
}
