-- The whole billing schema. Money is BIGINT cents; times are TIMESTAMPTZ (UTC).
-- SQLite keeps the same tables in migrations/sqlite/0001_initial.sql.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    subdomain   TEXT NOT NULL,
    is_demo     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT tenants_subdomain_key UNIQUE (subdomain)
);

-- Intervals during which a tenant was a demo account: usage that occurred inside one is never billed.
CREATE TABLE tenant_demo_periods (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ
);
CREATE INDEX tenant_demo_periods_tenant ON tenant_demo_periods (tenant_id, started_at);

-- Exactly one Stripe customer per tenant.
CREATE TABLE stripe_customers (
    tenant_id           TEXT PRIMARY KEY REFERENCES tenants(id),
    stripe_customer_id  TEXT NOT NULL,
    email               TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    CONSTRAINT stripe_customers_customer_key UNIQUE (stripe_customer_id)
);

-- Our mirror of Stripe subscriptions, kept true by webhooks and reconciliation.
-- stripe_updated_at orders snapshots so that an older event never moves state backwards.
CREATE TABLE subscriptions (
    stripe_subscription_id  TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    stripe_customer_id      TEXT NOT NULL,
    status                  TEXT NOT NULL,
    price_id                TEXT,
    amount_cents            BIGINT NOT NULL DEFAULT 0,
    currency                TEXT NOT NULL DEFAULT 'usd',
    current_period_start    TIMESTAMPTZ,
    current_period_end      TIMESTAMPTZ,
    trial_start             TIMESTAMPTZ,
    trial_end               TIMESTAMPTZ,
    cancel_at_period_end    BOOLEAN NOT NULL DEFAULT FALSE,
    canceled_at             TIMESTAMPTZ,
    ended_at                TIMESTAMPTZ,
    stripe_created_at       TIMESTAMPTZ NOT NULL,
    stripe_updated_at       TIMESTAMPTZ NOT NULL,
    synced_at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, stripe_created_at);
CREATE INDEX subscriptions_status ON subscriptions (status);

-- Our mirror of Stripe invoices (subscription invoices and the monthly usage invoices).
CREATE TABLE invoices (
    stripe_invoice_id       TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    stripe_customer_id      TEXT NOT NULL,
    stripe_subscription_id  TEXT,
    billing_period          TEXT,
    status                  TEXT NOT NULL,
    number                  TEXT,
    period_start            TIMESTAMPTZ,
    period_end              TIMESTAMPTZ,
    amount_due_cents        BIGINT NOT NULL DEFAULT 0,
    amount_paid_cents       BIGINT NOT NULL DEFAULT 0,
    currency                TEXT NOT NULL DEFAULT 'usd',
    hosted_invoice_url      TEXT,
    invoice_pdf             TEXT,
    paid_at                 TIMESTAMPTZ,
    lines_json              TEXT NOT NULL DEFAULT '[]',
    stripe_created_at       TIMESTAMPTZ NOT NULL,
    stripe_updated_at       TIMESTAMPTZ NOT NULL,
    synced_at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, stripe_created_at);
CREATE INDEX invoices_paid_at ON invoices (paid_at);

-- Every webhook event id we accepted, once. processed_at is set when applying succeeded.
CREATE TABLE webhook_events (
    event_id            TEXT PRIMARY KEY,
    event_type          TEXT NOT NULL,
    object_id           TEXT,
    tenant_id           TEXT,
    stripe_created_at   TIMESTAMPTZ NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    processed_at        TIMESTAMPTZ
);
CREATE INDEX webhook_events_type_received ON webhook_events (event_type, received_at);

-- Usage rollups per tenant, billing-time-zone day and type. A bucket is open while billed_by is NULL;
-- the monthly run claims open buckets (sets billed_by), so usage arriving later lands in a new open bucket.
CREATE TABLE usage_rollups (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    day             DATE NOT NULL,
    usage_type      TEXT COLLATE "C" NOT NULL,
    quantity        BIGINT NOT NULL DEFAULT 0,
    event_count     BIGINT NOT NULL DEFAULT 0,
    billed_by       TEXT,
    billed_quantity BIGINT,
    billed_at       TIMESTAMPTZ
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02);
-- Every batch updates its rollups: free space on each page keeps those updates HOT (no new index entries),
-- and frequent vacuuming keeps the dead versions few.
CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, usage_type) WHERE billed_by IS NULL;
CREATE INDEX usage_rollups_tenant_day ON usage_rollups (tenant_id, day);
CREATE INDEX usage_rollups_billed_by ON usage_rollups (billed_by);

-- Raw usage events: the audit trail. event_id is the idempotency key, forever.
-- Identifiers compare as bytes (COLLATE "C"): the same order as the service's, and cheaper than a locale's.
CREATE TABLE usage_events (
    event_id     TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    usage_type   TEXT NOT NULL,
    quantity     BIGINT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    rollup_id    BIGINT NOT NULL,
    metadata     TEXT
);
CREATE INDEX usage_events_rollup ON usage_events (rollup_id, occurred_at);

-- Each claim of a tenant's open rollups by the monthly run, by its key (billed_by): a repeated claim with
-- the same key returns what the first one took, even when that was nothing, and takes nothing more.
CREATE TABLE usage_claims (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    billed_by   TEXT NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, billed_by)
);

-- One row per monthly run (scheduled, CLI or API).
CREATE TABLE billing_runs (
    run_id       TEXT PRIMARY KEY,
    period       TEXT NOT NULL,
    dry_run      BOOLEAN NOT NULL,
    status       TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    report_json  TEXT
);
CREATE INDEX billing_runs_period ON billing_runs (period, started_at);

-- Which process runs a period now: a lease, so that among replicas exactly one runs it at a time.
CREATE TABLE billing_period_leases (
    period       TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ
);

-- The ledger: one row per tenant and period, the last step done and what the invoice holds.
CREATE TABLE billing_ledger (
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    period              TEXT NOT NULL,
    step                TEXT NOT NULL,
    skip_reason         TEXT,
    stripe_customer_id  TEXT,
    stripe_invoice_id   TEXT,
    total_cents         BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, period)
);

-- The lines of a ledger entry, each with the Stripe invoice item that carries it once added.
CREATE TABLE billing_ledger_lines (
    tenant_id               TEXT NOT NULL,
    period                  TEXT NOT NULL,
    line_no                 INTEGER NOT NULL,
    usage_period            TEXT NOT NULL,
    kind                    TEXT NOT NULL,
    description             TEXT NOT NULL,
    quantity                BIGINT NOT NULL,
    amount_cents            BIGINT NOT NULL,
    stripe_invoice_item_id  TEXT,
    PRIMARY KEY (tenant_id, period, line_no),
    FOREIGN KEY (tenant_id, period) REFERENCES billing_ledger (tenant_id, period)
);

-- Admin actions (demo status changes, manual runs, tenants added).
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
