package identity

import (
	"context"
	"net"
	"net/mail"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestComposeMailKeepsHeadersWhole(t *testing.T) {
	t.Parallel()
	from := &mail.Address{Name: "Manushya", Address: "no-reply@example.com"}
	to := &mail.Address{Address: "a@example.com"}
	raw := string(composeMail(from, to, Mail{Subject: "Join Évil\r\nBcc: victim@example.com", Text: "line one\nline two"}))
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	require.True(t, ok)
	require.NotContains(t, head, "\r\nBcc:")
	require.Contains(t, head, "Subject: =?UTF-8?Q?")
	require.Equal(t, "line one\r\nline two\r\n", body)
}

func TestSMTPMailerConfig(t *testing.T) {
	t.Parallel()
	_, err := NewSMTPMailer(SMTPConfig{Host: "mail.example.com", From: "x@example.com", TLSMode: "sometimes"})
	require.Error(t, err)
	_, err = NewSMTPMailer(SMTPConfig{Host: "mail.example.com", From: "not an address"})
	require.Error(t, err)
	m, err := NewSMTPMailer(SMTPConfig{Host: "mail.example.com", From: "x@example.com"})
	require.NoError(t, err)
	require.Equal(t, 587, m.(*smtpMailer).cfg.Port)
	require.Equal(t, "starttls", m.(*smtpMailer).cfg.TLSMode)
}

// A server that does not offer STARTTLS gets nothing when STARTTLS is required:
// credentials and the invitation never cross a plain connection.
func TestSMTPMailerRequiresSTARTTLS(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = lis.Close() })
	got := make(chan string, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		_, _ = c.Write([]byte("220 plain ESMTP\r\n"))
		buf := make([]byte, 4096)
		var seen strings.Builder
		for {
			n, err := c.Read(buf)
			if err != nil {
				got <- seen.String()
				return
			}
			seen.Write(buf[:n])
			if strings.HasPrefix(strings.ToUpper(string(buf[:n])), "EHLO") {
				_, _ = c.Write([]byte("250-plain\r\n250 AUTH PLAIN\r\n"))
			} else {
				_, _ = c.Write([]byte("250 OK\r\n"))
			}
		}
	}()
	m, err := NewSMTPMailer(SMTPConfig{
		Host: "127.0.0.1", Port: lis.Addr().(*net.TCPAddr).Port, From: "x@example.com",
		Username: "user", Password: "smtp-secret",
	})
	require.NoError(t, err)
	err = m.Send(context.Background(), Mail{To: "a@example.com", Subject: "s", Text: "inv_token"})
	require.ErrorContains(t, err, "STARTTLS")
	seen := <-got
	require.NotContains(t, seen, "AUTH")
	require.NotContains(t, seen, "inv_token")
}
