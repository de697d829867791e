//go:build !linux

package identity

// lowerThreadPriority is a no-op where threads cannot be given their own priority.
func lowerThreadPriority() {}
