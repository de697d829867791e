package embedder

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/manushya-ai/manushya/pkg/kv"
)

// Cache keeps vectors per (model, dimensions, sha256(text)) in a kv.Store. With
// Redis behind the store a batch is one MGET and one pipelined write; other
// stores are asked key by key.
type Cache struct {
	store kv.Store
	redis redis.UniversalClient
	ttl   time.Duration
}

// NewCache returns a cache over store whose entries live for ttl (0: forever).
func NewCache(store kv.Store, ttl time.Duration) *Cache {
	c := &Cache{store: store, ttl: ttl}
	if rc, ok := kv.RedisClient(store); ok {
		c.redis = rc
	}
	return c
}

// cacheKey names a text's vector without the text itself, which may be
// personal data.
func cacheKey(model string, dims int, text string) string {
	sum := sha256.Sum256([]byte(text))
	return "manushya:embedding:v1:" + model + ":" + strconv.Itoa(dims) + ":" + hex.EncodeToString(sum[:])
}

// Get returns the cached vector of each text, nil where there is none. A store
// failure is returned with whatever was found before it.
func (c *Cache) Get(ctx context.Context, model string, dims int, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	keys := make([]string, len(texts))
	for i, t := range texts {
		keys[i] = cacheKey(model, dims, t)
	}
	if c.redis != nil {
		vals, err := c.redis.MGet(ctx, keys...).Result()
		if err != nil {
			return out, err
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				out[i] = decodeVector([]byte(s), dims)
			}
		}
		return out, nil
	}
	for i, k := range keys {
		b, err := c.store.Get(ctx, k)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out[i] = decodeVector(b, dims)
	}
	return out, nil
}

// Put stores the vectors of texts.
func (c *Cache) Put(ctx context.Context, model string, dims int, texts []string, vectors [][]float32) error {
	if c.redis != nil {
		pipe := c.redis.Pipeline()
		for i, t := range texts {
			pipe.Set(ctx, cacheKey(model, dims, t), encodeVector(vectors[i]), c.ttl)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	for i, t := range texts {
		if err := c.store.Set(ctx, cacheKey(model, dims, t), encodeVector(vectors[i]), c.ttl); err != nil {
			return err
		}
	}
	return nil
}

func encodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVector reads a stored vector; anything of the wrong size (another
// version's entry, a truncated write) is a miss.
func decodeVector(b []byte, dims int) []float32 {
	if len(b) == 0 || len(b)%4 != 0 || (dims > 0 && len(b) != 4*dims) {
		return nil
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}
