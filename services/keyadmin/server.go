// Package keyadmin serves EncryptionService (proto/manushya/admin/v1/encryption.proto):
// the keyring's status, data-key rotation and re-encryption passes, for tenant
// admins (their own tenant's key) and the platform operator (everything). The
// keyring belongs to the process, not to a service, so the composition root
// (cmd/manushya/app) registers this server wherever it runs the keyring.
package keyadmin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/keyring"
	adminv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/admin/v1"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// Server implements EncryptionService over one keyring.
type Server struct {
	adminv1.UnimplementedEncryptionServiceServer
	kr     *keyring.Keyring
	logger *slog.Logger
	// background outlives the request that starts a pass without waiting.
	background context.Context
	running    atomic.Bool
}

// New returns the server; passes started without wait run under background
// (cancelled when the process stops).
func New(background context.Context, kr *keyring.Keyring, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{kr: kr, logger: logger.With("component", "keyadmin"), background: background}
}

// Register adds EncryptionService to s.
func (s *Server) Register(r grpc.ServiceRegistrar) { adminv1.RegisterEncryptionServiceServer(r, s) }

// caller is the authenticated principal and its tenant.
func caller(ctx context.Context) (*auth.Principal, uuid.UUID, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, uuid.Nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MISSING, "no credential")
	}
	own, _ := uuid.Parse(p.TenantID)
	return p, own, nil
}

// tenantFor resolves the tenant a request names: a tenant admin only ever their
// own (another is NOT_FOUND, so its existence does not leak); the operator any.
func tenantFor(p *auth.Principal, own uuid.UUID, raw string) (uuid.UUID, error) {
	if raw == "" {
		if own == uuid.Nil {
			return uuid.Nil, apierr.Field("tenant_id", "is required: the caller belongs to no tenant")
		}
		return own, nil
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.Field("tenant_id", "must be a UUID")
	}
	if id != own && !p.IsOperator() {
		return uuid.Nil, apierr.NotFound("tenant", raw)
	}
	return id, nil
}

// GetEncryptionStatus implements EncryptionService.
func (s *Server) GetEncryptionStatus(ctx context.Context, req *adminv1.GetEncryptionStatusRequest) (*adminv1.GetEncryptionStatusResponse, error) {
	p, own, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	operator := p.IsOperator()
	resp := &adminv1.GetEncryptionStatusResponse{Keys: []*adminv1.DataKey{}, IdentityKeys: []*adminv1.DataKeyCount{}, AllKeys: []*adminv1.DataKeyCount{}}
	scope := keyring.System()
	if !operator || req.GetTenantId() != "" {
		tenant, err := tenantFor(p, own, req.GetTenantId())
		if err != nil {
			return nil, err
		}
		scope = keyring.Tenant(tenant)
		resp.Scope, resp.TenantId = adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT, tenant.String()
		counts, err := s.kr.IdentityKeyCounts(ctx, tenant)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		for _, c := range counts {
			resp.IdentityKeys = append(resp.IdentityKeys, &adminv1.DataKeyCount{State: stateOf(c.State), Count: c.Count})
		}
	} else {
		resp.Scope = adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM
	}
	versions, err := s.kr.Versions(ctx, scope)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	for _, v := range versions {
		resp.Keys = append(resp.Keys, keyOf(v))
	}
	st, err := s.kr.Status(ctx)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if operator {
		resp.KekId = st.KEK
		for _, c := range st.Keys {
			resp.AllKeys = append(resp.AllKeys, &adminv1.DataKeyCount{State: stateOf(c.State), KekId: c.KEK, Count: c.Count})
		}
	}
	for _, f := range st.Fields {
		resp.Fields = append(resp.Fields, fieldOf(f, operator))
	}
	return resp, nil
}

// RotateDataKey implements EncryptionService.
func (s *Server) RotateDataKey(ctx context.Context, req *adminv1.RotateDataKeyRequest) (*adminv1.RotateDataKeyResponse, error) {
	p, own, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var scope keyring.Scope
	switch req.GetScope() {
	case adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM:
		if !p.IsOperator() {
			return nil, apierr.PermissionDenied("only the platform operator rotates the system data key")
		}
		if req.GetTenantId() != "" {
			return nil, apierr.Field("tenant_id", "must be empty for ENCRYPTION_SCOPE_SYSTEM")
		}
		scope = keyring.System()
	case adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT:
		tenant, err := tenantFor(p, own, req.GetTenantId())
		if err != nil {
			return nil, err
		}
		scope = keyring.Tenant(tenant)
	default:
		return nil, apierr.Field("scope", "must be ENCRYPTION_SCOPE_SYSTEM or ENCRYPTION_SCOPE_TENANT")
	}
	id, err := s.kr.Rotate(ctx, scope)
	if err != nil {
		if errors.Is(err, keyring.ErrDestroyed) {
			return nil, apierr.FailedPrecondition("the data keys of this scope were destroyed (erased); it takes no new key")
		}
		return nil, apierr.Internal(err)
	}
	versions, err := s.kr.Versions(ctx, scope)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	for _, v := range versions {
		if v.KeyID == id {
			return &adminv1.RotateDataKeyResponse{Key: keyOf(v)}, nil
		}
	}
	return nil, apierr.Internal(fmt.Errorf("rotated key %d of %s not found", id, scope))
}

// StartReencryption implements EncryptionService (operator only, by its access
// option).
func (s *Server) StartReencryption(ctx context.Context, req *adminv1.StartReencryptionRequest) (*adminv1.StartReencryptionResponse, error) {
	if !s.running.CompareAndSwap(false, true) {
		return &adminv1.StartReencryptionResponse{Started: false}, nil
	}
	if !req.GetWait() {
		go func() {
			defer s.running.Store(false)
			if _, err := s.kr.Reencrypt(s.background); err != nil && s.background.Err() == nil {
				s.logger.Warn("re-encryption pass started through the API", "err", err)
			}
		}()
		return &adminv1.StartReencryptionResponse{Started: true}, nil
	}
	defer s.running.Store(false)
	rep, err := s.kr.Reencrypt(ctx)
	if err != nil {
		s.logger.WarnContext(ctx, "re-encryption pass started through the API", "err", err)
	}
	resp := &adminv1.StartReencryptionResponse{
		Started: true, Completed: err == nil, KeysRotated: int64(rep.Rotated), KeysRewrapped: int64(rep.Rewrapped),
		KeysDestroyed: int64(rep.Destroyed),
	}
	for _, f := range rep.Fields {
		resp.Fields = append(resp.Fields, &adminv1.FieldEncryption{Field: f.Field, LastPass: passOf(f, true)})
	}
	return resp, nil
}

func stateOf(s string) adminv1.DataKeyState {
	switch s {
	case "primary":
		return adminv1.DataKeyState_DATA_KEY_STATE_PRIMARY
	case "retired":
		return adminv1.DataKeyState_DATA_KEY_STATE_RETIRED
	case "destroyed":
		return adminv1.DataKeyState_DATA_KEY_STATE_DESTROYED
	case "shredded":
		return adminv1.DataKeyState_DATA_KEY_STATE_SHREDDED
	}
	return adminv1.DataKeyState_DATA_KEY_STATE_UNSPECIFIED
}

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil || t.IsZero() {
		return nil
	}
	return timestamppb.New(*t)
}

func keyOf(v keyring.KeyVersion) *adminv1.DataKey {
	k := &adminv1.DataKey{
		Scope: adminv1.EncryptionScope_ENCRYPTION_SCOPE_SYSTEM, KeyId: v.KeyID, State: stateOf(v.State), KekId: v.KEK,
		CreateTime: timestamppb.New(v.CreateTime), RetireTime: ts(v.RetireTime), DestroyTime: ts(v.DestroyTime),
	}
	if v.Scope.Tenant != uuid.Nil {
		k.Scope, k.TenantId = adminv1.EncryptionScope_ENCRYPTION_SCOPE_TENANT, v.Scope.Tenant.String()
	}
	return k
}

// passOf is one pass; row counts cover every tenant, so only the operator sees
// them.
func passOf(p keyring.FieldProgress, counts bool) *adminv1.ReencryptionPass {
	out := &adminv1.ReencryptionPass{StartTime: ts(&p.Start)}
	if !p.Running {
		out.EndTime = ts(&p.End)
	}
	if counts {
		out.Tenants = int64(p.Tenants)
		out.RowsScanned, out.RowsCurrent, out.RowsResealed, out.RowsFailed = p.Scanned, p.Current+p.Changed, p.Resealed, p.Failed
	}
	return out
}

func fieldOf(f keyring.FieldStatus, operator bool) *adminv1.FieldEncryption {
	out := &adminv1.FieldEncryption{Field: f.Field}
	if f.LastPassStart != nil {
		out.LastPass = &adminv1.ReencryptionPass{StartTime: ts(f.LastPassStart), EndTime: ts(f.LastPassEnd)}
		if operator {
			out.LastPass.RowsScanned, out.LastPass.RowsCurrent, out.LastPass.RowsResealed, out.LastPass.RowsFailed = f.Scanned, f.Current, f.Resealed, f.Failed
		}
	}
	if f.Running != nil {
		out.RunningPass = passOf(*f.Running, operator)
	}
	if operator {
		out.HeldKeys = f.HeldKeys
	}
	return out
}
