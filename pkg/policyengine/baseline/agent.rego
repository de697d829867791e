# Agents work with memories; the memory service checks that a memory is theirs or
# belongs to an identity they act for.
package builtin.agent

match := true

reason := "agents work with their own memories"
