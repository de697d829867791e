# API-key and token scopes narrow what the roles allow; they never add to it.
# A credential without scopes is limited by its roles alone. "read" allows the
# actions that change nothing, "write", "admin" and "*" allow everything, and
# "<resource>.*" or an exact "<resource>.<action>" allow just that.
package builtin.scopes

read_actions := {"read", "list", "search", "read_self", "embed"}

permission := concat(".", [input.resource.type, input.action])

default match := false

match if {
	count(input.principal.scopes) > 0
	not allowed
}

allowed if {
	some s in input.principal.scopes
	s in {"*", "admin", "write"}
}

allowed if {
	"read" in input.principal.scopes
	input.action in read_actions
}

allowed if permission in input.principal.scopes

allowed if concat("", [input.resource.type, ".*"]) in input.principal.scopes

reason := sprintf("the credential's scopes do not allow %s", [permission]) if match
