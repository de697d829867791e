package memory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/services/memory/store"
	"github.com/manushya-ai/manushya/services/memory/store/sqlc"
)

// conversionBatch is how many rows one transaction of the encryption sweeper moves.
const conversionBatch = 200

// convertTexts is the encryption sweeper: for each tenant whose encrypt_text
// changed, it moves the existing memories and versions to the form the setting
// asks for (seals plain texts, or opens sealed ones back), batch by batch, each
// in its own transaction, with a progress line per batch. A tenant's conversion
// ends with a pass that found nothing left to move and began after the change
// settled (writes in flight when it changed may have used the old form).
func (s *Service) convertTexts(ctx context.Context) error {
	due, err := s.store.Global().DueConversions(ctx, 100)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("encryption sweeper: list conversions", "err", err)
		}
		return err
	}
	for _, d := range due {
		if err := s.convertTenant(ctx, d.TenantID, d.SettleTime); err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.logger.Warn("encryption sweeper: tenant not converted; will retry", "tenant", d.TenantID, "err", err)
			_ = s.store.Global().ConversionFailed(ctx, sqlc.ConversionFailedParams{TenantID: d.TenantID, LastError: err.Error()})
		}
	}
	return nil
}

// convertCounts is what one pass over a tenant did.
type convertCounts struct {
	moved, unreadable int
}

func (s *Service) convertTenant(ctx context.Context, tenant uuid.UUID, settle time.Time) error {
	began := time.Now()
	var enc bool
	err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
		var err error
		enc, err = s.encrypting(ctx, tx, tenant)
		return err
	})
	if err != nil {
		return err
	}
	var total convertCounts
	for _, table := range []string{"memories", "memory_versions"} {
		n, err := s.convertTable(ctx, tenant, enc, table)
		total.moved += n.moved
		total.unreadable += n.unreadable
		if err != nil {
			return err
		}
	}
	if total.moved > 0 || total.unreadable > 0 {
		s.logger.Info("encryption sweeper: pass over tenant done", "tenant", tenant, "encrypt_text", enc,
			"moved", total.moved, "unreadable", total.unreadable, "took", time.Since(began).Round(time.Millisecond))
	}
	if total.moved > 0 || began.Before(settle) {
		return nil // another pass (next tick) must find nothing left
	}
	s.logger.Info("encryption sweeper: tenant converted", "tenant", tenant, "encrypt_text", enc)
	return s.store.Global().ConversionDone(ctx, sqlc.ConversionDoneParams{TenantID: tenant, SettleTime: settle})
}

// convRow is one row to move: a memory (version 0) or one of its versions.
type convRow struct {
	id       uuid.UUID
	version  int32
	identity uuid.UUID
	text     string
	sealed   []byte
}

// convertTable moves one table's rows of tenant, in key order. A sealed text that
// does not open (its identity erased) stays as it is and is counted unreadable.
func (s *Service) convertTable(ctx context.Context, tenant uuid.UUID, enc bool, table string) (convertCounts, error) {
	var n convertCounts
	var afterID uuid.UUID
	var afterVersion int32
	cond := "text_sealed IS NOT NULL"
	if enc {
		cond = "text_sealed IS NULL"
	}
	var sel string
	if table == "memories" {
		sel = `SELECT m.id, 0, m.identity_id, m.text, m.text_sealed FROM memory.memories m
WHERE m.tenant_id = $1 AND m.` + cond + ` AND m.id > $2 ORDER BY m.id LIMIT $3`
	} else {
		sel = `SELECT v.memory_id, v.version, m.identity_id, v.text, v.text_sealed
FROM memory.memory_versions v JOIN memory.memories m ON m.id = v.memory_id
WHERE v.tenant_id = $1 AND v.` + cond + ` AND (v.memory_id, v.version) > ($2, $3)
ORDER BY v.memory_id, v.version LIMIT $4`
	}
	for {
		var batch []convRow
		err := s.store.InTenant(ctx, tenant, func(tx *store.Tx) error {
			// The setting is read again for each batch: a change meanwhile
			// ends this pass, and the next moves rows the other way.
			now, err := s.encrypting(ctx, tx, tenant)
			if err != nil || now != enc {
				return err
			}
			args := []any{tenant, afterID, conversionBatch}
			if table != "memories" {
				args = []any{tenant, afterID, afterVersion, conversionBatch}
			}
			rows, err := tx.Tx.Query(ctx, sel, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r convRow
				if err := rows.Scan(&r.id, &r.version, &r.identity, &r.text, &r.sealed); err != nil {
					rows.Close()
					return err
				}
				batch = append(batch, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range batch {
				moved, err := s.convertRow(ctx, tx, tenant, enc, table, r)
				if err != nil {
					if errors.Is(err, keyring.ErrOpen) {
						n.unreadable++
						continue
					}
					return err
				}
				if moved {
					n.moved++
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("move %s of tenant %s: %w", table, tenant, err)
		}
		if len(batch) > 0 {
			s.logger.Info("encryption sweeper progress", "tenant", tenant, "table", table, "encrypt_text", enc,
				"moved", n.moved, "unreadable", n.unreadable)
		}
		if len(batch) < conversionBatch {
			return n, nil
		}
		last := batch[len(batch)-1]
		afterID, afterVersion = last.id, last.version
	}
}

// convertRow seals a plain row or opens a sealed one back; the update is guarded
// by the value read, so a row written meanwhile (in the new form) is left alone.
func (s *Service) convertRow(ctx context.Context, tx *store.Tx, tenant uuid.UUID, enc bool, table string, r convRow) (bool, error) {
	var ref keyring.Ref
	if table == "memories" {
		ref = textRef(tenant, r.identity, r.id)
	} else {
		ref = versionTextRef(tenant, r.identity, r.id, r.version)
	}
	if enc {
		sealed, err := s.seal(ctx, ref, r.text)
		if err != nil {
			return false, err
		}
		var sql string
		args := []any{r.id, r.text, sealed}
		if table == "memories" {
			sql = `UPDATE memory.memories SET text = '', text_sealed = $3 WHERE id = $1 AND text = $2 AND text_sealed IS NULL`
		} else {
			sql = `UPDATE memory.memory_versions SET text = '', text_sealed = $3, identity_id = $5, seal_row = $6
WHERE memory_id = $1 AND version = $4 AND text = $2 AND text_sealed IS NULL`
			args = append(args, r.version, r.identity, versionRow(r.id, r.version))
		}
		tag, err := tx.Tx.Exec(ctx, sql, args...)
		return err == nil && tag.RowsAffected() == 1, err
	}
	if s.keys == nil {
		return false, errNoKeyring
	}
	pt, err := s.keys.Open(ctx, ref, r.sealed)
	if err != nil {
		return false, fmt.Errorf("%w: %w", keyring.ErrOpen, err)
	}
	var sql string
	args := []any{r.id, string(pt), r.sealed}
	if table == "memories" {
		sql = `UPDATE memory.memories SET text = $2, text_sealed = NULL WHERE id = $1 AND text_sealed = $3`
	} else {
		sql = `UPDATE memory.memory_versions SET text = $2, text_sealed = NULL, identity_id = NULL, seal_row = NULL
WHERE memory_id = $1 AND version = $4 AND text_sealed = $3`
		args = append(args, r.version)
	}
	tag, err := tx.Tx.Exec(ctx, sql, args...)
	return err == nil && tag.RowsAffected() == 1, err
}
