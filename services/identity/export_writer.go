package identity

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/manushya-ai/manushya/pkg/auth"
)

// Content types of the two export formats.
const (
	ContentTypeJSONLines = "application/x-ndjson"
	ContentTypeZip       = "application/zip"
)

// ExportFileName is the JSON-lines file inside a zip export.
const ExportFileName = "export.jsonl"

// exportChunk is the size at which buffered output is sent as one message.
const exportChunk = 64 << 10

// exportWriter turns records into the export's bytes: JSON lines, hashed as
// written, optionally inside a zip archive, sent in chunks of about exportChunk
// bytes. A JSON-lines chunk holds whole lines, each ending in a newline, so the
// bytes a client receives are the same over gRPC and REST.
type exportWriter struct {
	out    *chunkSender
	zip    *zip.Writer
	body   io.Writer // where lines go: the chunk buffer, or the zip entry
	digest hash.Hash

	counts  map[string]int
	records int
}

// chunkSender buffers bytes and sends them as HttpBody messages.
type chunkSender struct {
	send        func(*httpbody.HttpBody) error
	contentType string
	buf         bytes.Buffer
}

func (c *chunkSender) Write(p []byte) (int, error) { return c.buf.Write(p) }

func (c *chunkSender) flush(force bool) error {
	if c.buf.Len() == 0 || (!force && c.buf.Len() < exportChunk) {
		return nil
	}
	err := c.send(&httpbody.HttpBody{ContentType: c.contentType, Data: bytes.Clone(c.buf.Bytes())})
	c.buf.Reset()
	return err
}

func newExportWriter(send func(*httpbody.HttpBody) error, zipped bool, now time.Time) (*exportWriter, error) {
	w := &exportWriter{
		out:    &chunkSender{send: send, contentType: ContentTypeJSONLines},
		digest: sha256.New(), counts: map[string]int{},
	}
	w.body = w.out
	if zipped {
		w.out.contentType = ContentTypeZip
		w.zip = zip.NewWriter(w.out)
		entry, err := w.zip.CreateHeader(&zip.FileHeader{Name: ExportFileName, Method: zip.Deflate, Modified: now})
		if err != nil {
			return nil, fmt.Errorf("start zip entry: %w", err)
		}
		w.body = entry
	}
	return w, nil
}

var exportJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// exportLine encodes one record as a line: {"kind": kind, "data": data} and a
// newline. Messages take their API JSON form (the REST answers' shape).
func exportLine(kind string, data any) ([]byte, error) {
	var raw []byte
	var err error
	if m, ok := data.(proto.Message); ok {
		raw, err = exportJSON.Marshal(m)
	} else {
		raw, err = json.Marshal(data)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s record: %w", kind, err)
	}
	var line bytes.Buffer
	line.WriteString(`{"kind":`)
	k, _ := json.Marshal(kind)
	line.Write(k)
	line.WriteString(`,"data":`)
	// protojson varies its spacing on purpose; a compact line reads the same
	// everywhere.
	if err := json.Compact(&line, raw); err != nil {
		return nil, fmt.Errorf("encode %s record: %w", kind, err)
	}
	line.WriteString("}\n")
	return line.Bytes(), nil
}

// record writes one record, hashing it.
func (w *exportWriter) record(kind string, data any) error {
	line, err := exportLine(kind, data)
	if err != nil {
		return err
	}
	return w.write(kind, line, true)
}

func (w *exportWriter) write(kind string, line []byte, hashed bool) error {
	if hashed {
		w.digest.Write(line)
	}
	if _, err := w.body.Write(line); err != nil {
		return fmt.Errorf("write %s record: %w", kind, err)
	}
	if kind != ExportKindHeader && kind != ExportKindSummary && kind != ExportKindSignature {
		w.counts[kind]++
	}
	w.records++
	return w.out.flush(false)
}

// exportSigner signs the digest of an export's lines; it returns the signature
// record's data.
type exportSigner func(sum string) (map[string]any, error)

// finish writes the signature line over everything written so far, closes the
// archive and sends what is left. It returns the digest (hex).
func (w *exportWriter) finish(sign exportSigner) (string, error) {
	sum := hex.EncodeToString(w.digest.Sum(nil))
	sig, err := sign(sum)
	if err != nil {
		return "", err
	}
	line, err := exportLine(ExportKindSignature, sig)
	if err != nil {
		return "", err
	}
	if err := w.write(ExportKindSignature, line, false); err != nil {
		return "", err
	}
	if w.zip != nil {
		if err := w.zip.Close(); err != nil {
			return "", fmt.Errorf("close zip: %w", err)
		}
	}
	return sum, w.out.flush(true)
}

// ExportClaims is the payload of an export's signature (a compact JWS signed with
// the token-signing key, its kid in the header).
type ExportClaims struct {
	jwt.RegisteredClaims
	// SHA256 is the lower-case hex SHA-256 of every line before the signature's.
	SHA256     string `json:"sha256"`
	IdentityID string `json:"identity_id"`
	TenantID   string `json:"tenant_id"`
}

// ExportJWSType is the "typ" header of an export signature. Access tokens are
// verified with an audience and an expiry that export signatures never carry, so
// one cannot pass for the other.
const ExportJWSType = "manushya-export+jwt"

// signExport returns the signer of one export: the current token-signing key
// signs {sha256, identity_id, tenant_id, iss, iat}.
func (s *Service) signExport(tenant, id uuid.UUID, at time.Time) exportSigner {
	return func(sum string) (map[string]any, error) {
		key, err := s.tokens.keys.signer()
		if err != nil {
			return nil, err
		}
		claims := &ExportClaims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: s.tokens.cfg.Issuer, IssuedAt: jwt.NewNumericDate(at)},
			SHA256:           sum, IdentityID: id.String(), TenantID: tenant.String(),
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = key.kid
		tok.Header["typ"] = ExportJWSType
		jws, err := tok.SignedString(key.priv)
		if err != nil {
			return nil, errors.Join(errors.New("sign export"), err)
		}
		return map[string]any{"alg": auth.AccessTokenAlg, "kid": key.kid, "sha256": sum, "jws": jws}, nil
	}
}
