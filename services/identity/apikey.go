package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	"github.com/manushya-ai/manushya/pkg/auth"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
	identityv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/identity/v1"
	"github.com/manushya-ai/manushya/services/identity/store"
	"github.com/manushya-ai/manushya/services/identity/store/sqlc"
)

// An API key reads "mk_<env>_<prefix><secret>": the prefix (8 characters) finds the
// row, the whole key is verified against an HMAC-SHA256 under the server's pepper,
// so a stolen database alone cannot be used to check guesses.
const (
	keyPrefixLen = 8
	keySecretLen = 32
	base62       = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// newAPIKey returns a fresh key and its lookup prefix.
func newAPIKey(env string) (key, prefix string, err error) {
	var b strings.Builder
	max := big.NewInt(int64(len(base62)))
	for range keyPrefixLen + keySecretLen {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", "", fmt.Errorf("generate api key: %w", err)
		}
		b.WriteByte(base62[n.Int64()])
	}
	random := b.String()
	return auth.APIKeyPrefix + env + "_" + random, random[:keyPrefixLen], nil
}

// parseAPIKey returns the lookup prefix of a well-formed key.
func parseAPIKey(key string) (prefix string, ok bool) {
	rest, found := strings.CutPrefix(key, auth.APIKeyPrefix)
	if !found {
		return "", false
	}
	env, random, found := strings.Cut(rest, "_")
	if !found || env == "" || len(random) != keyPrefixLen+keySecretLen {
		return "", false
	}
	for _, r := range random {
		if !strings.ContainsRune(base62, r) {
			return "", false
		}
	}
	return random[:keyPrefixLen], true
}

func (s *Service) hashKey(key string) []byte {
	m := hmac.New(sha256.New, s.pepper)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// errUnknownKey is what every failed key verification looks like from outside: it
// never says whether the key exists, belongs to another tenant, or was mistyped.
func errUnknownKey() error {
	return apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_UNKNOWN, "credential not recognised")
}

// verifyAPIKey returns the principal of a valid key.
func (s *Service) verifyAPIKey(ctx context.Context, key string) (*auth.Principal, error) {
	e, code, err := s.checkAPIKey(ctx, key)
	if err != nil {
		return nil, err
	}
	switch code {
	case identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_VALID:
	case identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_MALFORMED:
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_MALFORMED, "API key is malformed")
	case identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_REVOKED:
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_REVOKED, "API key was revoked")
	case identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_EXPIRED:
		return nil, apierr.Unauthenticated(errorsv1.ErrorReason_ERROR_REASON_CREDENTIALS_EXPIRED, "API key has expired")
	default:
		return nil, errUnknownKey()
	}
	if s.keyCache != nil && s.keyCache.shouldTouch(e.KeyID, time.Now()) {
		s.touchAPIKey(e.TenantID, e.KeyID)
	}
	return e.principal(), nil
}

// checkAPIKey verifies a key, from the cache when it can. The code says why a key
// is not valid; err is set only when the check itself failed.
func (s *Service) checkAPIKey(ctx context.Context, key string) (*cachedKey, identityv1.ApiKeyTestCode, error) {
	prefix, ok := parseAPIKey(key)
	if !ok {
		return nil, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_MALFORMED, nil
	}
	hash := s.hashKey(key)
	now := time.Now()
	if s.keyCache != nil {
		if e, ok := s.keyCache.get(ctx, hash, now); ok {
			return e, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_VALID, nil
		}
	}
	tenantID, err := s.store.Global().TenantOfAPIKeyPrefix(ctx, prefix)
	if err != nil {
		if errors.Is(store.MapErr(err), store.ErrNotFound) {
			// Spend the same comparison as a real check, so timing does not tell.
			hmac.Equal(hash, make([]byte, sha256.Size))
			return nil, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN, nil
		}
		return nil, 0, apierr.Internal(fmt.Errorf("look up api key prefix: %w", err))
	}
	var row sqlc.GetAPIKeyByPrefixRow
	err = s.store.InTenant(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		row, err = tx.GetAPIKeyByPrefix(ctx, prefix)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN, nil
		}
		return nil, 0, apierr.Internal(fmt.Errorf("load api key: %w", err))
	}
	if !hmac.Equal(hash, row.KeyHash) {
		return nil, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_UNKNOWN, nil
	}
	e := &cachedKey{
		TenantID:   row.TenantID.String(),
		IdentityID: row.IdentityID.String(),
		ExternalID: row.ExternalID,
		Kind:       row.Kind,
		Roles:      allRoles(row.Role, row.Roles),
		Scopes:     row.Scopes,
		KeyID:      row.ID.String(),
		Expire:     row.ExpireTime,
	}
	if e.Scopes == nil {
		e.Scopes = []string{}
	}
	// Invalid keys come back with their tenant, so TestApiKey can tell "revoked"
	// only to a caller asking about that tenant; they are never cached.
	switch {
	case row.RevokeTime != nil && !row.RevokeTime.After(now):
		return e, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_REVOKED, nil
	case row.ExpireTime != nil && !row.ExpireTime.After(now):
		return e, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_EXPIRED, nil
	case !row.IsActive || row.IdentityDeleteTime != nil:
		return e, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_IDENTITY_INACTIVE, nil
	}
	if s.keyCache != nil {
		s.keyCache.put(ctx, hash, e, now)
	}
	return e, identityv1.ApiKeyTestCode_API_KEY_TEST_CODE_VALID, nil
}

// Authenticate implements auth.Authenticator for credentials this service issues.
func (s *Service) Authenticate(ctx context.Context, cred auth.Credential) (*auth.Principal, error) {
	switch cred.Kind {
	case auth.CredentialAPIKey:
		return s.verifyAPIKey(ctx, cred.Value)
	case auth.CredentialJWT:
		// Access tokens: signature, claims and session revocation (tokens.go).
		return s.tokens.verifier.Verify(ctx, cred.Value)
	default:
		return nil, errUnknownKey()
	}
}

// issueAPIKey stores a new key for an identity and returns the key in clear, once.
func (s *Service) issueAPIKey(ctx context.Context, tx *store.Tx, tenantID, identityID uuid.UUID, name string, scopes []string, expires *time.Time) (string, sqlc.IdentityApiKey, error) {
	return s.issueAPIKeyEnv(ctx, tx, s.keyEnv, tenantID, identityID, name, scopes, expires)
}

// issueAPIKeyEnv is issueAPIKey for a given environment ("live", "test").
func (s *Service) issueAPIKeyEnv(ctx context.Context, tx *store.Tx, env string, tenantID, identityID uuid.UUID, name string, scopes []string, expires *time.Time) (string, sqlc.IdentityApiKey, error) {
	if scopes == nil {
		scopes = []string{}
	}
	for attempt := 0; ; attempt++ {
		key, prefix, err := newAPIKey(env)
		if err != nil {
			return "", sqlc.IdentityApiKey{}, err
		}
		var row sqlc.IdentityApiKey
		err = tx.Savepoint(ctx, func(tx *store.Tx) error {
			if err := tx.CreateAPIKeyPrefix(ctx, sqlc.CreateAPIKeyPrefixParams{Prefix: prefix, TenantID: tenantID}); err != nil {
				return store.MapErr(err)
			}
			row, err = tx.CreateAPIKey(ctx, sqlc.CreateAPIKeyParams{
				ID: newID(), TenantID: tenantID, IdentityID: identityID, Name: name,
				Environment: env, Prefix: prefix, KeyHash: s.hashKey(key),
				Scopes: scopes, ExpireTime: expires,
			})
			return store.MapErr(err)
		})
		// A prefix collision (47 bits) is rare; draw again.
		if errors.Is(err, store.ErrAlreadyExists) && attempt < 3 {
			continue
		}
		return key, row, err
	}
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// IssueAPIKey creates an API key for an existing identity and returns it in clear,
// once. The caller decides the scopes; the key can never do more than the identity's
// roles allow.
func (s *Service) IssueAPIKey(ctx context.Context, tenantID, identityID, name string, scopes []string, expires *time.Time) (string, error) {
	tid, err := parseID("tenant_id", tenantID)
	if err != nil {
		return "", err
	}
	iid, err := parseID("identity_id", identityID)
	if err != nil {
		return "", err
	}
	var key string
	err = s.store.InTenant(ctx, tid, func(tx *store.Tx) error {
		if _, err := tx.GetIdentity(ctx, sqlc.GetIdentityParams{ID: iid}); err != nil {
			return store.MapErr(err)
		}
		key, _, err = s.issueAPIKey(ctx, tx, tid, iid, name, scopes, expires)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", apierr.NotFound("identity", identityID)
	}
	return key, err
}
