package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// JWKSKeys is a KeySource for processes other than the identity service: it asks
// the identity service for its JSON Web Key Set (AuthService.GetJwks) and keeps
// it, fetching again on a schedule and when a token names a key it does not know
// (at most once per minInterval, so garbage kids cannot make it hammer the
// identity service).
type JWKSKeys struct {
	client      identityv1.AuthServiceClient
	maxAge      time.Duration
	minInterval time.Duration

	fetchMu sync.Mutex // one fetch at a time
	mu      sync.RWMutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time
	tried   time.Time
}

// NewJWKSKeys returns a key source backed by client; keys are refetched every
// maxAge (0 means 5 minutes).
func NewJWKSKeys(client identityv1.AuthServiceClient, maxAge time.Duration) *JWKSKeys {
	if maxAge <= 0 {
		maxAge = 5 * time.Minute
	}
	return &JWKSKeys{client: client, maxAge: maxAge, minInterval: 5 * time.Second, keys: map[string]ed25519.PublicKey{}}
}

// PublicKey implements KeySource.
func (j *JWKSKeys) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	j.mu.RLock()
	pk, ok := j.keys[kid]
	fresh := time.Since(j.fetched) < j.maxAge
	j.mu.RUnlock()
	if ok && fresh {
		return pk, nil
	}
	if err := j.refresh(ctx); err != nil && !ok {
		return nil, err
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if pk, ok := j.keys[kid]; ok {
		return pk, nil
	}
	return nil, ErrUnknownKey
}

// refresh fetches the key set unless a fetch was tried within minInterval.
func (j *JWKSKeys) refresh(ctx context.Context) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	j.mu.RLock()
	recent := time.Since(j.tried) < j.minInterval
	j.mu.RUnlock()
	if recent {
		return nil
	}
	j.mu.Lock()
	j.tried = time.Now()
	j.mu.Unlock()
	resp, err := j.client.GetJwks(ctx, &identityv1.GetJwksRequest{})
	if err != nil {
		return fmt.Errorf("fetch signing keys: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(resp.GetKeys()))
	for _, k := range resp.GetKeys() {
		if k.GetKty() != "OKP" || k.GetCrv() != "Ed25519" || k.GetAlg() != AccessTokenAlg {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(k.GetX())
		if err != nil || len(raw) != ed25519.PublicKeySize {
			continue
		}
		keys[k.GetKid()] = ed25519.PublicKey(raw)
	}
	j.mu.Lock()
	j.keys = keys
	j.fetched = time.Now()
	j.mu.Unlock()
	return nil
}
