// Package deprules holds the test that enforces the architecture's import rules
// (DESIGN.md section 3) by reading `go list -deps -json`.
package deprules
