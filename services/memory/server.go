package memory

import (
	"context"

	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
)

// server implements MemoryService over the domain logic of Service.
type server struct {
	memoryv1.UnimplementedMemoryServiceServer
	svc *Service
}

func (s *server) CreateMemory(ctx context.Context, req *memoryv1.CreateMemoryRequest) (*memoryv1.CreateMemoryResponse, error) {
	m, err := s.svc.Create(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.CreateMemoryResponse{Memory: m}, nil
}

func (s *server) GetMemory(ctx context.Context, req *memoryv1.GetMemoryRequest) (*memoryv1.GetMemoryResponse, error) {
	m, err := s.svc.Get(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.GetMemoryResponse{Memory: m}, nil
}

func (s *server) ListMemories(ctx context.Context, req *memoryv1.ListMemoriesRequest) (*memoryv1.ListMemoriesResponse, error) {
	return s.svc.List(ctx, req)
}

func (s *server) UpdateMemory(ctx context.Context, req *memoryv1.UpdateMemoryRequest) (*memoryv1.UpdateMemoryResponse, error) {
	m, err := s.svc.Update(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.UpdateMemoryResponse{Memory: m}, nil
}

func (s *server) DeleteMemory(ctx context.Context, req *memoryv1.DeleteMemoryRequest) (*memoryv1.DeleteMemoryResponse, error) {
	m, err := s.svc.Delete(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.DeleteMemoryResponse{Memory: m}, nil
}

func (s *server) RestoreMemory(ctx context.Context, req *memoryv1.RestoreMemoryRequest) (*memoryv1.RestoreMemoryResponse, error) {
	m, err := s.svc.Restore(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.RestoreMemoryResponse{Memory: m}, nil
}

func (s *server) ListMemoryVersions(ctx context.Context, req *memoryv1.ListMemoryVersionsRequest) (*memoryv1.ListMemoryVersionsResponse, error) {
	return s.svc.ListVersions(ctx, req)
}

func (s *server) BulkCreateMemories(ctx context.Context, req *memoryv1.BulkCreateMemoriesRequest) (*memoryv1.BulkCreateMemoriesResponse, error) {
	return s.svc.BulkCreate(ctx, req)
}

func (s *server) BulkDeleteMemories(ctx context.Context, req *memoryv1.BulkDeleteMemoriesRequest) (*memoryv1.BulkDeleteMemoriesResponse, error) {
	return s.svc.BulkDelete(ctx, req)
}

func (s *server) SearchMemories(ctx context.Context, req *memoryv1.SearchMemoriesRequest) (*memoryv1.SearchMemoriesResponse, error) {
	return s.svc.Search(ctx, req)
}

func (s *server) GetMemorySettings(ctx context.Context, req *memoryv1.GetMemorySettingsRequest) (*memoryv1.GetMemorySettingsResponse, error) {
	st, err := s.svc.GetSettings(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.GetMemorySettingsResponse{Settings: st}, nil
}

func (s *server) UpdateMemorySettings(ctx context.Context, req *memoryv1.UpdateMemorySettingsRequest) (*memoryv1.UpdateMemorySettingsResponse, error) {
	st, err := s.svc.UpdateSettings(ctx, req)
	if err != nil {
		return nil, err
	}
	return &memoryv1.UpdateMemorySettingsResponse{Settings: st}, nil
}
