# Users work with memories; the memory service checks that a memory is theirs.
package builtin.user

match := true

reason := "users work with their own memories"
