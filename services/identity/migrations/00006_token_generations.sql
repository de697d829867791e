-- +goose Up
-- The generation of an identity's access tokens, which they carry as their "gen"
-- claim. Taking a role away raises it, and verifiers then refuse the identity's
-- tokens of older generations at once. Sessions live on: a refresh issues a token
-- of the new generation, with the roles as they are now.
ALTER TABLE identity.identities ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

-- The lowest token generation still accepted for an identity, kept while a token of
-- an older generation could be unexpired. Like revoked_sessions: verifiers load it
-- at start and then follow identity.tokens_revoked events; it holds only ids, so it
-- is not tenant-scoped. Rows past until_time are swept.
CREATE TABLE identity.token_generation_floors (
  identity_id    uuid PRIMARY KEY,
  min_generation bigint NOT NULL,
  until_time     timestamptz NOT NULL
);

-- +goose Down
DROP TABLE identity.token_generation_floors;
ALTER TABLE identity.identities DROP COLUMN token_generation;
