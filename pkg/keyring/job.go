package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/manushya-ai/manushya/pkg/postgres"
)

// FieldProgress is one pass of the re-encryption job over one field.
type FieldProgress struct {
	Field string
	// Skipped is true when another process was passing over the field already.
	Skipped bool
	Running bool
	Start   time.Time
	End     time.Time
	// Tenants is how many tenants (or the system scope) were visited so far.
	Tenants int
	// Scanned rows; Current were under their scope's primary key already; Resealed
	// were moved to it; Changed were updated by someone else meanwhile (and so are
	// under the primary now); Unreadable were sealed under destroyed keys; Failed
	// could not be opened (a KEK this process lacks, a legacy key not configured).
	Scanned, Current, Resealed, Changed, Unreadable, Failed int64
}

// Report is what one run of the job did.
type Report struct {
	// Rotated is how many primary keys were older than Options.RotateAfter.
	Rotated   int
	Rewrapped int
	Fields    []FieldProgress
	Destroyed int
}

// Run runs the re-encryption job until ctx ends: re-wrap data keys under the
// current KEK, re-seal every registered field's rows under their scope's primary
// key, destroy retired keys no row uses any more; then wait Options.Interval.
func (k *Keyring) Run(ctx context.Context) error {
	wait := min(k.opts.Interval, 30*time.Second) // let the services register first
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if _, err := k.Reencrypt(ctx); err != nil && ctx.Err() == nil {
			k.logger.WarnContext(ctx, "re-encryption job", "err", err)
		}
		wait = k.opts.Interval
	}
}

// Reencrypt runs the job once.
func (k *Keyring) Reencrypt(ctx context.Context) (Report, error) {
	var rep Report
	var errs []error
	r, err := k.rotateOld(ctx)
	rep.Rotated = r
	if err != nil {
		errs = append(errs, err)
	}
	n, err := k.rewrap(ctx)
	rep.Rewrapped = n
	if err != nil {
		errs = append(errs, err)
	}
	fields := k.Fields()
	slices.SortFunc(fields, func(a, b Field) int { return strings.Compare(a.ID(), b.ID()) })
	for _, f := range fields {
		p, err := k.passField(ctx, f)
		rep.Fields = append(rep.Fields, p)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				return rep, errors.Join(errs...)
			}
		}
	}
	d, err := k.destroyUnused(ctx)
	rep.Destroyed = d
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// rotateOld rotates the primary keys older than Options.RotateAfter, so new writes
// move to fresh keys and the passes that follow re-seal the rows.
func (k *Keyring) rotateOld(ctx context.Context) (int, error) {
	if k.opts.RotateAfter <= 0 {
		return 0, nil
	}
	rows, err := k.pool.Query(ctx, `SELECT tenant_id, identity_id FROM keyring.deks
		WHERE state = 'primary' AND create_time < now() - make_interval(secs => $1) LIMIT 1000`, k.opts.RotateAfter.Seconds())
	if err != nil {
		return 0, fmt.Errorf("keyring: list keys due for rotation: %w", err)
	}
	scopes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Scope, error) {
		var s Scope
		err := r.Scan(&s.Tenant, &s.Identity)
		return s, err
	})
	if err != nil {
		return 0, fmt.Errorf("keyring: list keys due for rotation: %w", err)
	}
	n := 0
	for _, s := range scopes {
		if _, err := k.Rotate(ctx, s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// rewrap moves data keys wrapped under an older KEK to the current one; the keys
// themselves do not change, so no row has to.
func (k *Keyring) rewrap(ctx context.Context) (int, error) {
	cur := k.kms.KeyID()
	type keyRef struct {
		s   Scope
		id  int64
		kek string
	}
	var after keyRef
	done := 0
	for {
		var batch []keyRef
		rows, err := k.pool.Query(ctx, `SELECT tenant_id, identity_id, key_id, kek_id FROM keyring.deks
			WHERE state IN ('primary', 'retired') AND kek_id <> $1
			  AND (tenant_id, identity_id, key_id) > ($2, $3, $4)
			ORDER BY tenant_id, identity_id, key_id LIMIT 200`, cur, after.s.Tenant, after.s.Identity, after.id)
		if err != nil {
			return done, fmt.Errorf("keyring: list keys to re-wrap: %w", err)
		}
		for rows.Next() {
			var r keyRef
			if err := rows.Scan(&r.s.Tenant, &r.s.Identity, &r.id, &r.kek); err != nil {
				rows.Close()
				return done, fmt.Errorf("keyring: list keys to re-wrap: %w", err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return done, fmt.Errorf("keyring: list keys to re-wrap: %w", err)
		}
		for _, r := range batch {
			err := k.inScope(ctx, r.s, func(tx pgx.Tx) error {
				if err := lockScope(ctx, tx, r.s); err != nil {
					return err
				}
				var wrapped []byte
				var kek string
				if err := tx.QueryRow(ctx, `SELECT m.wrapped, d.kek_id FROM keyring.dek_material m
					JOIN keyring.deks d USING (tenant_id, identity_id, key_id)
					WHERE m.tenant_id = $1 AND m.identity_id = $2 AND m.key_id = $3`, r.s.Tenant, r.s.Identity, r.id).Scan(&wrapped, &kek); err != nil {
					if errors.Is(err, pgx.ErrNoRows) {
						return nil // destroyed meanwhile
					}
					return err
				}
				if kek == cur {
					return nil
				}
				ad := wrapAD(r.s, uint32(r.id))
				h, err := keyset.ReadWithContext(ctx, keyset.NewBinaryReader(bytes.NewReader(wrapped)), kekAEAD{kms: k.kms, keyID: kek}, ad)
				if err != nil {
					return fmt.Errorf("unwrap under %s: %w", kek, err)
				}
				var buf bytes.Buffer
				if err := h.WriteWithContext(ctx, keyset.NewBinaryWriter(&buf), kekAEAD{kms: k.kms}, ad); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE keyring.dek_material SET wrapped = $4
					WHERE tenant_id = $1 AND identity_id = $2 AND key_id = $3`, r.s.Tenant, r.s.Identity, r.id, buf.Bytes()); err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE keyring.deks SET kek_id = $4
					WHERE tenant_id = $1 AND identity_id = $2 AND key_id = $3`, r.s.Tenant, r.s.Identity, r.id, cur)
				return err
			})
			if err != nil {
				// One key this process cannot re-wrap (its KEK is not configured) must
				// not stop the others; it stays listed in Status.
				k.logger.WarnContext(ctx, "data key not re-wrapped", "scope", r.s.String(), "key_id", r.id, "err", err)
				continue
			}
			done++
			k.metrics.rewrapped.Inc()
		}
		if len(batch) < 200 {
			break
		}
		after = batch[len(batch)-1]
	}
	if done > 0 {
		k.logger.InfoContext(ctx, "data keys re-wrapped under the current key-encryption key", "keys", done, "kek_id", cur)
	}
	return done, nil
}

type holdKey struct {
	s  Scope
	id uint32
}

// passField re-seals every row of one field that is not under its scope's primary
// key, tenant by tenant, batch by batch, and records the complete pass.
func (k *Keyring) passField(ctx context.Context, f Field) (FieldProgress, error) {
	p := &FieldProgress{Field: f.ID()}
	if err := k.record(ctx); err != nil {
		return *p, err
	}
	conn, err := k.pool.Acquire(ctx)
	if err != nil {
		return *p, fmt.Errorf("keyring: pass over %s: %w", f.ID(), err)
	}
	defer conn.Release()
	// One pass per field at a time across processes; the others skip it.
	lockName := "manushya keyring pass " + f.ID()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockName).Scan(&got); err != nil {
		return *p, fmt.Errorf("keyring: pass over %s: %w", f.ID(), err)
	}
	if !got {
		p.Skipped = true
		return *p, nil
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockName)
	}()
	// The database's clock, because the destroy rule compares it with retire times.
	var start time.Time
	if err := conn.QueryRow(ctx, `SELECT now()`).Scan(&start); err != nil {
		return *p, err
	}
	p.Start, p.Running = start, true
	k.setProgress(p)
	defer func() { p.Running = false; p.End = time.Now(); k.setProgress(p) }()

	holds := map[holdKey]int64{}
	lastLog := time.Now()
	if f.Tenant == "" {
		if err := k.passTenant(ctx, f, uuid.Nil, p, holds, &lastLog); err != nil {
			return *p, err
		}
	} else {
		if k.opts.Tenants == nil {
			return *p, fmt.Errorf("keyring: pass over %s: no tenant lister configured", f.ID())
		}
		after := uuid.Nil
		for {
			ts, err := k.opts.Tenants(ctx, after, 500)
			if err != nil {
				return *p, fmt.Errorf("keyring: pass over %s: list tenants: %w", f.ID(), err)
			}
			for _, t := range ts {
				if err := k.passTenant(ctx, f, t, p, holds, &lastLog); err != nil {
					return *p, err
				}
			}
			if len(ts) < 500 {
				break
			}
			after = ts[len(ts)-1]
		}
	}
	pending := p.Failed
	err = postgres.InTx(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keyring.fields SET pass_start_time = $2, pass_end_time = now(),
				rows_scanned = $3, rows_current = $4, rows_resealed = $5, rows_failed = $6
			WHERE field = $1`, f.ID(), start, p.Scanned, p.Current+p.Changed, p.Resealed, pending); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keyring.holds WHERE field = $1`, f.ID()); err != nil {
			return err
		}
		for h, n := range holds {
			if _, err := tx.Exec(ctx, `INSERT INTO keyring.holds (field, tenant_id, identity_id, key_id, row_count)
				VALUES ($1, $2, $3, $4, $5)`, f.ID(), h.s.Tenant, h.s.Identity, int64(h.id), n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return *p, fmt.Errorf("keyring: record pass over %s: %w", f.ID(), err)
	}
	k.metrics.pending.WithLabelValues(f.ID()).Set(float64(pending))
	k.logger.InfoContext(ctx, "re-encryption pass finished", "field", f.ID(), "tenants", p.Tenants,
		"scanned", p.Scanned, "current", p.Current, "resealed", p.Resealed, "changed", p.Changed,
		"unreadable", p.Unreadable, "failed", p.Failed, "duration", time.Since(p.Start).Round(time.Millisecond))
	return *p, nil
}

func (k *Keyring) setProgress(p *FieldProgress) {
	k.progressMu.Lock()
	cp := *p
	k.progress[p.Field] = &cp
	k.progressMu.Unlock()
}

// passTenant handles one tenant's rows of a field (the system scope for uuid.Nil).
func (k *Keyring) passTenant(ctx context.Context, f Field, tenant uuid.UUID, p *FieldProgress, holds map[holdKey]int64, lastLog *time.Time) error {
	schema, table, _ := strings.Cut(f.Table, ".")
	tbl := pgx.Identifier{schema, table}.Sanitize()
	key := pgx.Identifier{f.Key}.Sanitize()
	col := pgx.Identifier{f.Column}.Sanitize()
	ident := "NULL::uuid"
	if f.Identity != "" {
		ident = pgx.Identifier{f.Identity}.Sanitize()
	}
	sel := fmt.Sprintf(`SELECT %s, %s, %s FROM %s WHERE %s IS NOT NULL`, key, ident, col, tbl, col)
	first := sel + fmt.Sprintf(` ORDER BY %s LIMIT $1`, key)
	next := sel + fmt.Sprintf(` AND %s > $2 ORDER BY %s LIMIT $1`, key, key)
	upd := fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE %s = $2 AND %s = $3`, tbl, col, key, col)
	kind := f.kind()
	scope := Scope{Tenant: tenant}
	run := func(fn func(pgx.Tx) error) error {
		if tenant == uuid.Nil {
			return postgres.InTx(ctx, k.pool, fn)
		}
		return postgres.InTenantTx(ctx, k.pool, tenant.String(), fn)
	}
	var after any
	for {
		var n int
		var last any
		var bs FieldProgress
		err := run(func(tx pgx.Tx) error {
			var rows pgx.Rows
			var err error
			if after == nil {
				rows, err = tx.Query(ctx, first, k.opts.BatchSize)
			} else {
				rows, err = tx.Query(ctx, next, k.opts.BatchSize, after)
			}
			if err != nil {
				return err
			}
			type rowVal struct {
				key   any
				ident *uuid.UUID
				val   []byte
			}
			var batch []rowVal
			for rows.Next() {
				var r rowVal
				vals, err := rows.Values()
				if err != nil {
					rows.Close()
					return err
				}
				r.key = vals[0]
				if b, ok := vals[1].([16]byte); ok {
					id := uuid.UUID(b)
					r.ident = &id
				}
				r.val, _ = vals[2].([]byte)
				batch = append(batch, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			n = len(batch)
			for _, r := range batch {
				last = r.key
				bs.Scanned++
				s := scope
				if kind == KindIdentity {
					if r.ident == nil {
						bs.Failed++
						continue
					}
					s.Identity = *r.ident
				}
				ref := Ref{Field: f.Name, Scope: s, Row: rowBytes(r.key)}
				h, sealed := Parse(r.val)
				if sealed && h.Kind == kind {
					if pk, err := k.primary(ctx, s); err == nil && pk.id == h.KeyID {
						bs.Current++
						continue
					}
				}
				pt, err := k.Open(ctx, ref, r.val)
				if err != nil {
					if errors.Is(err, ErrDestroyed) {
						bs.Unreadable++
						continue
					}
					bs.Failed++
					if sealed {
						holds[holdKey{s: s, id: h.KeyID}]++
					}
					continue
				}
				nv, err := k.Seal(ctx, ref, pt)
				if err != nil {
					bs.Failed++
					if sealed {
						holds[holdKey{s: s, id: h.KeyID}]++
					}
					continue
				}
				tag, err := tx.Exec(ctx, upd, nv, r.key, r.val)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 1 {
					bs.Resealed++
				} else {
					bs.Changed++
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("keyring: pass over %s of %s: %w", f.ID(), scope, err)
		}
		p.Scanned += bs.Scanned
		p.Current += bs.Current
		p.Resealed += bs.Resealed
		p.Changed += bs.Changed
		p.Unreadable += bs.Unreadable
		p.Failed += bs.Failed
		for res, v := range map[string]int64{"current": bs.Current, "resealed": bs.Resealed, "changed": bs.Changed, "unreadable": bs.Unreadable, "failed": bs.Failed} {
			if v > 0 {
				k.metrics.rows.WithLabelValues(f.ID(), res).Add(float64(v))
			}
		}
		k.setProgress(p)
		if time.Since(*lastLog) > 10*time.Second {
			*lastLog = time.Now()
			k.logger.InfoContext(ctx, "re-encryption progress", "field", f.ID(), "tenants", p.Tenants,
				"scanned", p.Scanned, "resealed", p.Resealed, "failed", p.Failed)
		}
		if n < k.opts.BatchSize {
			break
		}
		after = last
	}
	p.Tenants++
	return nil
}

// rowBytes is a key column's value as Ref.Row: a UUID's 16 bytes, text's bytes, or
// bytea as it is.
func rowBytes(v any) []byte {
	switch x := v.(type) {
	case [16]byte:
		return x[:]
	case []byte:
		return x
	case string:
		return []byte(x)
	default:
		return fmt.Append(nil, x)
	}
}

// destroyUnused destroys retired keys that every field's last complete pass, started
// after the key stopped sealing everywhere, found no row under.
func (k *Keyring) destroyUnused(ctx context.Context) (int, error) {
	rows, err := k.pool.Query(ctx, `SELECT d.tenant_id, d.identity_id, d.key_id FROM keyring.deks d
		WHERE d.state = 'retired' AND d.retire_time < now() - make_interval(secs => $1)
		  AND NOT EXISTS (SELECT 1 FROM keyring.fields f
		                  WHERE f.pass_start_time IS NULL OR f.pass_start_time < d.retire_time + make_interval(secs => $1))
		  AND NOT EXISTS (SELECT 1 FROM keyring.holds h
		                  WHERE (h.tenant_id, h.identity_id, h.key_id) = (d.tenant_id, d.identity_id, d.key_id))
		LIMIT 1000`, k.opts.RetireGrace.Seconds())
	if err != nil {
		return 0, fmt.Errorf("keyring: list unused keys: %w", err)
	}
	var keys []holdKey
	for rows.Next() {
		var s Scope
		var id int64
		if err := rows.Scan(&s.Tenant, &s.Identity, &id); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, holdKey{s: s, id: uint32(id)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("keyring: list unused keys: %w", err)
	}
	n := 0
	for _, h := range keys {
		used, err := k.stillUsed(ctx, h)
		if err != nil {
			return n, err
		}
		if used {
			// The passes missed a row (a tenant the lister did not return): keep it.
			k.logger.WarnContext(ctx, "retired data key still used by a row the passes did not visit; kept", "scope", h.s.String(), "key_id", h.id)
			continue
		}
		var done bool
		err = k.inScope(ctx, h.s, func(tx pgx.Tx) error {
			if err := lockScope(ctx, tx, h.s); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE keyring.deks SET state = 'destroyed', destroy_time = now()
				WHERE tenant_id = $1 AND identity_id = $2 AND key_id = $3 AND state = 'retired'`, h.s.Tenant, h.s.Identity, int64(h.id))
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			_, err = tx.Exec(ctx, `DELETE FROM keyring.dek_material WHERE tenant_id = $1 AND identity_id = $2 AND key_id = $3`,
				h.s.Tenant, h.s.Identity, int64(h.id))
			done = err == nil
			return err
		})
		if err != nil {
			return n, fmt.Errorf("keyring: destroy key %d of %s: %w", h.id, h.s, err)
		}
		if done {
			n++
			k.cache.drop(h.s)
			k.metrics.destroyed.Inc()
			k.logger.InfoContext(ctx, "retired data key destroyed: no row uses it", "scope", h.s.String(), "key_id", h.id)
		}
	}
	return n, nil
}

// stillUsed looks, in the key's own tenant, for a row of any field this process
// knows that is sealed under the key, by the ciphertext prefix (magic, kind, Tink
// prefix, key id): a last check before destroying that does not depend on the
// tenant lister.
func (k *Keyring) stillUsed(ctx context.Context, h holdKey) (bool, error) {
	kind, _ := h.s.Kind()
	prefix := []byte{magic, kind, tinkPrefix, byte(h.id >> 24), byte(h.id >> 16), byte(h.id >> 8), byte(h.id)}
	used := false
	for _, f := range k.Fields() {
		if f.kind() != kind {
			continue
		}
		schema, table, _ := strings.Cut(f.Table, ".")
		col := pgx.Identifier{f.Column}.Sanitize()
		q := fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE substring(%s FROM 1 FOR 7) = $1`, pgx.Identifier{schema, table}.Sanitize(), col)
		args := []any{prefix}
		if kind == KindIdentity {
			q += fmt.Sprintf(` AND %s = $2`, pgx.Identifier{f.Identity}.Sanitize())
			args = append(args, h.s.Identity)
		}
		q += `)`
		err := k.inScope(ctx, h.s, func(tx pgx.Tx) error {
			var found bool
			if err := tx.QueryRow(ctx, q, args...).Scan(&found); err != nil {
				return err
			}
			used = used || found
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("keyring: check key %d of %s in %s: %w", h.id, h.s, f.ID(), err)
		}
		if used {
			return true, nil
		}
	}
	return false, nil
}

// Status is the keyring's state for operators.
type Status struct {
	// KEK is the id of the key-encryption key wrapping new data keys.
	KEK string
	// Keys counts data keys by state and by the KEK wrapping them.
	Keys []KeyCount
	// Fields is every field any process registered, with its last complete pass
	// and, when this process is passing over it now, the running pass.
	Fields []FieldStatus
}

// KeyCount is how many data keys are in one state under one KEK.
type KeyCount struct {
	State string
	KEK   string
	Count int64
}

// FieldStatus is the re-encryption state of one field.
type FieldStatus struct {
	Field                              string
	LastPassStart, LastPassEnd         *time.Time
	Scanned, Current, Resealed, Failed int64
	// HeldKeys is how many old keys the last pass found rows under that it could not
	// re-seal; they are not destroyed.
	HeldKeys int64
	Running  *FieldProgress
}

// Status reads the keyring's state.
func (k *Keyring) Status(ctx context.Context) (Status, error) {
	st := Status{KEK: k.kms.KeyID()}
	rows, err := k.pool.Query(ctx, `SELECT state, kek_id, count(*) FROM keyring.deks WHERE key_id <> 0 GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return st, fmt.Errorf("keyring: status: %w", err)
	}
	for rows.Next() {
		var c KeyCount
		if err := rows.Scan(&c.State, &c.KEK, &c.Count); err != nil {
			rows.Close()
			return st, err
		}
		st.Keys = append(st.Keys, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	rows, err = k.pool.Query(ctx, `SELECT f.field, f.pass_start_time, f.pass_end_time, f.rows_scanned, f.rows_current,
			f.rows_resealed, f.rows_failed, (SELECT count(*) FROM keyring.holds h WHERE h.field = f.field)
		FROM keyring.fields f ORDER BY f.field`)
	if err != nil {
		return st, fmt.Errorf("keyring: status: %w", err)
	}
	for rows.Next() {
		var f FieldStatus
		if err := rows.Scan(&f.Field, &f.LastPassStart, &f.LastPassEnd, &f.Scanned, &f.Current, &f.Resealed, &f.Failed, &f.HeldKeys); err != nil {
			rows.Close()
			return st, err
		}
		st.Fields = append(st.Fields, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	k.progressMu.Lock()
	for i := range st.Fields {
		if p := k.progress[st.Fields[i].Field]; p != nil && p.Running {
			cp := *p
			st.Fields[i].Running = &cp
		}
	}
	k.progressMu.Unlock()
	return st, nil
}
