package policyengine

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"
	"sync"
)

// cacheKey fingerprints a decision's input with two independent 64-bit hashes, so
// a collision (which would hand one request another's decision) is out of reach.
// The tenant and the policy-set version are implicit: each Set has its own cache.
type cacheKey [2]uint64

var seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func fingerprint(in *Input) cacheKey {
	var k cacheKey
	for i := range k {
		var h maphash.Hash
		h.SetSeed(seeds[i])
		writeString(&h, in.Action)
		writeString(&h, in.Principal.IdentityID)
		writeString(&h, in.Principal.TenantID)
		writeString(&h, in.Principal.Kind)
		writeStrings(&h, in.Principal.Roles)
		writeStrings(&h, in.Principal.Scopes)
		writeValue(&h, in.Principal.Claims)
		writeStrings(&h, in.Principal.ActsFor)
		writeString(&h, in.Resource.Type)
		writeString(&h, in.Resource.ID)
		writeString(&h, in.Resource.OwnerID)
		writeString(&h, in.Resource.TenantID)
		writeValue(&h, in.Resource.Attributes)
		k[i] = h.Sum64()
	}
	return k
}

func writeLen(h *maphash.Hash, n int) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	_, _ = h.Write(b[:])
}

func writeString(h *maphash.Hash, s string) {
	writeLen(h, len(s))
	_, _ = h.WriteString(s)
}

func writeStrings(h *maphash.Hash, ss []string) {
	writeLen(h, len(ss))
	for _, s := range ss {
		writeString(h, s)
	}
}

// writeValue hashes a JSON-like value canonically (map keys sorted), each kind
// tagged so that, say, "1" and 1 differ.
func writeValue(h *maphash.Hash, v any) {
	switch x := v.(type) {
	case nil:
		_ = h.WriteByte('n')
	case bool:
		if x {
			_ = h.WriteByte('t')
		} else {
			_ = h.WriteByte('f')
		}
	case string:
		_ = h.WriteByte('s')
		writeString(h, x)
	case float64:
		_ = h.WriteByte('d')
		writeLen(h, int(math.Float64bits(x)))
	case int:
		_ = h.WriteByte('d')
		writeLen(h, int(math.Float64bits(float64(x))))
	case int64:
		_ = h.WriteByte('d')
		writeLen(h, int(math.Float64bits(float64(x))))
	case []any:
		_ = h.WriteByte('a')
		writeLen(h, len(x))
		for _, e := range x {
			writeValue(h, e)
		}
	case []string:
		_ = h.WriteByte('a')
		writeLen(h, len(x))
		for _, e := range x {
			_ = h.WriteByte('s')
			writeString(h, e)
		}
	case map[string]any:
		_ = h.WriteByte('o')
		writeLen(h, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			writeString(h, k)
			writeValue(h, x[k])
		}
	default:
		// Types outside JSON: hash the type name and formatted value; such input is
		// unusual (InterfaceToValue handles it through JSON) and never collides
		// with the tagged kinds above.
		_ = h.WriteByte('?')
		writeString(h, fmtAny(x))
	}
}

// decisionCache is a bounded map of decisions. When full it is emptied: the cost is
// a round of re-evaluations, and no bookkeeping slows down the hits.
type decisionCache struct {
	mu   sync.RWMutex
	max  int
	data map[cacheKey]Decision
}

func newDecisionCache(max int) *decisionCache {
	return &decisionCache{max: max, data: make(map[cacheKey]Decision, min(max, 1024))}
}

func (c *decisionCache) get(k cacheKey) (Decision, bool) {
	c.mu.RLock()
	d, ok := c.data[k]
	c.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(k cacheKey, d Decision) {
	d.Evaluations = nil
	if d.Decisive != nil {
		ev := *d.Decisive
		d.Decisive = &ev
	}
	c.mu.Lock()
	if len(c.data) >= c.max {
		clear(c.data)
	}
	c.data[k] = d
	c.mu.Unlock()
}
