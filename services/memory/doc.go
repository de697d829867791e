// Package memory is the memory service: it stores the text memories of a tenant's
// identities and finds them again by meaning (vector), by words (keyword) or both
// (hybrid, reciprocal rank fusion).
//
// Writes never wait for a model: a memory is stored with embedding_status PENDING,
// an embedding job and a memory.created event in one transaction. The embedder, a
// durable JetStream consumer of memory.created and memory.updated, batches the
// pending texts, calls the embedding service and stores the vectors (READY,
// memory.embedded). Failures mark the memory FAILED with the reason and are
// retried with backoff by a sweeper, which also picks up jobs whose event was
// missed. A second sweeper purges expired memories (memory.expired); reads hide
// them as soon as they expire.
//
// Vector search uses an HNSW index (cosine) with pgvector's iterative scans, so a
// filtered search still fills its limit; scopes small enough (an identity, a
// selective filter, a small tenant) are ranked exactly instead. The index holds
// each vector fenced by its tenant (memory.fenced_embedding: the unit vector
// plus a direction derived from the tenant id), which keeps a tenant's
// memories in their own region of the one shared graph and their order within
// it unchanged, so a search does not walk through other tenants' memories.
// Candidates are re-ranked from the stored full-precision vector: thresholds
// and scores are exact.
//
// A stored vector is searchable at once, before it is in the graph: the index
// is partial on embedding_indexed, and a vector search merges the graph's
// candidates with an exact scan of the tenant's "fresh" rows (stored, not yet
// indexed; memories_fresh), in one statement, by distance, before the limit.
// The indexer (indexer.go) flips the flag in batches of 500 per tenant, which
// inserts the rows into the graph off the searchable path; storing a vector
// queues its tenant (memory.fresh_tenants). Searches ranked exactly (small
// scopes) read both kinds of rows alike. Keyword search uses a generated tsvector with a GIN index. One filter
// grammar (filter.go) serves list, search and bulk delete, compiled to
// parameterised SQL.
//
// Tenants are isolated by row-level security; within a tenant an identity sees
// its own memories, and admins and service identities act for any identity.
//
// Per-tenant settings (settings.go, admin-only): encrypt_text and
// restore_window_days. With encrypt_text the text of memories and versions is
// sealed by the keyring under the owner identity's data key, bound to the memory
// (and version) id (sealing.go); the text column and its tsvector stay empty, so
// the tenant searches by vector only: keyword and hybrid search are refused with
// FAILED_PRECONDITION. Every read path and the embedder open the text; events
// carry ids only. Changing the setting moves the existing rows in the background
// (the encryption sweeper, textconv.go); destroying an identity's key shreds its
// memories' text. Soft-deleted memories are hard-deleted by the restore-window
// sweeper (retention.go) once their tenant's window has passed (0 days: never).
//
// Two durable consumers delete what belongs to identities that are gone
// (erasure.go): identity.erased and tenant.erased (GDPR erasure, with progress
// reports for the receipt), and identity.purged (an identity hard-deleted or
// purged at the end of its restore window; no report). Both delete the memories
// with their versions, vectors and jobs in batches, and are idempotent. A
// soft-deleted identity keeps its memories for a restore.
package memory
