// Package pagination implements the opaque page tokens of every List RPC.
//
// A token carries the keyset cursor (the last row's sort key) and a fingerprint of the
// query's filters, so a token cannot be replayed against a different query. Tokens
// are base64url JSON: opaque to clients, but they carry nothing secret (row-level
// security decides what a cursor can reach).
package pagination

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/manushya-ai/manushya/pkg/apierr"
	errorsv1 "github.com/manushya-ai/manushya/pkg/pb/manushya/errors/v1"
)

// DefaultPageSize applies when a request leaves page_size at 0.
const DefaultPageSize = 50

// MaxPageSize caps page_size whatever the request says.
const MaxPageSize = 1000

// Size returns the effective page size for a requested one.
func Size(requested int32) int32 {
	switch {
	case requested <= 0:
		return DefaultPageSize
	case requested > MaxPageSize:
		return MaxPageSize
	}
	return requested
}

type token struct {
	Cursor string `json:"c"`
	Query  string `json:"q"`
}

// Fingerprint hashes the values that define a query (its filters), in order.
func Fingerprint(parts ...any) string {
	b, _ := json.Marshal(parts)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Encode makes the next_page_token for a page that ended at cursor.
func Encode(cursor, fingerprint string) string {
	b, _ := json.Marshal(token{Cursor: cursor, Query: fingerprint})
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode returns the cursor of a page_token, or "" for the first page. The error names
// the page_token field, so clients get a 400 that says what is wrong.
func Decode(pageToken, fingerprint string) (string, error) {
	if pageToken == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(pageToken)
	var t token
	if err == nil {
		err = json.Unmarshal(raw, &t)
	}
	if err != nil || t.Cursor == "" {
		return "", invalid("is not a token this server issued")
	}
	if t.Query != fingerprint {
		return "", invalid("was issued for a query with different filters")
	}
	return t.Cursor, nil
}

func invalid(why string) error {
	return apierr.InvalidArgumentReason(errorsv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN,
		apierr.Violation{Field: "page_token", Description: fmt.Sprintf("page_token %s", why)})
}

// DecodeUUID is Decode for lists whose cursor is a row id: nil for the first page,
// and a token whose cursor is not a UUID is refused like any foreign token.
func DecodeUUID(pageToken, fingerprint string) (*uuid.UUID, error) {
	cursor, err := Decode(pageToken, fingerprint)
	if err != nil || cursor == "" {
		return nil, err
	}
	id, err := uuid.Parse(cursor)
	if err != nil {
		return nil, invalid("is not a token this server issued")
	}
	return &id, nil
}
