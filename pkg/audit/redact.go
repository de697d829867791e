package audit

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
)

// secretish are parts of key names whose values never enter the audit log.
var secretish = []string{"secret", "password", "token", "api_key", "apikey", "key_hash", "credential", "private_key", "mfa_code", "backup_code",
	// An MFA enrolment's otpauth URI and its QR code carry the TOTP secret.
	"otpauth", "qr_code"}

// Redacted replaces the value of a secret-looking key.
const Redacted = "[redacted]"

// Redact replaces the values of secret-looking keys at any depth of a JSON
// document. Anything that is not JSON becomes nil rather than passing through.
func Redact(raw json.RawMessage) json.RawMessage { return redactWith(raw, nil) }

// redactWith is Redact plus the exact key names in extra (RedactKeys).
func redactWith(raw json.RawMessage, extra map[string]bool) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	out, err := json.Marshal(redactValue(v, extra))
	if err != nil {
		return nil
	}
	return out
}

// Secretish reports whether a key name looks like it holds a secret.
func Secretish(key string) bool {
	lk := strings.ToLower(key)
	for _, s := range secretish {
		if strings.Contains(lk, s) {
			return true
		}
	}
	return false
}

func redactValue(v any, extra map[string]bool) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if Secretish(k) || extra[k] {
				t[k] = Redacted
			} else {
				t[k] = redactValue(val, extra)
			}
		}
		return t
	case []any:
		for i := range t {
			t[i] = redactValue(t[i], extra)
		}
		return t
	}
	return v
}

// redactions collects the key names a handler asks its request's record to
// redact.
type redactions struct {
	mu   sync.Mutex
	keys map[string]bool
}

type redactionsKey struct{}

// withRedactions gives the handler's context a place for RedactKeys.
func withRedactions(ctx context.Context) (context.Context, *redactions) {
	r := &redactions{keys: map[string]bool{}}
	return context.WithValue(ctx, redactionsKey{}, r), r
}

// RedactKeys makes the audit record of the current request replace the values
// of these exact key names, at any depth of its request and response, on top of
// the secret-looking ones: for names only the handler knows to be sensitive
// (a tenant's sensitive claims). Outside an audited request it does nothing.
func RedactKeys(ctx context.Context, keys ...string) {
	r, ok := ctx.Value(redactionsKey{}).(*redactions)
	if !ok || len(keys) == 0 {
		return
	}
	r.mu.Lock()
	for _, k := range keys {
		r.keys[k] = true
	}
	r.mu.Unlock()
}

func (r *redactions) snapshot() map[string]bool {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return nil
	}
	out := make(map[string]bool, len(r.keys))
	for k := range r.keys {
		out[k] = true
	}
	return out
}
