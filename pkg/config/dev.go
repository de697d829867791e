package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DevPepperFile is the file under dev.data_dir holding the generated pepper.
const DevPepperFile = "api_key_pepper"

// DevKEKFile is the file under dev.data_dir holding the generated key-encryption
// key.
const DevKEKFile = "encryption_kek"

// PrepareDev fills in what `manushya dev` may leave unset. Without
// auth.api_key_pepper it reads the pepper from dev.data_dir, generating it on the
// first run: the pepper must survive restarts, or every API key issued before
// would stop working. The key-encryption key (encryption.kek) is kept the same way:
// losing it would make every sealed secret unreadable.
func (c *Config) PrepareDev() error {
	if c.Auth.APIKeyPepper != "" && c.Encryption.KEK != "" {
		return nil
	}
	if c.Dev.DataDir == "" {
		return errors.New("config: dev.data_dir: required")
	}
	if c.Auth.APIKeyPepper == "" {
		path := filepath.Join(c.Dev.DataDir, DevPepperFile)
		pepper, err := readOrCreateSecret(path)
		if err != nil {
			return fmt.Errorf("config: dev pepper %s: %w", path, err)
		}
		c.Auth.APIKeyPepper = pepper
	}
	if c.Encryption.KEK == "" {
		path := filepath.Join(c.Dev.DataDir, DevKEKFile)
		kek, err := readOrCreateSecret(path)
		if err != nil {
			return fmt.Errorf("config: dev key-encryption key %s: %w", path, err)
		}
		c.Encryption.KEK = kek
	}
	return nil
}

func readOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < MinSecretBytes {
			return "", fmt.Errorf("shorter than %d bytes; delete it to generate a new one", MinSecretBytes)
		}
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails on supported platforms
	s := base64.RawURLEncoding.EncodeToString(raw)

	// Write a temporary file, then link it into place: the link fails if another
	// dev process won the race, and a reader never sees a half-written file.
	tmp, err := os.CreateTemp(filepath.Dir(path), DevPepperFile+".*")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after the link, only the temporary name goes
	if _, err := tmp.WriteString(s + "\n"); err != nil {
		_ = tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readOrCreateSecret(path)
		}
		return "", err
	}
	return s, nil
}
