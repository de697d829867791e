package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/manushya-ai/manushya/pkg/apierr"
	memoryv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/memory/v1"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// Defaults of a tenant that never changed its settings.
const (
	defaultRestoreWindowDays = 30
	maxRestoreWindowDays     = 3650
)

var settingsPaths = []string{"encrypt_text", "restore_window_days"}

// loadSettings returns the tenant's settings (the defaults without a row) and
// whether a text conversion is under way.
func loadSettings(ctx context.Context, tx *store.Tx, tenant uuid.UUID) (sqlc.MemorySetting, bool, error) {
	cur, err := tx.GetSettings(ctx, tenant)
	if errors.Is(store.MapErr(err), store.ErrNotFound) {
		cur, err = sqlc.MemorySetting{TenantID: tenant, RestoreWindowDays: defaultRestoreWindowDays}, nil
	}
	if err != nil {
		return cur, false, err
	}
	moving, err := tx.ConversionPending(ctx, tenant)
	return cur, moving, err
}

func settingsToProto(s sqlc.MemorySetting, moving bool) *memoryv1.MemorySettings {
	out := &memoryv1.MemorySettings{
		EncryptText: s.EncryptText, RestoreWindowDays: s.RestoreWindowDays, EncryptionInProgress: moving,
	}
	if !s.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(s.UpdateTime)
	}
	return out
}

// GetSettings returns the caller's tenant's memory settings.
func (s *Service) GetSettings(ctx context.Context, _ *memoryv1.GetMemorySettingsRequest) (*memoryv1.MemorySettings, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	var out *memoryv1.MemorySettings
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		cur, moving, err := loadSettings(ctx, tx, c.tenant)
		out = settingsToProto(cur, moving)
		return err
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	return out, nil
}

// UpdateSettings changes the fields of the mask. A change of encrypt_text
// queues the tenant for the encryption sweeper, which moves the existing rows;
// a change of the restore window reschedules the purges of the memories deleted
// already.
func (s *Service) UpdateSettings(ctx context.Context, req *memoryv1.UpdateMemorySettingsRequest) (*memoryv1.MemorySettings, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetSettings()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		if in.GetEncryptText() {
			paths = append(paths, "encrypt_text")
		}
		if in.GetRestoreWindowDays() != 0 {
			paths = append(paths, "restore_window_days")
		}
		if len(paths) == 0 {
			return nil, apierr.Field("update_mask", "names no field and the settings set none of encrypt_text, restore_window_days")
		}
	}
	for i, p := range paths {
		if !slices.Contains(settingsPaths, p) {
			return nil, apierr.Field(fmt.Sprintf("update_mask.paths[%d]", i), "%q is not updatable (encrypt_text, restore_window_days)", p)
		}
	}
	if slices.Contains(paths, "restore_window_days") {
		if d := in.GetRestoreWindowDays(); d < 0 || d > maxRestoreWindowDays {
			return nil, apierr.Field("settings.restore_window_days", "must be between 0 (keep until hard-deleted) and %d", maxRestoreWindowDays)
		}
	}
	if slices.Contains(paths, "encrypt_text") && in.GetEncryptText() && s.keys == nil {
		return nil, apierr.FailedPrecondition("%v", errNoKeyring)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	var out *memoryv1.MemorySettings
	err = s.store.InTenant(ctx, c.tenant, func(tx *store.Tx) error {
		if err := tx.LockSettings(ctx, c.tenant); err != nil {
			return err
		}
		cur, moving, err := loadSettings(ctx, tx, c.tenant)
		if err != nil {
			return err
		}
		next := cur
		if slices.Contains(paths, "encrypt_text") {
			next.EncryptText = in.GetEncryptText()
		}
		if slices.Contains(paths, "restore_window_days") {
			next.RestoreWindowDays = in.GetRestoreWindowDays()
		}
		if next.EncryptText == cur.EncryptText && next.RestoreWindowDays == cur.RestoreWindowDays && !cur.UpdateTime.IsZero() {
			out = settingsToProto(cur, moving)
			return nil
		}
		var actor *uuid.UUID
		if c.self != uuid.Nil {
			self := c.self
			actor = &self
		}
		saved, err := tx.UpsertSettings(ctx, sqlc.UpsertSettingsParams{
			TenantID: c.tenant, EncryptText: next.EncryptText, RestoreWindowDays: next.RestoreWindowDays,
			UpdateTime: now, ActorID: actor,
		})
		if err != nil {
			return err
		}
		if next.EncryptText != cur.EncryptText {
			// Writes in flight may have read the old setting: the conversion
			// ends only with a pass that began after they are done.
			if err := tx.RequestConversion(ctx, sqlc.RequestConversionParams{
				TenantID: c.tenant, SettleTime: now.Add(s.cfg.ConversionSettle),
			}); err != nil {
				return err
			}
			moving = true
			s.logger.InfoContext(ctx, "memory text encryption changed; existing memories will be moved",
				"tenant", c.tenant, "encrypt_text", next.EncryptText)
		}
		if next.RestoreWindowDays != cur.RestoreWindowDays {
			if err := tx.ReschedulePurges(ctx, sqlc.ReschedulePurgesParams{TenantID: c.tenant, Days: next.RestoreWindowDays}); err != nil {
				return err
			}
		}
		out = settingsToProto(saved, moving)
		return nil
	})
	if err != nil {
		return nil, s.mapErr(err, "")
	}
	return out, nil
}
