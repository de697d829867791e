# Every authenticated identity may act on itself: read and export itself, log out,
# manage its own MFA and password and its own sessions (the session handlers check that the
# session is the caller's unless the caller is an admin).
package builtin.self

self_permissions := {
	"identity.read_self",
	"identity.export_self",
	"auth.logout",
	"auth.mfa_setup",
	"auth.mfa_verify",
	"auth.mfa_disable",
	"auth.change_password",
	"session.read",
	"session.list",
	"session.revoke",
}

default match := false

match if concat(".", [input.resource.type, input.action]) in self_permissions

reason := "every identity may act on itself" if match
