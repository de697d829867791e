package app

import (
	"context"
	"fmt"

	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/module"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/worker"
	"github.com/manushya-ai/manushya/services/identity"
	"github.com/manushya-ai/manushya/services/keyadmin"
)

// modKeyring is the hidden module of field-level encryption: every service that
// seals secrets depends on it.
const modKeyring = "keyring"

// keyringPoolConns sizes the keyring's own pool: key loads never wait for the
// connections that the sealing transactions hold.
const keyringPoolConns = 4

// initKeyring builds the keyring (KEK from encryption.kek, older ones from
// encryption.previous_keks), serves EncryptionService over it and runs its
// re-encryption job in the background.
func (a *App) initKeyring(ctx context.Context) (module.Service, error) {
	kms, err := a.keyringKMS()
	if err != nil {
		return nil, err
	}
	pool, err := postgres.Connect(ctx, a.cfg.Database.URL, postgres.WithMaxConns(keyringPoolConns))
	if err != nil {
		return nil, err
	}
	kr, err := keyring.New(keyring.Options{
		Pool: pool, KMS: kms, Logger: a.logger, Registerer: a.registry,
		CacheTTL: a.cfg.Encryption.CacheTTL, Interval: a.cfg.Encryption.ReencryptInterval,
		RotateAfter: a.cfg.Encryption.DEKRotation,
		Tenants:     identity.TenantIDs(a.pool),
		// Development databases are shared by checkouts with different keys.
		ReplaceUnusable: a.mode == config.ModeDev,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	a.keys = kr
	// EncryptionService (status, rotation, passes on demand) is served wherever the
	// keyring runs.
	keyadmin.New(a.background, kr, a.logger).Register(a.server)
	loops := worker.NewGroup(a.logger)
	return module.Funcs{
		StartFunc: func(ctx context.Context) error {
			loops.Go(ctx, "keyring re-encryption", kr.Run)
			return nil
		},
		StopFunc: func(ctx context.Context) error {
			err := loops.Stop(ctx)
			pool.Close()
			return err
		},
	}, nil
}

func (a *App) keyringKMS() (*keyring.LocalKMS, error) {
	var kek []byte
	var err error
	if a.cfg.Encryption.KEK != "" {
		if kek, err = keyring.ParseKEK(a.cfg.Encryption.KEK); err != nil {
			return nil, fmt.Errorf("encryption.kek: %w", err)
		}
	} else {
		a.logger.Warn("encryption.kek is not set: deriving the key-encryption key from auth.api_key_pepper; set a key of its own in production")
		if kek, err = keyring.DeriveKEK(a.cfg.Auth.APIKeyPepper); err != nil {
			return nil, err
		}
	}
	previous, err := keyring.ParseKEKs(a.cfg.Encryption.PreviousKEKs)
	if err != nil {
		return nil, fmt.Errorf("encryption.previous_keks: %w", err)
	}
	return keyring.NewLocalKMS(kek, previous...)
}
