# Admins manage their tenant, its memory settings (memory.settings_read,
# memory.settings_update) included.
package builtin.admin

match := true

reason := "admins manage their tenant"
