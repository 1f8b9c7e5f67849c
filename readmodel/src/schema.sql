-- The read models, in one schema (`rm` live; replay-tools builds shadow copies). Every row
-- remembers the aggregate version it reflects; `aggregate_versions` is the idempotency guard.
CREATE TABLE IF NOT EXISTS coupon_policies (
    policy_id               uuid PRIMARY KEY,
    title                   text        NOT NULL,
    description             text        NOT NULL,
    total_quantity          bigint      NOT NULL,
    start_time              timestamptz NOT NULL,
    end_time                timestamptz NOT NULL,
    discount_type           text        NOT NULL,
    discount_value          bigint      NOT NULL,
    minimum_order_amount    bigint      NOT NULL,
    maximum_discount_amount bigint      NOT NULL,
    coupon_expires_at       timestamptz NOT NULL,
    issued_count            bigint      NOT NULL,
    used_count              bigint      NOT NULL,
    created_at              timestamptz NOT NULL,
    version                 bigint      NOT NULL
);
-- A campaign's limits (issue 24): a budget of discount and coupons per user; the budget's
-- tally as the last use or cancelled use stated it.
ALTER TABLE coupon_policies ADD COLUMN IF NOT EXISTS discount_budget bigint;
ALTER TABLE coupon_policies ADD COLUMN IF NOT EXISTS coupons_per_user bigint NOT NULL DEFAULT 1;
ALTER TABLE coupon_policies ADD COLUMN IF NOT EXISTS discount_granted bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS coupons (
    coupon_id       uuid PRIMARY KEY,
    policy_id       uuid        NOT NULL,
    user_id         bigint      NOT NULL,
    state           text        NOT NULL,
    expires_at      timestamptz NOT NULL,
    order_id        text,
    order_amount    bigint,
    discount_amount bigint,
    issued_at       timestamptz NOT NULL,
    used_at         timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS coupons_user ON coupons (user_id, issued_at DESC);
-- Until when a coupon held for a checkout (state RESERVED) is held (issue 24).
ALTER TABLE coupons ADD COLUMN IF NOT EXISTS reserved_until timestamptz;
CREATE TABLE IF NOT EXISTS point_balances (
    user_id    bigint PRIMARY KEY,
    balance    bigint      NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);
-- What expires next (issue 24): the points of the soonest expiry, and when; NULL for none.
ALTER TABLE point_balances ADD COLUMN IF NOT EXISTS expiring bigint;
ALTER TABLE point_balances ADD COLUMN IF NOT EXISTS expiring_at timestamptz;
CREATE TABLE IF NOT EXISTS point_history (
    transaction_id          uuid PRIMARY KEY,
    user_id                 bigint      NOT NULL,
    version                 bigint      NOT NULL,
    type                    text        NOT NULL,
    amount                  bigint      NOT NULL,
    description             text        NOT NULL,
    order_id                text,
    canceled_transaction_id uuid,
    balance_after           bigint      NOT NULL,
    occurred_at             timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS point_history_user ON point_history (user_id, version DESC);
CREATE TABLE IF NOT EXISTS products (
    product_id  uuid PRIMARY KEY,
    name        text        NOT NULL,
    price       bigint      NOT NULL,
    description text        NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS time_sales (
    time_sale_id   uuid PRIMARY KEY,
    product_id     uuid        NOT NULL,
    product_price  bigint      NOT NULL,
    discount_price bigint      NOT NULL,
    quantity       bigint      NOT NULL,
    remaining      bigint      NOT NULL,
    start_at       timestamptz NOT NULL,
    end_at         timestamptz NOT NULL,
    per_user_limit bigint,
    created_at     timestamptz NOT NULL,
    version        bigint      NOT NULL
);
-- Units held by open checkout holds (issue 24); `remaining` is what anyone can still buy.
ALTER TABLE time_sales ADD COLUMN IF NOT EXISTS reserved bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id   uuid PRIMARY KEY,
    time_sale_id     uuid        NOT NULL,
    order_id         text        NOT NULL,
    user_id          bigint      NOT NULL,
    quantity         bigint      NOT NULL,
    status           text        NOT NULL,
    expires_at       timestamptz NOT NULL,
    created_order_id uuid,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id     uuid PRIMARY KEY,
    time_sale_id uuid        NOT NULL,
    user_id      bigint      NOT NULL,
    quantity     bigint      NOT NULL,
    unit_price   bigint      NOT NULL,
    total_price  bigint      NOT NULL,
    status       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    canceled_at  timestamptz
);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id, created_at DESC);
CREATE TABLE IF NOT EXISTS aggregate_versions (
    aggregate_id uuid PRIMARY KEY,
    category     text   NOT NULL,
    version      bigint NOT NULL
);
-- Every event at or below `position` is projected: applied, or parked below (ADR 8).
CREATE TABLE IF NOT EXISTS projection_watermark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint NOT NULL
);
INSERT INTO projection_watermark (position) VALUES (0) ON CONFLICT DO NOTHING;
-- Events the projection could not apply (undecodable, or refused by PostgreSQL), with every
-- later event of the same aggregate held behind them; the rest of the log goes on. Reads of
-- such an aggregate answer 503 PROJECTION_FAULTED until `replay-tools retry` applies them.
-- `entity_id` and `user_id` are read from the event's data when it has them (for the
-- operator, and so a user's lists find the fault too).
CREATE TABLE IF NOT EXISTS parked_events (
    position     bigint PRIMARY KEY,
    aggregate_id uuid        NOT NULL,
    category     text        NOT NULL,
    version      bigint      NOT NULL,
    event_type   text        NOT NULL,
    entity_id    uuid,
    user_id      bigint,
    error        text        NOT NULL,
    attempts     integer     NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS parked_events_aggregate ON parked_events (aggregate_id, position);
CREATE INDEX IF NOT EXISTS parked_events_user ON parked_events (category, user_id);
