package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/audit"
	"github.com/manushya-ai/manushya/pkg/auth"
	eventsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/events/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	usagev1 "github.com/manushya-ai/manushya/pkg/pb/manushya/usage/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// The data export (ExportService): everything the suite holds about one identity,
// as JSON lines ({"kind", "data"}) or a zip archive holding them, signed with the
// token-signing key. The identity service reads its own tables; the memories, the
// audit entries and the usage it asks the services that hold them for, over gRPC
// with its service credential (pkg/auth serviceScopes), page by page, so an
// export of any size streams without being held in memory.

// ExportFormatVersion is the format_version of the export header: it changes
// when a record's shape changes in a way readers must know about.
const ExportFormatVersion = 1

// Record kinds of an export, in the order they appear.
const (
	ExportKindHeader        = "export"
	ExportKindIdentity      = "identity"
	ExportKindSession       = "session"
	ExportKindAPIKey        = "api_key"
	ExportKindMFA           = "mfa"
	ExportKindSSOLink       = "sso_link"
	ExportKindInvitation    = "invitation"
	ExportKindMemory        = "memory"
	ExportKindMemoryVersion = "memory_version"
	ExportKindAuditEntry    = "audit_entry"
	ExportKindUsageEvent    = "usage_event"
	ExportKindUsageDaily    = "usage_daily"
	ExportKindSummary       = "summary"
	ExportKindSignature     = "signature"
)

// exportPage is the page size asked of the other services.
const exportPage = 500

// exportCallTimeout bounds one page request to another service.
const exportCallTimeout = 30 * time.Second

// exportSources are the clients of the services holding the rest of an
// identity's data, dialled on first use.
type exportSources struct {
	dial func(service string) (grpc.ClientConnInterface, error)

	once   sync.Once
	err    error
	memory memoryv1.MemoryServiceClient
	audit  eventsv1.AuditServiceClient
	usage  usagev1.UsageServiceClient
}

func (e *exportSources) clients() error {
	e.once.Do(func() {
		dial := func(name string) grpc.ClientConnInterface {
			if e.err != nil {
				return nil
			}
			conn, err := e.dial(name)
			if err != nil {
				e.err = fmt.Errorf("dial %s service: %w", name, err)
			}
			return conn
		}
		mem, ev, use := dial("memory"), dial("webhooks"), dial("usage")
		if e.err == nil {
			e.memory = memoryv1.NewMemoryServiceClient(mem)
			e.audit = eventsv1.NewAuditServiceClient(ev)
			e.usage = usagev1.NewUsageServiceClient(use)
		}
	})
	return e.err
}

// initExport keeps the dialler for the export's remote sources. Without one
// (tests of this package alone), exports hold the identity service's data only,
// and their header says so (sources).
func (s *Service) initExport(deps Deps) {
	if deps.Dial != nil {
		s.export = &exportSources{dial: deps.Dial}
	}
}

// exportServer implements ExportService.
type exportServer struct {
	identityv1.UnimplementedExportServiceServer
	svc *Service
}

func (s *exportServer) ExportIdentity(req *identityv1.ExportIdentityRequest, stream grpc.ServerStreamingServer[httpbody.HttpBody]) error {
	ctx := stream.Context()
	tenant, _, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return err
	}
	return s.svc.exportIdentity(stream, tenant, id, req.GetFormat(), false)
}

func (s *exportServer) ExportMe(req *identityv1.ExportMeRequest, stream grpc.ServerStreamingServer[httpbody.HttpBody]) error {
	ctx := stream.Context()
	tenant, p, err := tenantOf(ctx)
	if err != nil {
		return err
	}
	id, err := uuid.Parse(p.IdentityID)
	if err != nil {
		return apierr.PermissionDenied("the credential has no identity to export")
	}
	return s.svc.exportIdentity(stream, tenant, id, req.GetFormat(), true)
}

// exportLocalData is what the identity service itself holds about an identity.
type exportLocalData struct {
	ident      sqlc.IdentityIdentity
	profile    *identityv1.Identity // ident as the API shows it, sensitive claims opened
	sessions   []sqlc.IdentitySession
	keys       []sqlc.IdentityApiKey
	totp       []sqlc.ExportTOTPRow
	backup     sqlc.ExportBackupCodesRow
	ssoLinks   []sqlc.ExportSsoLinksRow
	invitation []sqlc.IdentityInvitation
}

func (s *Service) loadExportData(ctx context.Context, tenant, id uuid.UUID) (exportLocalData, error) {
	var d exportLocalData
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		// A soft-deleted identity is still held, so it is still exported.
		if d.ident, err = tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: id, IncludeDeleted: true}); err != nil {
			return err
		}
		if d.profile, err = identityToProto(d.ident); err != nil {
			return err
		}
		// Sensitive claims live sealed beside the row; the person gets them back.
		if err := s.fillSensitiveClaims(ctx, tx, d.profile); err != nil {
			return fmt.Errorf("export sensitive claims: %w", err)
		}
		if d.sessions, err = tx.ExportSessions(ctx, id); err != nil {
			return fmt.Errorf("export sessions: %w", err)
		}
		if d.keys, err = tx.ExportAPIKeys(ctx, id); err != nil {
			return fmt.Errorf("export api keys: %w", err)
		}
		if d.totp, err = tx.ExportTOTP(ctx, id); err != nil {
			return fmt.Errorf("export mfa: %w", err)
		}
		if d.backup, err = tx.ExportBackupCodes(ctx, id); err != nil {
			return fmt.Errorf("export backup codes: %w", err)
		}
		if d.ssoLinks, err = tx.ExportSsoLinks(ctx, id); err != nil {
			return fmt.Errorf("export sso links: %w", err)
		}
		d.invitation, err = tx.ExportInvitations(ctx, sqlc.ExportInvitationsParams{IdentityID: id, Email: d.ident.ExternalID})
		if err != nil {
			return fmt.Errorf("export invitations: %w", err)
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return d, apierr.NotFound("identity", id.String())
	}
	return d, err
}

// exportIdentity streams the export of one identity of tenant and records it in
// the audit log, whatever its outcome.
func (s *Service) exportIdentity(stream grpc.ServerStreamingServer[httpbody.HttpBody], tenant, id uuid.UUID, format identityv1.ExportFormat, self bool) error {
	ctx := stream.Context()
	res, err := s.streamExport(stream, tenant, id, format, self)
	s.recordExport(ctx, tenant, id, format, self, res, err)
	return err
}

// exportResult is what the audit record says of a finished export.
type exportResult struct {
	sha256 string
	counts map[string]int
}

func (s *Service) streamExport(stream grpc.ServerStreamingServer[httpbody.HttpBody], tenant, id uuid.UUID, format identityv1.ExportFormat, self bool) (exportResult, error) {
	ctx := stream.Context()
	if err := s.tokens.ready(ctx); err != nil {
		return exportResult{}, err
	}
	d, err := s.loadExportData(ctx, tenant, id)
	if err != nil {
		return exportResult{}, err
	}
	if !self {
		// Tenant policies that read identities' attributes decide here too; a
		// denial reads as NOT_FOUND, as for GetIdentity.
		if err := checkIdentityPolicy(ctx, d.ident, true); err != nil {
			return exportResult{}, err
		}
	}
	if s.export != nil {
		if err := s.export.clients(); err != nil {
			return exportResult{}, apierr.Internal(err)
		}
	}

	now := time.Now().UTC()
	zipped := format == identityv1.ExportFormat_EXPORT_FORMAT_ZIP
	name := fmt.Sprintf("manushya-export-%s-%s", id, now.Format("20060102T150405Z"))
	if zipped {
		name += ".zip"
	} else {
		name += ".jsonl"
	}
	if err := stream.SendHeader(metadata.Pairs("content-disposition", `attachment; filename="`+name+`"`)); err != nil {
		return exportResult{}, err
	}
	w, err := newExportWriter(stream.Send, zipped, now)
	if err != nil {
		return exportResult{}, apierr.Internal(err)
	}

	sources := []string{"identity"}
	if s.export != nil {
		sources = append(sources, "memory", "audit", "usage")
	}
	err = w.record(ExportKindHeader, map[string]any{
		"identity_id": id.String(), "tenant_id": tenant.String(), "generated_at": now.Format(time.RFC3339Nano),
		"format_version": ExportFormatVersion, "sources": sources,
	})
	if err == nil {
		err = s.writeLocal(w, d, now)
	}
	if err == nil && s.export != nil {
		remote := auth.AsService(ctx, "identity", tenant.String())
		err = s.export.writeRemote(remote, w, d.ident)
	}
	if err == nil {
		err = w.record(ExportKindSummary, map[string]any{"counts": w.counts, "records": w.records})
	}
	if err != nil {
		return exportResult{counts: w.counts}, exportErr(err)
	}
	sum, err := w.finish(s.signExport(tenant, id, now))
	return exportResult{sha256: sum, counts: w.counts}, exportErr(err)
}

// exportErr passes API errors through. A remote source that is down or busy
// keeps its code (the export can be retried); any other failure of a source is
// the deployment's fault, not the caller's: INTERNAL, logged by the server.
func exportErr(err error) error {
	var ae *apierr.Error
	if err == nil || errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
			return status.Error(st.Code(), "export incomplete: "+err.Error())
		}
	}
	return apierr.Internal(err)
}

// writeLocal writes the identity service's own records.
func (s *Service) writeLocal(w *exportWriter, d exportLocalData, now time.Time) error {
	if err := w.record(ExportKindIdentity, d.profile); err != nil {
		return err
	}
	for _, r := range d.sessions {
		if err := w.record(ExportKindSession, sessionToProto(r, "")); err != nil {
			return err
		}
	}
	for _, k := range d.keys {
		// The API's view of a key: its prefix and metadata, never its hash.
		if err := w.record(ExportKindAPIKey, apiKeyToProto(k, now)); err != nil {
			return err
		}
	}
	mfa := map[string]any{
		"totp_enabled": false, "backup_codes_total": d.backup.Total, "backup_codes_unused": d.backup.Unused,
	}
	for _, t := range d.totp {
		mfa["totp_enabled"] = t.EnableTime != nil
		mfa["totp_create_time"] = t.CreateTime.UTC().Format(time.RFC3339Nano)
		if t.EnableTime != nil {
			mfa["totp_enable_time"] = t.EnableTime.UTC().Format(time.RFC3339Nano)
		} else {
			mfa["totp_setup_expire_time"] = t.SetupExpireTime.UTC().Format(time.RFC3339Nano)
		}
	}
	if err := w.record(ExportKindMFA, mfa); err != nil {
		return err
	}
	for _, l := range d.ssoLinks {
		if err := w.record(ExportKindSSOLink, map[string]any{
			"provider_id": l.ProviderID.String(), "provider_name": l.ProviderName, "subject": l.Subject, "email": l.Email,
			"create_time":     l.CreateTime.UTC().Format(time.RFC3339Nano),
			"last_login_time": l.LastLoginTime.UTC().Format(time.RFC3339Nano),
		}); err != nil {
			return err
		}
	}
	for _, r := range d.invitation {
		inv, err := invitationToProto(r)
		if err != nil {
			return err
		}
		if err := w.record(ExportKindInvitation, inv); err != nil {
			return err
		}
	}
	return nil
}

// writeRemote writes the records the other services hold: the identity's
// memories (owned, or kept as agent) with their versions, the audit entries about
// it (as the resource acted on, and as actor) and its usage.
func (e *exportSources) writeRemote(ctx context.Context, w *exportWriter, ident sqlc.IdentityIdentity) error {
	id := ident.ID.String()
	if err := e.writeMemories(ctx, w, &memoryv1.ListMemoriesRequest{IdentityId: id, IncludeDeleted: true}, ""); err != nil {
		return err
	}
	// Memories it keeps as agent for another owner; its own were written above.
	if err := e.writeMemories(ctx, w, &memoryv1.ListMemoriesRequest{AgentId: id, IncludeDeleted: true}, id); err != nil {
		return err
	}
	if err := e.writeAudit(ctx, w, id); err != nil {
		return err
	}
	return e.writeUsage(ctx, w, ident)
}

func exportCall[Req, Resp any](ctx context.Context, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, exportCallTimeout)
	defer cancel()
	return fn(ctx, req)
}

func (e *exportSources) writeMemories(ctx context.Context, w *exportWriter, req *memoryv1.ListMemoriesRequest, skipOwner string) error {
	req.PageSize = exportPage
	for {
		resp, err := exportCall(ctx, e.memory.ListMemories, req)
		if err != nil {
			return fmt.Errorf("memory service: list memories: %w", err)
		}
		for _, m := range resp.GetMemories() {
			if skipOwner != "" && m.GetIdentityId() == skipOwner {
				continue
			}
			if err := w.record(ExportKindMemory, m); err != nil {
				return err
			}
			// A memory never edited is its only version: its history adds
			// nothing but a request per memory, so it is asked for only when
			// there is one.
			if m.GetVersion() > 1 {
				if err := e.writeVersions(ctx, w, m.GetId()); err != nil {
					return err
				}
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.GetPageToken() == "" {
			return nil
		}
	}
}

func (e *exportSources) writeVersions(ctx context.Context, w *exportWriter, memoryID string) error {
	req := &memoryv1.ListMemoryVersionsRequest{Id: memoryID, PageSize: exportPage}
	for {
		resp, err := exportCall(ctx, e.memory.ListMemoryVersions, req)
		if err != nil {
			return fmt.Errorf("memory service: list versions of memory %s: %w", memoryID, err)
		}
		for _, v := range resp.GetVersions() {
			if err := w.record(ExportKindMemoryVersion, v); err != nil {
				return err
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.GetPageToken() == "" {
			return nil
		}
	}
}

func (e *exportSources) writeAudit(ctx context.Context, w *exportWriter, id string) error {
	// Entries about the identity first; their ids are kept so the entries it both
	// made and was the subject of (updating itself) appear once. That set is
	// bounded by what was done to one identity; the actor's entries are streamed.
	seen := map[string]bool{}
	list := func(req *eventsv1.ListAuditEntriesRequest, remember bool) error {
		req.PageSize = exportPage
		for {
			resp, err := exportCall(ctx, e.audit.ListAuditEntries, req)
			if err != nil {
				return fmt.Errorf("audit log: list entries: %w", err)
			}
			for _, a := range resp.GetEntries() {
				if seen[a.GetId()] {
					continue
				}
				if remember {
					seen[a.GetId()] = true
				}
				// Entries written before a redaction rule existed (the otpauth
				// URI of an MFA enrolment) get it now.
				a.Before, a.After = exportRedacted(a.GetBefore()), exportRedacted(a.GetAfter())
				if err := w.record(ExportKindAuditEntry, a); err != nil {
					return err
				}
			}
			if req.PageToken = resp.GetNextPageToken(); req.GetPageToken() == "" {
				return nil
			}
		}
	}
	if err := list(&eventsv1.ListAuditEntriesRequest{ResourceId: id}, true); err != nil {
		return err
	}
	return list(&eventsv1.ListAuditEntriesRequest{ActorIdentityId: id}, false)
}

// exportRedacted applies the audit log's redaction to a recorded body.
func exportRedacted(body *structpb.Struct) *structpb.Struct {
	if body == nil {
		return nil
	}
	raw, err := protojson.Marshal(body)
	if err != nil {
		return nil
	}
	out := &structpb.Struct{}
	if err := protojson.Unmarshal(audit.Redact(raw), out); err != nil {
		return nil
	}
	return out
}

func (e *exportSources) writeUsage(ctx context.Context, w *exportWriter, ident sqlc.IdentityIdentity) error {
	id := ident.ID.String()
	ev := &usagev1.ListUsageEventsRequest{IdentityId: id, PageSize: exportPage}
	for {
		resp, err := exportCall(ctx, e.usage.ListUsageEvents, ev)
		if err != nil {
			return fmt.Errorf("usage service: list events: %w", err)
		}
		for _, u := range resp.GetEvents() {
			if err := w.record(ExportKindUsageEvent, u); err != nil {
				return err
			}
		}
		if ev.PageToken = resp.GetNextPageToken(); ev.GetPageToken() == "" {
			break
		}
	}
	// The daily rollups outlive the raw events (kept 35 days): every day since
	// the identity was created.
	daily := &usagev1.ListDailyUsageRequest{
		IdentityId: id, PageSize: exportPage,
		StartDate: ident.CreateTime.UTC().Format(time.DateOnly), EndDate: time.Now().UTC().Format(time.DateOnly),
	}
	for {
		resp, err := exportCall(ctx, e.usage.ListDailyUsage, daily)
		if err != nil {
			return fmt.Errorf("usage service: list daily usage: %w", err)
		}
		for _, u := range resp.GetDailyUsage() {
			if err := w.record(ExportKindUsageDaily, u); err != nil {
				return err
			}
		}
		if daily.PageToken = resp.GetNextPageToken(); daily.GetPageToken() == "" {
			return nil
		}
	}
}

// recordExport adds the export to the tenant's audit log. ExportService methods
// stream, and the request audit interceptor sees only unary calls (and leaves
// reads alone), but handing out a person's data is worth a record: who exported
// whose data, in which format, and the digest of what was handed out.
func (s *Service) recordExport(ctx context.Context, tenant, id uuid.UUID, format identityv1.ExportFormat, self bool, res exportResult, err error) {
	if s.audit == nil {
		return
	}
	rec := audit.FromRequest(ctx, tenant.String(), "identity.export")
	rec.ResourceType, rec.ResourceID = "identity", id.String()
	detail := map[string]any{"format": strings.ToLower(strings.TrimPrefix(format.String(), "EXPORT_FORMAT_")), "self": self}
	if res.sha256 != "" {
		detail["sha256"] = res.sha256
	}
	if len(res.counts) > 0 {
		detail["counts"] = res.counts
	}
	rec.After = audit.JSON(detail)
	if err != nil {
		rec.Result = audit.ResultOf(err)
		rec.ErrorReason = int32(apierr.ReasonOf(err))
	}
	audit.Emit(ctx, s.audit, rec)
}
