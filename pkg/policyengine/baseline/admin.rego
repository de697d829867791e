# Admins manage their tenant.
package builtin.admin

match := true

reason := "admins manage their tenant"
