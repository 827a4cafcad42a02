-- The first failed payment of an open invoice decides how long a past-due tenant keeps access.
CREATE INDEX webhook_events_object ON webhook_events (object_id, event_type);

-- Idempotency keys of a ledger entry move to a fresh generation after Stripe saved a 5xx under them.
ALTER TABLE billing_ledger ADD COLUMN key_generation INTEGER NOT NULL DEFAULT 0;

-- The Checkout sessions opened for each tenant: at most one stays open (reused or expired), so two tabs
-- cannot end in two subscriptions.
CREATE TABLE checkout_sessions (
    session_id   TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    url          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    closed_at    TEXT
);
CREATE INDEX checkout_sessions_tenant ON checkout_sessions (tenant_id, created_at);

-- Our copies are ordered by Stripe's clock: the second (the `Date` of Stripe's answer) at which the stored
-- reading was made, then, within one second, by when we read it. Replicas' clocks no longer decide.
ALTER TABLE subscriptions ADD COLUMN stripe_clock BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN stripe_clock BIGINT NOT NULL DEFAULT 0;

-- The payment method that pays each tenant's invoices, as the dashboard shows it (brand, last 4, expiry).
CREATE TABLE payment_methods (
    tenant_id                 TEXT PRIMARY KEY REFERENCES tenants(id),
    stripe_payment_method_id  TEXT NOT NULL,
    kind                      TEXT NOT NULL,
    brand                     TEXT,
    last4                     TEXT,
    exp_month                 INTEGER,
    exp_year                  INTEGER,
    updated_at                TEXT NOT NULL
);
