package memory

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/bus"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/metering"
	embeddingv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/embedding/v1"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

const eventSource = "manushya/memory"

// Event types of the memory service.
const (
	EventCreated  = "memory.created"
	EventUpdated  = "memory.updated"
	EventDeleted  = "memory.deleted"
	EventRestored = "memory.restored"
	EventEmbedded = "memory.embedded"
	EventExpired  = "memory.expired"
)

// Service is the memory domain logic behind the gRPC server.
type Service struct {
	cfg     Config
	store   *store.Store
	logger  *slog.Logger
	metrics *metrics
	usage   *metering.Meter // memory.search usage; nil: searches are not metered
	// keys seals the text of tenants with encrypt_text (nil: no tenant may turn
	// it on, and sealed rows do not open).
	keys keyring.Sealer

	// grace is how long a new embedding job is left to the event-driven embedder
	// before the sweeper takes it (0 without a bus).
	grace float64

	dial      func(string) (grpc.ClientConnInterface, error)
	embedOnce sync.Once
	embedder  embeddingv1.EmbeddingServiceClient
	embedErr  error

	large largeTenants // tenants too large for an exact tenant-wide search (search.go)

	target targetModel // the model memories should end up embedded with (upgrade.go)
}

// eventData is the payload of memory.* events.
type eventData struct {
	MemoryID   string `json:"memory_id"`
	IdentityID string `json:"identity_id"`
	Version    int32  `json:"version,omitempty"`
	Reembed    bool   `json:"reembed,omitempty"`
	Hard       bool   `json:"hard,omitempty"`
	// Purged: the hard delete was the restore window's end, not a caller's.
	Purged bool `json:"purged,omitempty"`
}

func newEvent(m store.Memory, typ string, data eventData) (bus.Event, error) {
	data.MemoryID, data.IdentityID = m.ID.String(), m.IdentityID.String()
	return bus.NewEvent(m.TenantID.String(), typ, eventSource, m.ID.String(), data)
}

// embeddingClient dials the embedding service once.
func (s *Service) embeddingClient() (embeddingv1.EmbeddingServiceClient, error) {
	s.embedOnce.Do(func() {
		if s.dial == nil {
			s.embedErr = errors.New("no embedding service configured")
			return
		}
		conn, err := s.dial("embedding")
		if err != nil {
			s.embedErr = fmt.Errorf("dial embedding service: %w", err)
			return
		}
		s.embedder = embeddingv1.NewEmbeddingServiceClient(conn)
	})
	return s.embedder, s.embedErr
}

func (s *Service) checkText(field, text string) error {
	if strings.TrimSpace(text) == "" {
		return apierr.Field(field, "must not be empty")
	}
	if len(text) > s.cfg.MaxTextBytes {
		return apierr.Field(field, "is longer than %d bytes", s.cfg.MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return apierr.Field(field, "must be valid UTF-8")
	}
	return nil
}

// newMemory validates one create request and resolves its owner.
func (s *Service) newMemory(c *caller, req *memoryv1.CreateMemoryRequest, field string, now time.Time) (sqlc.InsertMemoriesParams, error) {
	var zero sqlc.InsertMemoriesParams
	if err := s.checkText(field+"text", req.GetText()); err != nil {
		return zero, err
	}
	owner, err := parseOptionalID(field+"identity_id", req.GetIdentityId())
	if err != nil {
		return zero, err
	}
	if owner == uuid.Nil {
		owner = c.self
		if owner == uuid.Nil {
			return zero, apierr.Field(field+"identity_id", "is required: the credential has no identity")
		}
	} else if owner != c.self && !c.anyIdentity(true) {
		if err := c.mayActFor(field+"identity_id", owner); err != nil {
			return zero, err
		}
	}
	agent, err := parseOptionalID(field+"agent_id", req.GetAgentId())
	if err != nil {
		return zero, err
	}
	if agent == uuid.Nil && c.p.Kind == "agent" && c.self != uuid.Nil {
		agent = c.self
	}
	md, err := metadataJSON(field+"metadata", req.GetMetadata())
	if err != nil {
		return zero, err
	}
	typ := req.GetType()
	if typ == "" {
		typ = "general"
	}
	id, err := uuid.NewV7()
	if err != nil {
		return zero, err
	}
	p := sqlc.InsertMemoriesParams{
		ID: id, TenantID: c.tenant, IdentityID: owner, Text: req.GetText(), Type: typ, Metadata: md,
		EmbeddingModel: s.cfg.EmbeddingModel, CreateTime: now,
	}
	if agent != uuid.Nil {
		p.AgentID = &agent
	}
	if req.GetSessionId() != "" {
		sid := req.GetSessionId()
		p.SessionID = &sid
	}
	if c.self != uuid.Nil {
		self := c.self
		p.ActorID = &self
	}
	switch req.GetExpiration().(type) {
	case *memoryv1.CreateMemoryRequest_TtlSeconds:
		if req.GetTtlSeconds() < 1 || req.GetTtlSeconds() > 3153600000 {
			return zero, apierr.Field(field+"ttl_seconds", "must be between 1 and 3153600000")
		}
		t := now.Add(time.Duration(req.GetTtlSeconds()) * time.Second)
		p.ExpireTime = &t
	case *memoryv1.CreateMemoryRequest_ExpireTime:
		t := req.GetExpireTime().AsTime()
		if !t.After(now) {
			return zero, apierr.Field(field+"expire_time", "must be in the future")
		}
		p.ExpireTime = &t
	}
	if k := req.GetIdempotencyKey(); k != "" {
		p.IdempotencyKey = &k
		p.RequestHash = requestHash(req)
	}
	return p, nil
}

func requestHash(req *memoryv1.CreateMemoryRequest) []byte {
	r := proto.CloneOf(req)
	r.Wait = false
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	h := sha256.Sum256(b)
	return h[:]
}

// insert writes one memory, its first version, its embedding job, its expiry and
// its memory.created event in tx; with enc its text (and its version's) is
// sealed. A reused idempotency key returns the first memory (created=false).
func (s *Service) insert(ctx context.Context, tx *store.Tx, p sqlc.InsertMemoriesParams, enc bool) (store.Memory, bool, error) {
	if p.IdempotencyKey != nil {
		prev, err := tx.FindByIdempotencyKey(ctx, sqlc.FindByIdempotencyKeyParams{
			TenantID: p.TenantID, IdentityID: p.IdentityID, IdempotencyKey: p.IdempotencyKey,
		})
		switch {
		case err == nil:
			if !bytes.Equal(prev.RequestHash, p.RequestHash) {
				return store.Memory{}, false, apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_CONFLICT,
					"idempotency_key %q was used for a different request", *p.IdempotencyKey)
			}
			m, err := tx.Get(ctx, prev.ID, false)
			if err == nil {
				err = s.open(ctx, &m)
			}
			return m, false, err
		case !errors.Is(store.MapErr(err), store.ErrNotFound):
			return store.Memory{}, false, err
		}
	}
	ms, err := s.insertMany(ctx, tx, []sqlc.InsertMemoriesParams{p}, enc)
	if err != nil {
		return store.Memory{}, false, err
	}
	return ms[0], true, nil
}

// newMemoryRows is what storing one new memory writes besides its embedding
// job and expiry: its row, its first version, and its memory.created event.
type newMemoryRows struct {
	row     sqlc.InsertMemoriesParams
	version sqlc.InsertVersionParams
	m       store.Memory
	event   bus.Event
}

// prepareNew builds the rows of a new memory; with enc its text (and its
// version's) is sealed.
func (s *Service) prepareNew(ctx context.Context, p sqlc.InsertMemoriesParams, enc bool) (newMemoryRows, error) {
	row := p
	if enc {
		sealed, err := s.seal(ctx, textRef(p.TenantID, p.IdentityID, p.ID), p.Text)
		if err != nil {
			return newMemoryRows{}, err
		}
		row.Text, row.TextSealed = "", sealed
	}
	v, err := s.versionParams(ctx, enc, p.IdentityID, sqlc.InsertVersionParams{
		MemoryID: p.ID, Version: 1, TenantID: p.TenantID, Text: p.Text, Type: p.Type, Metadata: p.Metadata,
		ExpireTime: p.ExpireTime, ChangedFields: []string{}, ActorID: p.ActorID, CreateTime: p.CreateTime,
	})
	if err != nil {
		return newMemoryRows{}, err
	}
	m := store.Memory{
		ID: p.ID, TenantID: p.TenantID, IdentityID: p.IdentityID, AgentID: p.AgentID, SessionID: p.SessionID,
		Text: p.Text, Type: p.Type, Metadata: p.Metadata, Version: 1, EmbeddingModel: p.EmbeddingModel,
		EmbeddingStatus: store.StatusPending, ExpireTime: p.ExpireTime, CreateTime: p.CreateTime, UpdateTime: p.CreateTime,
		TextSealed: row.TextSealed,
	}
	ev, err := newEvent(m, EventCreated, eventData{Version: 1, Reembed: true})
	if err != nil {
		return newMemoryRows{}, err
	}
	return newMemoryRows{row: row, version: v, m: m, event: ev}, nil
}

// insertMany writes new memories, their first versions, embedding jobs and
// expiries and their memory.created events in tx, each kind of row for all of
// them in one round trip (sqlc batches): a bulk create of 1,000 memories paid
// 6,000 round trips one by one. The first failure fails the lot (a caller
// storing many runs it in a savepoint). Idempotency keys are the caller's to
// look up (insert); a reused one fails on the unique index.
func (s *Service) insertMany(ctx context.Context, tx *store.Tx, ps []sqlc.InsertMemoriesParams, enc bool) ([]store.Memory, error) {
	rows := make([]sqlc.InsertMemoriesParams, len(ps))
	versions := make([]sqlc.InsertVersionsParams, len(ps))
	jobs := make([]sqlc.EnqueueEmbeddingsParams, len(ps))
	var expirations []sqlc.SetExpirationsParams
	ms := make([]store.Memory, len(ps))
	events := make([]bus.Event, len(ps))
	for i, p := range ps {
		n, err := s.prepareNew(ctx, p, enc)
		if err != nil {
			return nil, err
		}
		rows[i], versions[i], ms[i], events[i] = n.row, sqlc.InsertVersionsParams(n.version), n.m, n.event
		jobs[i] = sqlc.EnqueueEmbeddingsParams{MemoryID: p.ID, TenantID: p.TenantID, GraceSeconds: s.grace}
		if p.ExpireTime != nil {
			expirations = append(expirations, sqlc.SetExpirationsParams{MemoryID: p.ID, TenantID: p.TenantID, ExpireTime: *p.ExpireTime})
		}
	}
	var first error
	fail := func(_ int, err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	tx.InsertMemories(ctx, rows).Exec(fail)
	if first == nil {
		tx.InsertVersions(ctx, versions).Exec(fail)
	}
	if first == nil {
		tx.EnqueueEmbeddings(ctx, jobs).Exec(fail)
	}
	if first == nil && len(expirations) > 0 {
		tx.SetExpirations(ctx, expirations).Exec(fail)
	}
	if first != nil {
		return nil, first
	}
	return ms, tx.Emit(ctx, events...)
}

// Create stores one memory.
func (s *Service) Create(ctx context.Context, req *memoryv1.CreateMemoryRequest) (*memoryv1.Memory, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	p, err := s.newMemory(c, req, "", time.Now().UTC().Truncate(time.Microsecond))
	if err != nil {
		return nil, err
	}
	var m store.Memory
	create := func(tx *store.Tx) error {
		enc, err := s.encrypting(ctx, tx, c.tenant)
		if err != nil {
			return err
		}
		m, _, err = s.insert(ctx, tx, p, enc)
		return err
	}
	err = s.store.InTenant(ctx, c.tenant, create)
	if errors.Is(err, store.ErrAlreadyExists) && p.IdempotencyKey != nil {
		// A concurrent retry won the race for the key: answer as the retry would.
		err = s.store.InTenant(ctx, c.tenant, create)
	}
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	if req.GetWait() && m.EmbeddingStatus == store.StatusPending {
		m = s.wait(ctx, c.tenant, m)
	}
	return toProto(m)
}

// wait polls until m's embedding is no longer pending, bounded by the wait limit;
// the memory is returned as last read, still pending if the limit passed.
func (s *Service) wait(ctx context.Context, tenant uuid.UUID, m store.Memory) store.Memory {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitLimit)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return m
		case <-time.After(delay):
		}
		var cur store.Memory
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			var err error
			cur, err = tx.Get(ctx, m.ID, false)
			return err
		})
		if err != nil {
			return m
		}
		if s.open(ctx, &cur) != nil {
			return m
		}
		m = cur
		if m.EmbeddingStatus != store.StatusPending {
			return m
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// visible loads a memory the caller may see: live, or only not expired with
// includeDeleted. Anything else is NOT_FOUND.
func (s *Service) visible(ctx context.Context, tx *store.Tx, c *caller, id uuid.UUID, includeDeleted, write, forUpdate bool) (store.Memory, error) {
	m, err := tx.Get(ctx, id, forUpdate)
	if err != nil {
		return store.Memory{}, err
	}
	expired := m.ExpireTime != nil && !m.ExpireTime.After(time.Now())
	if expired || (m.DeleteTime != nil && !includeDeleted) {
		return store.Memory{}, store.ErrNotFound
	}
	if ok, err := c.canSee(m, write); err != nil || !ok {
		return store.Memory{}, cmp.Or(err, store.ErrNotFound)
	}
	return m, s.open(ctx, &m)
}

// Get returns one memory.
func (s *Service) Get(ctx context.Context, req *memoryv1.GetMemoryRequest) (*memoryv1.Memory, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var m store.Memory
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		m, err = s.visible(ctx, tx, c, id, req.GetIncludeDeleted(), false, false)
		return err
	})
	if err != nil {
		return nil, s.mapErr(err, req.GetId())
	}
	return toProto(m)
}

var updatable = []string{"text", "type", "metadata", "expire_time"}

// Update changes the fields of the mask and records a new version.
func (s *Service) Update(ctx context.Context, req *memoryv1.UpdateMemoryRequest) (*memoryv1.Memory, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetMemory()
	id, err := parseID("memory.id", in.GetId())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		if in.GetText() != "" {
			paths = append(paths, "text")
		}
		if in.GetType() != "" {
			paths = append(paths, "type")
		}
		if in.GetMetadata() != nil {
			paths = append(paths, "metadata")
		}
		if in.GetExpireTime() != nil {
			paths = append(paths, "expire_time")
		}
		if len(paths) == 0 {
			return nil, apierr.Field("update_mask", "names no field and the memory sets none of text, type, metadata, expire_time")
		}
	}
	for i, p := range paths {
		if !slices.Contains(updatable, p) {
			return nil, apierr.Field(fmt.Sprintf("update_mask.paths[%d]", i), "%q is not updatable (text, type, metadata, expire_time)", p)
		}
	}
	if slices.Contains(paths, "text") {
		if err := s.checkText("memory.text", in.GetText()); err != nil {
			return nil, err
		}
	}
	var newMD []byte
	if slices.Contains(paths, "metadata") {
		if newMD, err = metadataJSON("memory.metadata", in.GetMetadata()); err != nil {
			return nil, err
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if slices.Contains(paths, "expire_time") && in.GetExpireTime() != nil && !in.GetExpireTime().AsTime().After(now) {
		return nil, apierr.Field("memory.expire_time", "must be in the future")
	}

	var m store.Memory
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		cur, err := s.visible(ctx, tx, c, id, false, true, true)
		if err != nil {
			return err
		}
		if ev := req.GetExpectedVersion(); ev != 0 && ev != cur.Version {
			return apierr.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
				"memory %s is at version %d, not the expected %d", id, cur.Version, ev)
		}
		next := cur
		var changed []string
		for _, p := range paths {
			switch p {
			case "text":
				if in.GetText() != cur.Text {
					next.Text = in.GetText()
					changed = append(changed, p)
				}
			case "type":
				t := in.GetType()
				if t == "" {
					t = "general"
				}
				if t != cur.Type {
					next.Type = t
					changed = append(changed, p)
				}
			case "metadata":
				md := newMD
				if !req.GetReplaceMetadata() {
					if md, err = mergeMetadata(cur.Metadata, newMD); err != nil {
						return err
					}
				}
				if !jsonEqual(md, cur.Metadata) {
					next.Metadata = md
					changed = append(changed, p)
				}
			case "expire_time":
				var t *time.Time
				if in.GetExpireTime() != nil {
					x := in.GetExpireTime().AsTime()
					t = &x
				}
				if !timeEqual(t, cur.ExpireTime) {
					next.ExpireTime = t
					changed = append(changed, p)
				}
			}
		}
		if len(changed) == 0 {
			m = cur
			return nil
		}
		reembed := slices.Contains(changed, "text")
		enc, err := s.encrypting(ctx, tx, c.tenant)
		if err != nil {
			return err
		}
		// The text is stored in the form the tenant's setting asks for now; an
		// unchanged sealed text keeps its ciphertext (the embedder's guard
		// compares it).
		st := stored{text: next.Text}
		switch {
		case enc && !reembed && cur.TextSealed != nil:
			st = stored{sealed: cur.TextSealed}
		case enc:
			if st, err = s.storeText(ctx, true, next); err != nil {
				return err
			}
		}
		next.TextSealed = st.sealed
		var actor *uuid.UUID
		if c.self != uuid.Nil {
			self := c.self
			actor = &self
		}
		if err := tx.UpdateContent(ctx, sqlc.UpdateContentParams{
			ID: id, Text: st.text, Type: next.Type, Metadata: next.Metadata, ExpireTime: next.ExpireTime,
			ActorID: actor, UpdateTime: now, Reembed: reembed, EmbeddingModel: s.cfg.EmbeddingModel, TextSealed: st.sealed,
		}); err != nil {
			return err
		}
		next.Version = cur.Version + 1
		next.UpdateTime = now
		v, err := s.versionParams(ctx, enc, cur.IdentityID, sqlc.InsertVersionParams{
			MemoryID: id, Version: next.Version, TenantID: c.tenant, Text: next.Text, Type: next.Type,
			Metadata: next.Metadata, ExpireTime: next.ExpireTime, ChangedFields: changed, ActorID: actor, CreateTime: now,
		})
		if err != nil {
			return err
		}
		if err := tx.InsertVersion(ctx, v); err != nil {
			return err
		}
		if reembed {
			next.EmbeddingStatus, next.EmbeddingError, next.EmbeddingModel = store.StatusPending, "", s.cfg.EmbeddingModel
			if err := tx.EnqueueEmbedding(ctx, sqlc.EnqueueEmbeddingParams{MemoryID: id, TenantID: c.tenant, GraceSeconds: s.grace}); err != nil {
				return err
			}
		}
		if slices.Contains(changed, "expire_time") {
			if next.ExpireTime != nil {
				err = tx.SetExpiration(ctx, sqlc.SetExpirationParams{MemoryID: id, TenantID: c.tenant, ExpireTime: *next.ExpireTime})
			} else {
				err = tx.ClearExpiration(ctx, id)
			}
			if err != nil {
				return err
			}
		}
		ev, err := newEvent(next, EventUpdated, eventData{Version: next.Version, Reembed: reembed})
		if err != nil {
			return err
		}
		m = next
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, s.mapErr(err, in.GetId())
	}
	if req.GetWait() && m.EmbeddingStatus == store.StatusPending {
		m = s.wait(ctx, c.tenant, m)
	}
	return toProto(m)
}

// deleteOne deletes (soft or hard) one memory the caller may change.
func (s *Service) deleteOne(ctx context.Context, tx *store.Tx, c *caller, id uuid.UUID, hard bool) (store.Memory, error) {
	m, err := tx.Get(ctx, id, true)
	if err != nil {
		return store.Memory{}, err
	}
	expired := m.ExpireTime != nil && !m.ExpireTime.After(time.Now())
	if !hard && (m.DeleteTime != nil || expired) {
		return store.Memory{}, store.ErrNotFound
	}
	if ok, err := c.canSee(m, true); err != nil || !ok {
		return store.Memory{}, cmp.Or(err, store.ErrNotFound)
	}
	if !hard {
		// The soft-deleted memory is returned; a hard delete returns nothing and
		// must work for a text that no longer opens (an erased identity's).
		if err := s.open(ctx, &m); err != nil {
			return store.Memory{}, err
		}
	}
	if hard {
		if _, err := tx.HardDelete(ctx, id); err != nil {
			return store.Memory{}, err
		}
	} else {
		now := time.Now().UTC().Truncate(time.Microsecond)
		if _, err := tx.SoftDelete(ctx, sqlc.SoftDeleteParams{ID: id, DeleteTime: &now}); err != nil {
			return store.Memory{}, err
		}
		// The restore window starts: the retention sweeper purges it at its end.
		if err := tx.RecordDeletion(ctx, sqlc.RecordDeletionParams{MemoryID: id, TenantID: m.TenantID, DeleteTime: now}); err != nil {
			return store.Memory{}, err
		}
		m.DeleteTime = &now
	}
	ev, err := newEvent(m, EventDeleted, eventData{Version: m.Version, Hard: hard})
	if err != nil {
		return store.Memory{}, err
	}
	return m, tx.Emit(ctx, ev)
}

// Delete soft- or hard-deletes one memory; the result is nil after a hard delete.
func (s *Service) Delete(ctx context.Context, req *memoryv1.DeleteMemoryRequest) (*memoryv1.Memory, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var m store.Memory
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		m, err = s.deleteOne(ctx, tx, c, id, req.GetHard())
		return err
	})
	if err != nil {
		return nil, s.mapErr(err, req.GetId())
	}
	if req.GetHard() {
		return nil, nil
	}
	return toProto(m)
}

// Restore brings a soft-deleted memory back.
func (s *Service) Restore(ctx context.Context, req *memoryv1.RestoreMemoryRequest) (*memoryv1.Memory, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	var m store.Memory
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		m, err = s.visible(ctx, tx, c, id, true, true, true)
		if err != nil {
			return err
		}
		if m.DeleteTime == nil {
			return apierr.FailedPrecondition("memory %s is not deleted", id)
		}
		if ended, err := tx.RestoreWindowEnded(ctx, id); err != nil || ended {
			return cmp.Or(err, error(apierr.FailedPrecondition(
				"the restore window of memory %s has ended (memory settings restore_window_days); it is about to be purged", id)))
		}
		if _, err := tx.Restore(ctx, id); err != nil {
			return err
		}
		if err := tx.ForgetDeletion(ctx, id); err != nil {
			return err
		}
		m.DeleteTime = nil
		ev, err := newEvent(m, EventRestored, eventData{Version: m.Version})
		if err != nil {
			return err
		}
		return tx.Emit(ctx, ev)
	})
	if err != nil {
		return nil, s.mapErr(err, req.GetId())
	}
	return toProto(m)
}

// mapErr turns store sentinels into API errors; id names the memory.
func (s *Service) mapErr(err error, id string) error {
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return apierr.NotFound("memory", id)
	case errors.Is(err, errNoKeyring):
		return apierr.FailedPrecondition("%v", errNoKeyring)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return apierr.Internal(err)
}

func jsonEqual(a, b []byte) bool {
	x, err1 := structFromJSON(a)
	y, err2 := structFromJSON(b)
	return err1 == nil && err2 == nil && proto.Equal(x, y)
}

func timeEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
