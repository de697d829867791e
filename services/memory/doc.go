// Package memory is the memory service. It stores memories and serves vector, keyword and hybrid search.
//
// Its RPCs are declared in proto/manushya and registered here; those whose behaviour
// is not built yet answer UNIMPLEMENTED naming the method.
package memory
