-- The event log: the source of truth.

-- One row per stream: its category and current version. Appends move the version with
-- `UPDATE … WHERE version = expected` (or insert it at 0 → n), which is the optimistic
-- concurrency check.
CREATE TABLE streams (
    stream_id uuid PRIMARY KEY,
    category  text   NOT NULL,
    version   bigint NOT NULL CHECK (version > 0)
);

-- The global position of the last appended event. Every append takes this row's lock just
-- before it inserts its events and commits, so positions become visible in order and a
-- reader following `position > last` never skips an event committed late (ADR 5).
CREATE TABLE log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO log_head (position) VALUES (0);

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      uuid        NOT NULL,
    category       text        NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version smallint    NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);

-- Entities that live inside an aggregate (a coupon in its policy, an order in its time sale):
-- how a command naming only the entity finds its stream. Written with the creating event.
CREATE TABLE entity_streams (
    entity_id uuid PRIMARY KEY,
    stream_id uuid NOT NULL,
    category  text NOT NULL
);

-- Idempotency keys, written in the same transaction as the events of the command they answer
-- (or alone, for a command the domain refused). The position of a success is found again
-- through (stream_id, version).
CREATE TABLE idempotency_keys (
    principal    text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       smallint    NOT NULL,
    body         jsonb       NOT NULL,
    stream_id    uuid,
    version      bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

-- The latest snapshot of a long stream: state as of `version`. `state_format` changes when
-- an aggregate's state shape changes; a snapshot of another format is ignored.
CREATE TABLE snapshots (
    stream_id    uuid        PRIMARY KEY,
    category     text        NOT NULL,
    version      bigint      NOT NULL,
    state_format integer     NOT NULL,
    state        jsonb       NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now()
);
