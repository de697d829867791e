// Package usage is the usage service. It meters usage and serves rate-limit administration and monitoring.
//
// Its RPCs are declared in proto/manushya and registered here; those whose behaviour
// is not built yet answer UNIMPLEMENTED naming the method.
package usage
