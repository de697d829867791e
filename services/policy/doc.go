// Package policy is the policy service. It stores the policies every service enforces.
//
// Its RPCs are declared in proto/manushya and registered here; those whose behaviour
// is not built yet answer UNIMPLEMENTED naming the method.
package policy
