package keyring

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// KeyVersion is one data key version of a scope, for operators: ids, state and
// times, never key material.
type KeyVersion struct {
	Scope       Scope
	KeyID       uint32
	State       string // primary, retired, destroyed or shredded
	KEK         string
	CreateTime  time.Time
	RetireTime  *time.Time
	DestroyTime *time.Time
}

// Versions lists the key versions of one scope, newest first (the tombstone of a
// shredded scope left out).
func (k *Keyring) Versions(ctx context.Context, s Scope) ([]KeyVersion, error) {
	if _, ok := s.Kind(); !ok {
		return nil, errors.New("keyring: an identity scope needs a tenant")
	}
	// keyring.deks holds no key material and no row-level security.
	rows, err := k.pool.Query(ctx, `SELECT key_id, state, kek_id, create_time, retire_time, destroy_time
		FROM keyring.deks WHERE tenant_id = $1 AND identity_id = $2 AND key_id <> 0
		ORDER BY create_time DESC, key_id`, s.Tenant, s.Identity)
	if err != nil {
		return nil, fmt.Errorf("keyring: versions of %s: %w", s, err)
	}
	defer rows.Close()
	var out []KeyVersion
	for rows.Next() {
		v := KeyVersion{Scope: s}
		var id int64
		if err := rows.Scan(&id, &v.State, &v.KEK, &v.CreateTime, &v.RetireTime, &v.DestroyTime); err != nil {
			return nil, fmt.Errorf("keyring: versions of %s: %w", s, err)
		}
		v.KeyID = uint32(id)
		out = append(out, v)
	}
	return out, rows.Err()
}

// IdentityKeyCounts counts the data keys of a tenant's identity scopes by state.
func (k *Keyring) IdentityKeyCounts(ctx context.Context, tenant uuid.UUID) ([]KeyCount, error) {
	rows, err := k.pool.Query(ctx, `SELECT state, count(*) FROM keyring.deks
		WHERE tenant_id = $1 AND identity_id <> '00000000-0000-0000-0000-000000000000' AND key_id <> 0
		GROUP BY state ORDER BY state`, tenant)
	if err != nil {
		return nil, fmt.Errorf("keyring: identity keys of tenant %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []KeyCount
	for rows.Next() {
		var c KeyCount
		if err := rows.Scan(&c.State, &c.Count); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
