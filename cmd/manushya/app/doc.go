// Package app is Manushya's composition root: it declares every module (the services,
// the gateway and the infrastructure they stand on), wires them from the
// configuration, and runs the chosen targets. It is the only package that imports
// the services and the gateway; they never import each other.
package app
