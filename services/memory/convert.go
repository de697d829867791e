package memory

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

const maxMetadataBytes = 64 << 10

func toProto(m store.Memory) (*memoryv1.Memory, error) {
	md, err := structFromJSON(m.Metadata)
	if err != nil {
		return nil, fmt.Errorf("memory %s metadata: %w", m.ID, err)
	}
	out := &memoryv1.Memory{
		Id:              m.ID.String(),
		TenantId:        m.TenantID.String(),
		IdentityId:      m.IdentityID.String(),
		Text:            m.Text,
		Type:            m.Type,
		Metadata:        md,
		Version:         m.Version,
		EmbeddingStatus: memoryv1.EmbeddingStatus(m.EmbeddingStatus),
		EmbeddingError:  m.EmbeddingError,
		EmbeddingModel:  m.EmbeddingModel,
		CreateTime:      timestamppb.New(m.CreateTime),
		UpdateTime:      timestamppb.New(m.UpdateTime),
	}
	if m.AgentID != nil {
		out.AgentId = m.AgentID.String()
	}
	if m.SessionID != nil {
		out.SessionId = *m.SessionID
	}
	if m.DeleteTime != nil {
		out.DeleteTime = timestamppb.New(*m.DeleteTime)
	}
	if m.ExpireTime != nil {
		out.ExpireTime = timestamppb.New(*m.ExpireTime)
	}
	return out, nil
}

func versionToProto(v sqlc.MemoryMemoryVersion) (*memoryv1.MemoryVersion, error) {
	md, err := structFromJSON(v.Metadata)
	if err != nil {
		return nil, err
	}
	out := &memoryv1.MemoryVersion{
		MemoryId: v.MemoryID.String(), Version: v.Version, Text: v.Text, Type: v.Type,
		Metadata: md, ChangedFields: v.ChangedFields, CreateTime: timestamppb.New(v.CreateTime),
	}
	if v.ExpireTime != nil {
		out.ExpireTime = timestamppb.New(*v.ExpireTime)
	}
	if v.ActorID != nil {
		out.ActorId = v.ActorID.String()
	}
	return out, nil
}

func structFromJSON(b []byte) (*structpb.Struct, error) {
	s := &structpb.Struct{}
	if len(b) == 0 {
		return s, nil
	}
	if err := s.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return s, nil
}

// metadataJSON encodes request metadata, enforcing the size limit.
func metadataJSON(field string, s *structpb.Struct) ([]byte, error) {
	if s == nil {
		return []byte("{}"), nil
	}
	b, err := s.MarshalJSON()
	if err != nil {
		return nil, apierr.Field(field, "is not valid JSON: %v", err)
	}
	if len(b) > maxMetadataBytes {
		return nil, apierr.Field(field, "is larger than 64 KiB as JSON")
	}
	return b, nil
}

// mergeMetadata merges patch into the stored metadata, top-level keys replaced.
func mergeMetadata(stored, patch []byte) ([]byte, error) {
	var a, b map[string]json.RawMessage
	if err := json.Unmarshal(stored, &a); err != nil || a == nil {
		a = map[string]json.RawMessage{}
	}
	if err := json.Unmarshal(patch, &b); err != nil {
		return nil, err
	}
	for k, v := range b {
		a[k] = v
	}
	out, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if len(out) > maxMetadataBytes {
		return nil, apierr.Field("memory.metadata", "would be larger than 64 KiB as JSON once merged")
	}
	return out, nil
}

func parseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, apierr.Field(field, "must be a UUID")
	}
	return id, nil
}

func parseOptionalID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	return parseID(field, s)
}
