-- +goose Up
-- Transactional outbox (pkg/outbox): written in the same transaction as the change,
-- read and emptied by the relay. Holds no tenant-readable data, so no RLS.
CREATE TABLE policy.outbox (
  seq        bigserial PRIMARY KEY,
  event_id   uuid NOT NULL,
  subject    text NOT NULL,
  payload    bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE policy.outbox;
