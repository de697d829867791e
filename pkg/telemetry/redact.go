package telemetry

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces secrets in printed configuration and logs.
const Redacted = "****"

// RedactURL masks the password in a connection URL ("postgres://app:****@db/x"),
// secret query parameters (password, sslpassword, token...), passwords in
// PostgreSQL key=value strings ("host=db password=****"), and each URL of a
// comma-separated list (NATS cluster URLs). Other parts are left as written, so
// the result still shows where a process connects to.
func RedactURL(s string) string {
	if strings.Count(s, "://") > 1 && strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactOne(p)
		}
		return strings.Join(parts, ",")
	}
	return redactOne(s)
}

func redactOne(s string) string {
	if !strings.Contains(s, "://") {
		if strings.Contains(s, "=") {
			return dsnPassword.ReplaceAllString(s, "${1}"+Redacted)
		}
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		// Unparseable, probably an unescaped character in the password: hide all
		// of the user info rather than guess where the password ends.
		scheme, rest, _ := strings.Cut(s, "://")
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return scheme + "://" + Redacted + rest[at:]
		}
		return s
	}
	out := s
	if _, ok := u.User.Password(); ok {
		// url.URL.Redacted writes "xxxxx"; setting "****" ourselves would come out
		// percent-encoded, so swap the placeholder.
		out = strings.Replace(u.Redacted(), ":xxxxx@", ":"+Redacted+"@", 1)
	}
	if u.RawQuery != "" {
		base, query, _ := strings.Cut(out, "?")
		query, frag, hasFrag := strings.Cut(query, "#")
		query = redactQuery(query)
		out = base + "?" + query
		if hasFrag {
			out += "#" + frag
		}
	}
	return out
}

func redactQuery(q string) string {
	params := strings.Split(q, "&")
	for i, p := range params {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		if name, err := url.QueryUnescape(k); err == nil && secretParam(name) {
			params[i] = k + "=" + Redacted
		}
	}
	return strings.Join(params, "&")
}

func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"pass", "secret", "token", "apikey", "api_key"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// dsnPassword matches password settings in libpq key=value strings, quoted or not.
var dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
