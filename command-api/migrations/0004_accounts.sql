-- Sign-in accounts (ADR 11). Not events: credentials stay out of the log, and so out of
-- Kafka and every consumer's hands. The account's id is the shop's user id of its tokens.
CREATE TABLE accounts (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'service')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
