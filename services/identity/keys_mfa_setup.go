package identity

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/manushya-ai/manushya/pkg/secretbox"
	"github.com/manushya-ai/manushya/pkg/worker"
)

// APIKeyCacheConfig tunes the API key verification cache.
type APIKeyCacheConfig struct {
	// LocalTTL is how long a verification is trusted from process memory
	// (default 10s); Redis keeps it for RemoteTTL (default 1m). Revocations evict at
	// once through the bus; the TTLs only bound how long a missed event could matter.
	LocalTTL  time.Duration
	RemoteTTL time.Duration
	// Size bounds the in-process entries (default 10,000).
	Size int
	// Disabled turns the cache off (every verification reads PostgreSQL).
	Disabled bool
}

// MFAConfig configures TOTP.
type MFAConfig struct {
	// EncryptionKey is the key TOTP secrets were sealed under before the keyring
	// (auth.encryption_key): 32 bytes as 64 hex characters or base64. Empty means a
	// key derived from the API key pepper (HKDF, own label). It, the ids and the
	// previous keys below only open those older values now.
	EncryptionKey string
	// EncryptionKeyID names the key in sealed values (default "mfa1"); change it
	// together with the key, keeping the old one in PreviousEncryptionKeys.
	EncryptionKeyID string
	// PreviousEncryptionKeys maps old key ids to old keys, still accepted for
	// opening secrets sealed before a rotation.
	PreviousEncryptionKeys map[string]string
	// Issuer is the name authenticator apps show (default "Manushya").
	Issuer string
}

// InvitationConfig configures invitations.
type InvitationConfig struct {
	// AcceptURL is the link put in invitation emails; "{token}" is replaced by the
	// URL-escaped token, or "?token=..." is appended when it is absent.
	AcceptURL string
	// TTL is the default lifetime of an invitation (default 7 days).
	TTL time.Duration
	// SMTP is the mail server; with no host, Mailer decides.
	SMTP SMTPConfig
	// Mailer overrides SMTP (the dev command passes NewLogMailer when no SMTP host
	// is configured). Nil with no SMTP host means emails cannot be sent: invitations
	// then need skip_email.
	Mailer Mailer
}

// initKeysMFAInvites sets up the API key cache, TOTP sealing and invitation mail.
func (s *Service) initKeysMFAInvites(cfg Config, deps Deps) error {
	if !cfg.APIKeyCache.Disabled {
		c := cfg.APIKeyCache
		s.keyCache = newAPIKeyCache(deps.KV, c.LocalTTL, c.RemoteTTL, c.Size, s.logger)
		s.keyCache.bus = deps.Bus
	}
	sealer := s.sealer
	issuer := cfg.MFA.Issuer
	if issuer == "" {
		issuer = "Manushya"
	}
	var pw passwordChecker
	if s.tokens != nil && s.tokens.hasher != nil {
		pw = s.tokens.hasher
	} else {
		pw = newHasher(0, 0)
	}
	s.mfa = mfaConfig{sealer: sealer, issuer: issuer, passwords: pw}
	s.invites = inviteConfig{acceptURL: cfg.Invitations.AcceptURL, ttl: cfg.Invitations.TTL, passwords: pw, mailer: cfg.Invitations.Mailer}
	if cfg.Invitations.SMTP.Host != "" {
		var err error
		if s.invites.mailer, err = NewSMTPMailer(cfg.Invitations.SMTP); err != nil {
			return fmt.Errorf("identity: invitations smtp: %w", err)
		}
	}
	if s.tokens != nil {
		s.SetSecondFactor(s.MFASecondFactor())
	}
	return nil
}

// mfaSealer opens TOTP secrets sealed before the keyring: under the configured key,
// its previous keys, or the key derived from the pepper.
func mfaSealer(cfg MFAConfig, pepper string) (*secretbox.Keyring, error) {
	id := cfg.EncryptionKeyID
	if id == "" {
		id = "mfa1"
	}
	derived, err := hkdf.Key(sha256.New, []byte(pepper), nil, "manushya identity mfa-secret key", 32)
	if err != nil {
		return nil, fmt.Errorf("identity: derive mfa key: %w", err)
	}
	fromPepper, err := secretbox.New("pepper-mfa1", derived)
	if err != nil {
		return nil, err
	}
	cur := fromPepper
	old := []*secretbox.Box{fromPepper}
	if cfg.EncryptionKey != "" {
		key, err := secretbox.ParseKey(cfg.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("identity: mfa encryption key: %w", err)
		}
		if cur, err = secretbox.New(id, key); err != nil {
			return nil, err
		}
	}
	for oid, okey := range cfg.PreviousEncryptionKeys {
		k, err := secretbox.ParseKey(okey)
		if err != nil {
			return nil, fmt.Errorf("identity: mfa previous key %s: %w", oid, err)
		}
		b, err := secretbox.New(oid, k)
		if err != nil {
			return nil, err
		}
		old = append(old, b)
	}
	return secretbox.NewKeyring(cur, old...), nil
}

// startKeyCache subscribes the API key cache to key and identity changes.
func (s *Service) startKeyCache(ctx context.Context, workers *worker.Group) error {
	if s.keyCache == nil || s.keyCache.bus == nil {
		return nil
	}
	subs, err := s.keyCache.subscribe(s.keyCache.bus)
	if err != nil {
		return fmt.Errorf("identity: subscribe api key revocations: %w", err)
	}
	workers.Go(ctx, "identity api key cache eviction", func(ctx context.Context) error {
		<-ctx.Done()
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		return nil
	})
	return nil
}
