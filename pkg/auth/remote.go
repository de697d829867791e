package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
)

// Remote authenticates by asking the identity service (CredentialService) and keeps
// each answer for a short TTL, so a burst of requests with one credential costs one
// round trip. The TTL bounds how long a revoked credential can still pass here.
type Remote struct {
	client identityv1.CredentialServiceClient
	ttl    time.Duration

	mu    sync.Mutex
	cache map[[32]byte]remoteEntry
}

// maxRemoteEntries bounds the cache's memory whatever the traffic.
const maxRemoteEntries = 10000

type remoteEntry struct {
	p       *Principal
	expires time.Time
}

// NewRemote returns an authenticator backed by client; ttl <= 0 means one second,
// the longest a revoked API key may still pass in a process without the identity
// service.
func NewRemote(client identityv1.CredentialServiceClient, ttl time.Duration) *Remote {
	if ttl <= 0 {
		ttl = time.Second
	}
	return &Remote{client: client, ttl: ttl, cache: map[[32]byte]remoteEntry{}}
}

// Authenticate implements Authenticator.
func (r *Remote) Authenticate(ctx context.Context, cred Credential) (*Principal, error) {
	// The kind is part of the key: the same string sent as an API key and as a
	// token is two credentials, and the identity service judges each.
	key := sha256.Sum256(append([]byte{byte(cred.Kind)}, cred.Value...))
	now := time.Now()
	r.mu.Lock()
	if e, ok := r.cache[key]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		return e.p, nil
	}
	r.mu.Unlock()

	header := "authorization"
	value := "Bearer " + cred.Value
	if cred.Kind == CredentialAPIKey {
		header, value = "x-api-key", cred.Value
	}
	// Forward the request id so the identity service's logs tie to this request.
	out := metadata.Pairs(header, value)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get("x-request-id"); len(ids) > 0 {
			out.Append("x-request-id", ids[0])
		}
	}
	resp, err := r.client.IntrospectCredential(metadata.NewOutgoingContext(ctx, out), &identityv1.IntrospectCredentialRequest{})
	if err != nil {
		return nil, err
	}
	p := &Principal{
		TenantID: resp.GetTenantId(), IdentityID: resp.GetIdentityId(), ExternalID: resp.GetExternalId(),
		Kind: resp.GetKind(), Roles: resp.GetRoles(), Scopes: resp.GetScopes(),
		APIKeyID: resp.GetApiKeyId(), SessionID: resp.GetSessionId(),
	}
	r.mu.Lock()
	if len(r.cache) >= maxRemoteEntries {
		for k, e := range r.cache {
			if now.After(e.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxRemoteEntries {
			// Every entry is live: start over rather than grow without bound. The
			// cost is one extra round trip per credential.
			clear(r.cache)
		}
	}
	r.cache[key] = remoteEntry{p: p, expires: now.Add(r.ttl)}
	r.mu.Unlock()
	return p, nil
}
