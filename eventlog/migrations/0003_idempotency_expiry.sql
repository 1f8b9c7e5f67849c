-- Idempotency keys expire after a retention (command-api `[idempotency] retention_hours`):
-- the cleanup deletes the oldest first, a small batch at a time, found by this index.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
