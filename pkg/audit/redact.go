package audit

import (
	"encoding/json"
	"strings"
)

// secretish are parts of key names whose values never enter the audit log.
var secretish = []string{"secret", "password", "token", "api_key", "apikey", "key_hash", "credential", "private_key", "mfa_code", "backup_code",
	// An MFA enrolment's otpauth URI and its QR code carry the TOTP secret.
	"otpauth", "qr_code"}

// Redacted replaces the value of a secret-looking key.
const Redacted = "[redacted]"

// Redact replaces the values of secret-looking keys at any depth of a JSON
// document. Anything that is not JSON becomes nil rather than passing through.
func Redact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	out, err := json.Marshal(redactValue(v))
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

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if Secretish(k) {
				t[k] = Redacted
			} else {
				t[k] = redactValue(val)
			}
		}
		return t
	case []any:
		for i := range t {
			t[i] = redactValue(t[i])
		}
		return t
	}
	return v
}
