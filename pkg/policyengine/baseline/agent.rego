# Agents work with their own memories: those they own or keep as agent. Before a
# request's memory is known (the check of the call itself) there is no owner yet,
# and the memory service keeps the call to the caller's own memories in its
# queries. A tenant policy may grant more, such as the memories of the identity
# the agent acts for (input.principal.acts_for).
# The policy covers the memory actions of pkg/authz.MemoryOwnerActions; the
# tenant's memory settings (memory.settings_read, memory.settings_update) are
# the admins'.
package builtin.agent

default match := false

match if input.resource.owner_id == ""

match if input.resource.owner_id == input.principal.identity_id

match if {
	input.principal.identity_id != ""
	input.resource.attributes.agent_id == input.principal.identity_id
}

reason := "agents work with their own memories" if match
