-- +goose Up
-- Keep vectors inline. pgvector gives its type EXTERNAL storage, so a row a little
-- over the TOAST threshold (about 2 kB: a 384-d vector is 1.5 kB, plus the text
-- and its tsvector) had its vector moved out of line, and every exact-scan
-- distance and every HNSW heap check of such a row paid a TOAST index lookup.
-- PLAIN keeps it in the row; a long text is still toasted. Applies to rows
-- written from now on (re-embedding or VACUUM FULL rewrites older ones).
ALTER TABLE memory.memories ALTER COLUMN embedding SET STORAGE PLAIN;

-- +goose Down
ALTER TABLE memory.memories ALTER COLUMN embedding SET STORAGE EXTERNAL;
