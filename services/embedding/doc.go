// Package embedding is the embedding service. It turns texts into vectors through the configured providers.
//
// Its RPCs are declared in proto/manushya and registered here; those whose behaviour
// is not built yet answer UNIMPLEMENTED naming the method.
package embedding
