-- name: LockIdentityForSignIn :one
-- Reads a live identity for a sign-in or refresh and holds it until the session and
-- tokens are written: a concurrent deactivation, deletion or role change (which
-- lock the row FOR UPDATE) waits for the sign-in to commit and then revokes what
-- it made, or, when it came first, the sign-in sees the identity as it left it.
SELECT * FROM identity.identities
WHERE id = $1 AND delete_time IS NULL
FOR SHARE;

-- name: RaiseTokenGeneration :one
UPDATE identity.identities SET token_generation = token_generation + 1
WHERE id = $1
RETURNING token_generation;

-- name: SetTokenGenerationFloor :exec
INSERT INTO identity.token_generation_floors (identity_id, min_generation, until_time)
VALUES ($1, $2, $3)
ON CONFLICT (identity_id) DO UPDATE
SET min_generation = GREATEST(identity.token_generation_floors.min_generation, EXCLUDED.min_generation),
    until_time = GREATEST(identity.token_generation_floors.until_time, EXCLUDED.until_time);

-- name: ListTokenGenerationFloors :many
SELECT identity_id, min_generation, until_time FROM identity.token_generation_floors WHERE until_time > now();

-- name: DeleteOldTokenGenerationFloors :exec
DELETE FROM identity.token_generation_floors WHERE until_time < now();
