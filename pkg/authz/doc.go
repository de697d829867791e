// Package authz decides whether a principal may call an RPC.
//
// Every RPC declares its access in the proto (option manushya.options.v1.access): a
// permission "<resource>.<action>", or public, or operator-only. AccessFor reads that
// declaration once per method from the compiled descriptors. The Authorizer then
// decides; until the policy service takes over, BuiltinRoles decides from the
// principal's roles and API-key scopes alone.
package authz
