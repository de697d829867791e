package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// SMTPConfig is where invitation emails go out.
type SMTPConfig struct {
	// Host of the SMTP server; empty means no email is sent.
	Host string
	// Port; defaults to 587 (STARTTLS), 465 for TLSMode "tls", 25 for "none".
	Port int
	// Username and Password for SMTP AUTH PLAIN; empty skips authentication.
	Username string
	Password string
	// From is the sender, e.g. "Manushya <no-reply@example.com>".
	From string
	// TLSMode is "starttls" (the default: STARTTLS is required), "tls" (implicit TLS,
	// port 465) or "none" (plain text; only for a relay on a trusted network).
	TLSMode string
	// InsecureSkipVerify turns off certificate checks (tests against self-signed
	// servers only).
	InsecureSkipVerify bool
	// Timeout bounds one delivery; defaults to 15 seconds.
	Timeout time.Duration
}

// Mail is one plain-text email.
type Mail struct {
	To      string
	Subject string
	Text    string
}

// Mailer delivers emails.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// smtpMailer delivers over SMTP with net/smtp.
type smtpMailer struct {
	cfg  SMTPConfig
	from *mail.Address
}

// NewSMTPMailer checks cfg and returns a mailer for it.
func NewSMTPMailer(cfg SMTPConfig) (Mailer, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: host is required")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("smtp: from %q: %w", cfg.From, err)
	}
	switch cfg.TLSMode {
	case "":
		cfg.TLSMode = "starttls"
	case "starttls", "tls", "none":
	default:
		return nil, fmt.Errorf("smtp: tls mode %q: want starttls, tls or none", cfg.TLSMode)
	}
	if cfg.Port == 0 {
		cfg.Port = map[string]int{"starttls": 587, "tls": 465, "none": 25}[cfg.TLSMode]
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	return &smtpMailer{cfg: cfg, from: from}, nil
}

// Send implements Mailer.
func (m *smtpMailer) Send(ctx context.Context, msg Mail) error {
	to, err := mail.ParseAddress(msg.To)
	if err != nil {
		return fmt.Errorf("smtp: recipient: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(m.cfg.Host, strconv.Itoa(m.cfg.Port))
	tlsCfg := &tls.Config{ServerName: m.cfg.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.cfg.InsecureSkipVerify} //nolint:gosec // opt-in, tests only
	var conn net.Conn
	if m.cfg.TLSMode == "tls" {
		conn, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp: dial %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("smtp: greeting: %w", err)
	}
	defer func() { _ = c.Close() }()
	if m.cfg.TLSMode == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("smtp: server does not offer STARTTLS")
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("smtp: starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if err := c.Auth(smtpPlainAuth{user: m.cfg.Username, pass: m.cfg.Password, tlsOn: m.cfg.TLSMode != "none"}); err != nil {
			return fmt.Errorf("smtp: auth: %w", err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("smtp: mail from: %w", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return fmt.Errorf("smtp: rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: data: %w", err)
	}
	if _, err := w.Write(composeMail(m.from, to, msg)); err != nil {
		return fmt.Errorf("smtp: write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: end data: %w", err)
	}
	return c.Quit()
}

// smtpPlainAuth is AUTH PLAIN that, unlike smtp.PlainAuth, also allows a plain
// connection when the operator chose TLSMode "none" explicitly.
type smtpPlainAuth struct {
	user, pass string
	tlsOn      bool
}

func (a smtpPlainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && a.tlsOn {
		return "", nil, errors.New("refusing to send credentials without TLS")
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a smtpPlainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge")
	}
	return nil, nil
}

// composeMail builds the RFC 5322 message. Header values are stripped of line
// breaks, so nothing a caller supplies can add a header.
func composeMail(from, to *mail.Address, msg Mail) []byte {
	var b strings.Builder
	header := func(k, v string) {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		b.WriteString(k + ": " + v + "\r\n")
	}
	header("From", from.String())
	header("To", to.String())
	header("Subject", mime2047(msg.Subject))
	header("Date", time.Now().UTC().Format(time.RFC1123Z))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=UTF-8")
	header("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for line := range strings.SplitSeq(strings.ReplaceAll(msg.Text, "\r\n", "\n"), "\n") {
		// Dot-stuffing is done by net/smtp's data writer; only line ends here.
		b.WriteString(line + "\r\n")
	}
	return []byte(b.String())
}

func mime2047(s string) string {
	for _, r := range s {
		if r > 127 {
			return mimeQ(s)
		}
	}
	return s
}

func mimeQ(s string) string {
	const q = "=?UTF-8?Q?"
	var b strings.Builder
	b.WriteString(q)
	for _, c := range []byte(s) {
		switch {
		case c == ' ':
			b.WriteByte('_')
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	b.WriteString("?=")
	return b.String()
}

// logMailer is the development mailer of `manushya dev` when no SMTP host is set:
// it logs each email, invitation link included, on purpose, so a developer can
// accept invitations without a mail server. Never used in production.
type logMailer struct{ logger *slog.Logger }

// NewLogMailer returns the development mailer that logs emails instead of sending.
func NewLogMailer(logger *slog.Logger) Mailer { return logMailer{logger: logger} }

func (l logMailer) Send(ctx context.Context, m Mail) error {
	l.logger.InfoContext(ctx, "dev mailer: email not sent (no SMTP host); contents follow", "to", m.To, "subject", m.Subject, "body", m.Text)
	return nil
}
