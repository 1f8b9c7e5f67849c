-- Indexes the tansu 0.6.0 sqlite store lacks (ADR 9). Applied by scripts/stack.sh and the
-- end-to-end tests' private brokers after the broker created its schema; idempotent.
--
-- Every fetched record's headers are found with `header_fetch.sql`, whose only way into the
-- header table was a full scan: with tens of thousands of headers in the store (every topic's),
-- a fetch of a few thousand records from the start of a topic outlasted the clients' request
-- timeouts, so consumers reading from offset 0 read nothing, ever (issue 11).
CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);
