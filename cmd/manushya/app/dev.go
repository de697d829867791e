package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/manushya-ai/manushya/pkg/config"
	"github.com/manushya-ai/manushya/pkg/postgres"
	"github.com/manushya-ai/manushya/services/identity"
)

// BootstrapFile is where `manushya dev` keeps the first credential, readable by the
// owner only.
const BootstrapFile = "bootstrap.json"

// DefaultTenant is the slug of the tenant `manushya dev` creates on first start.
const DefaultTenant = "default"

// Bootstrap creates the default tenant and its admin key on the first start of a dev
// process, saves them under dataDir (mode 0600) and prints them once with a curl
// example. Later starts only say where the key is.
func (a *App) Bootstrap(ctx context.Context, dataDir string, out io.Writer) error {
	if a.identity == nil {
		return errors.New("bootstrap needs the identity service in this process")
	}
	path := filepath.Join(dataDir, BootstrapFile)
	if _, err := os.Stat(path); err == nil {
		_, err := fmt.Fprintf(out, "\nManushya is running. The admin API key of tenant %q is in %s.\nAPI reference: http://%s/v1/docs\n",
			DefaultTenant, path, a.HTTPAddr())
		return err
	}
	svc := a.identity.Service()
	res, err := svc.Bootstrap(ctx, DefaultTenant, "Default tenant")
	if errors.Is(err, identity.ErrAlreadyBootstrapped) {
		// The database outlived the key file: issue a fresh key rather than lock the
		// developer out.
		res, err = svc.ReissueBootstrapKey(ctx, DefaultTenant)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dataDir, err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save bootstrap credential: %w", err)
	}
	base := "http://" + a.HTTPAddr()
	_, err = fmt.Fprintf(out, `
Manushya is running with tenant %q and its admin API key.
The key is shown once here and saved in %s (mode 0600):

  export MANUSHYA_API_KEY=%s

Try it:

  curl -s -X POST %s/v1/identity/ \
    -H "X-API-Key: $MANUSHYA_API_KEY" -H "Content-Type: application/json" \
    -d '{"external_id":"user@example.com","role":"user","claims":{"name":"John Doe"}}'

API reference: %s/v1/docs
`, DefaultTenant, path, res.APIKey, base, base)
	return err
}

// BootstrapTenant creates a tenant with an admin identity and an operator API key
// directly in the database, for a new production deployment's first credential.
func BootstrapTenant(ctx context.Context, cfg *config.Config, logger *slog.Logger, slug, name string) (*identity.BootstrapResult, error) {
	pool, err := postgres.Connect(ctx, cfg.Database.URL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool, identity.Migrations()); err != nil {
		return nil, err
	}
	m, err := identity.New(identity.Config{APIKeyPepper: cfg.Auth.APIKeyPepper}, identity.Deps{Logger: logger, Pool: pool})
	if err != nil {
		return nil, err
	}
	return m.Service().Bootstrap(ctx, slug, name)
}
