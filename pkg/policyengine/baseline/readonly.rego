# Readonly identities read their tenant: every action that changes nothing.
package builtin.readonly

default match := false

match if input.action in {"read", "list", "search", "read_self", "embed"}

reason := "readonly identities read their tenant" if match
