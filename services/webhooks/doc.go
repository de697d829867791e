// Package webhooks is the webhooks service. It owns events, the audit log and webhook delivery.
//
// Its RPCs are declared in proto/manushya and registered here; those whose behaviour
// is not built yet answer UNIMPLEMENTED naming the method.
package webhooks
