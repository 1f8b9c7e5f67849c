-- The relay's checkpoint: the last position the broker acknowledged.
CREATE TABLE relay_checkpoint (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);
INSERT INTO relay_checkpoint (name, position) VALUES ('kafka', 0);

-- "The next event of a category after position p": how the projector's watermark finds the
-- first event of a category it has not projected yet (ADR 6).
CREATE INDEX events_category_position ON events (category, position);
