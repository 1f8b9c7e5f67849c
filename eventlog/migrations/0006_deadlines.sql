-- Deadlines the log says are outstanding (a checkout hold's expiry, a point lot's): one row
-- per entity, set by the event that opens it, deleted by the event that ends it — both read
-- from the log by the deadline follower, which moves its checkpoint in the same transaction.
-- The system appends the ending event at `due_at` (a hold's expiry); the aggregate's rules
-- and its expected version make a second firing a refusal, never a second event.
CREATE TABLE deadlines (
    kind      text        NOT NULL,
    entity_id uuid        NOT NULL,
    stream_id uuid        NOT NULL,
    category  text        NOT NULL,
    due_at    timestamptz NOT NULL,
    PRIMARY KEY (kind, entity_id)
);
CREATE INDEX deadlines_due ON deadlines (due_at, entity_id);

-- The last log position the deadline follower has read.
CREATE TABLE deadline_checkpoint (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO deadline_checkpoint (position) VALUES (0);
