package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/manushya-ai/manushya/pkg/config"
)

func TestEncryptionKEKAndItsOlderName(t *testing.T) {
	t.Parallel()
	kek := strings.Repeat("ab", 32)
	base := []string{"MANUSHYA_DATABASE_URL=postgres://a@b/c", "MANUSHYA_NATS_URL=nats://127.0.0.1:4222", "MANUSHYA_AUTH_API_KEY_PEPPER=" + pepper}

	cfg, err := config.Load(nil, append(base, "MANUSHYA_AUTH_ENCRYPTION_KEY="+kek))
	require.NoError(t, err)
	require.Equal(t, kek, cfg.Encryption.KEK, "auth.encryption_key is accepted for encryption.kek")
	require.NoError(t, cfg.Validate(config.ModeServe))

	cfg, err = config.Load(nil, append(base, "MANUSHYA_ENCRYPTION_KEK="+kek, "MANUSHYA_AUTH_ENCRYPTION_KEY="+strings.Repeat("cd", 32)))
	require.NoError(t, err)
	require.ErrorContains(t, cfg.Validate(config.ModeServe), "auth.encryption_key: differs from encryption.kek")

	cfg, err = config.Load(nil, append(base, "MANUSHYA_ENCRYPTION_KEK=short", "MANUSHYA_ENCRYPTION_PREVIOUS_KEKS="+kek+",nope"))
	require.NoError(t, err)
	err = cfg.Validate(config.ModeServe)
	require.ErrorContains(t, err, "encryption.kek: must be 32 bytes")
	require.ErrorContains(t, err, "encryption.previous_keks: entry 2")
	require.NotContains(t, err.Error(), kek, "secrets are never echoed")

	// Both keys are masked when the configuration is printed.
	cfg, err = config.Load(nil, append(base, "MANUSHYA_ENCRYPTION_KEK="+kek, "MANUSHYA_ENCRYPTION_PREVIOUS_KEKS="+kek))
	require.NoError(t, err)
	out, err := cfg.RedactedYAML()
	require.NoError(t, err)
	require.NotContains(t, string(out), kek)
}

func TestDevGeneratesAndKeepsTheKEK(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := config.Load(nil, []string{"MANUSHYA_DEV_DATA_DIR=" + dir})
	require.NoError(t, err)
	require.NoError(t, cfg.PrepareDev())
	require.NotEmpty(t, cfg.Encryption.KEK)
	fi, err := os.Stat(filepath.Join(dir, config.DevKEKFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	again, err := config.Load(nil, []string{"MANUSHYA_DEV_DATA_DIR=" + dir, "MANUSHYA_DATABASE_URL=postgres://a@b/c"})
	require.NoError(t, err)
	require.NoError(t, again.PrepareDev())
	require.Equal(t, cfg.Encryption.KEK, again.Encryption.KEK, "the KEK survives restarts")
	require.NoError(t, again.Validate(config.ModeDev))
}
