-- One payment method every charge of a tenant uses: the one the tenant changed last, ordered by Stripe's
-- clock (the `created` of the event that reported the change; 0 when it was only read, never seen
-- changing), and whether the tenant's open invoices are still to be paid after that change.
ALTER TABLE payment_methods ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payment_methods ADD COLUMN collect_due INTEGER NOT NULL DEFAULT 0;

-- How an open invoice's payment stands beyond its status, as its PaymentIntent says: `processing` (a
-- bank debit in flight: neither paid nor failed) or `requires_action` (the bank asks the customer to
-- confirm the payment). NULL otherwise.
ALTER TABLE invoices ADD COLUMN payment_state TEXT;

-- Every payment attempt the service itself makes: a tenant's open invoices paid at once after its payment
-- method changed, and the usage invoices' retries on USAGE_RETRY_DAYS. An attempt is its idempotency key,
-- so an attempt repeated after a crash, or by another replica, is the same row (and the same write in
-- Stripe). `stripe_time` is Stripe's clock when it was made.
CREATE TABLE collection_attempts (
    idempotency_key   TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    stripe_invoice_id TEXT NOT NULL,
    billing_period    TEXT,
    reason            TEXT NOT NULL,
    attempt_no        INTEGER NOT NULL,
    stripe_time       BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    detail            TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX collection_attempts_invoice ON collection_attempts (stripe_invoice_id, attempt_no);
CREATE INDEX collection_attempts_created ON collection_attempts (created_at);
