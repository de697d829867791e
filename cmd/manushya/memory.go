package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"github.com/manushya-ai/manushya/pkg/auth"
	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/keyring"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/pkg/telemetry"
	"github.com/manushya-ai/manushya/services/embedding"
	"github.com/manushya-ai/manushya/services/memory"
	"github.com/manushya-ai/manushya/services/memory/store"
)

const memoryUsage = `usage: manushya memory reembed (--tenant=<uuid> ... | --all-tenants) [--model=<name>] [--batch-size=256] [--force]

Re-embeds memories after a change of embedding model, batch by batch, with the
embedding providers of this configuration (embedding.providers), in process.
Memories already embedded with the model are skipped, so an interrupted run
resumes where it stopped; --force re-embeds them too. The sealed texts of tenants
with memory text encryption are opened with the keyring of this configuration
(encryption.kek, encryption.previous_keks)`

func memoryCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "reembed" {
		return fmt.Errorf("usage: %s", strings.TrimPrefix(memoryUsage, "usage: "))
	}
	var (
		tenants   []string
		all       bool
		model     string
		batchSize int
		force     bool
	)
	cfg, printed, err := load("memory reembed", args[1:], config.ModeMigrate, func(fs *pflag.FlagSet) {
		fs.StringSliceVar(&tenants, "tenant", nil, "id of a tenant to re-embed (repeatable)")
		fs.BoolVar(&all, "all-tenants", false, "re-embed every tenant")
		fs.StringVar(&model, "model", "", "embedding model (default: memory.embedding_model, else the first provider's)")
		fs.IntVar(&batchSize, "batch-size", 256, "memories per embedding call and per transaction")
		fs.BoolVar(&force, "force", false, "also re-embed memories already embedded with the model")
	})
	if err != nil || printed {
		return err
	}
	if all == (len(tenants) > 0) {
		return fmt.Errorf("memory reembed: give either --tenant or --all-tenants\n\n%s", memoryUsage)
	}
	if batchSize < 1 || batchSize > 2048 {
		return fmt.Errorf("memory reembed: --batch-size must be between 1 and 2048")
	}
	var ids []uuid.UUID
	for _, t := range tenants {
		id, err := uuid.Parse(t)
		if err != nil {
			return fmt.Errorf("memory reembed: --tenant %q is not a UUID", t)
		}
		ids = append(ids, id)
	}
	logger, err := telemetry.NewLogger(cfg.Log.Level, cfg.Log.Format, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.Database.URL == "" {
		return errors.New("memory reembed: database.url is required")
	}
	pool, err := postgres.Connect(ctx, cfg.Database.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool, memory.Migrations()); err != nil {
		return err
	}
	if all {
		// The tenant registry belongs to the identity service; it carries no
		// row-level security, so the application role lists it.
		rows, err := pool.Query(ctx, "SELECT id FROM identity.tenants ORDER BY id")
		if err != nil {
			return fmt.Errorf("memory reembed: list tenants: %w", err)
		}
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("memory reembed: list tenants: %w", err)
		}
	}

	providers, err := embedding.ParseProviders(cfg.Embedding.Providers)
	if err != nil {
		return fmt.Errorf("embedding.providers: %w", err)
	}
	e := cfg.Embedding
	em, err := embedding.New(embedding.Config{
		Providers: providers, Fallback: e.Fallback, MaxTexts: max(e.MaxTexts, batchSize), MaxTextChars: e.MaxTextChars,
	}, embedding.Deps{Logger: logger})
	if err != nil {
		return err
	}
	if model == "" {
		// The model the servers' memory service asks for (memory.embedding_model),
		// or when it names none their default: the first of the fallback order.
		// It is then always asked for by name, so that a provider outage stops
		// the run instead of storing a fallback model's vectors.
		model = cfg.Memory.EmbeddingModel
	}
	if model == "" {
		model = em.Service().Router().Providers()[0].Model.Name
	}
	embed := func(ctx context.Context, tenant uuid.UUID) memory.EmbedFunc {
		return func(ctx context.Context, texts []string) (string, [][]float32, error) {
			ctx = auth.AsService(ctx, "memory", tenant.String())
			out, err := em.Service().Embed(ctx, texts, model, store.Dimensions)
			if err != nil {
				return "", nil, err
			}
			return out.Model, out.Vectors, nil
		}
	}
	keys, closeKeys, err := reembedKeyring(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeKeys()
	var total memory.ReembedResult
	for _, t := range ids {
		res, err := memory.Reembed(ctx, pool, t, memory.ReembedOptions{
			Model: model, Force: force, BatchSize: batchSize, Embed: embed(ctx, t), Logger: logger, Keys: keys,
		})
		total.Embedded += res.Embedded
		total.Skipped += res.Skipped
		if err != nil {
			return err
		}
	}
	fmt.Printf("re-embedded %d memories of %d tenants (%d skipped: edited during the run, re-queued)\n", total.Embedded, len(ids), total.Skipped)
	return nil
}

// reembedKeyring opens the keyring the servers use (the KEK of encryption.kek,
// or derived from auth.api_key_pepper as serve does without one), to open the
// sealed texts of tenants with memory text encryption. It only reads keys: the
// re-encryption job stays with the servers.
func reembedKeyring(ctx context.Context, cfg *config.Config) (*keyring.Keyring, func(), error) {
	var kek []byte
	var err error
	if cfg.Encryption.KEK != "" {
		kek, err = keyring.ParseKEK(cfg.Encryption.KEK)
	} else {
		kek, err = keyring.DeriveKEK(cfg.Auth.APIKeyPepper)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("encryption.kek: %w", err)
	}
	previous, err := keyring.ParseKEKs(cfg.Encryption.PreviousKEKs)
	if err != nil {
		return nil, nil, fmt.Errorf("encryption.previous_keks: %w", err)
	}
	kms, err := keyring.NewLocalKMS(kek, previous...)
	if err != nil {
		return nil, nil, err
	}
	pool, err := postgres.Connect(ctx, cfg.Database.URL, postgres.WithMaxConns(2))
	if err != nil {
		return nil, nil, err
	}
	kr, err := keyring.New(keyring.Options{Pool: pool, KMS: kms})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return kr, pool.Close, nil
}
