-- The platform's tables that billing reads, as its SQLAlchemy models define them (techwiz42/thanotopolis at
-- 23d725c), for the tests and the benchmark. SQLAlchemy's types in PostgreSQL: String -> VARCHAR,
-- JSON -> json, Numeric(10,4) -> NUMERIC(10,4), DateTime(timezone=True) -> TIMESTAMP WITH TIME ZONE,
-- server_default=func.now() -> DEFAULT now(); Python-side defaults (default=...) are not in the schema.
-- Foreign keys to tables billing does not read (users, conversations) are left out; the columns stay.

-- backend/app/models/models.py:67-84
CREATE TABLE tenants (
    id                  UUID PRIMARY KEY,
    name                VARCHAR NOT NULL,
    subdomain           VARCHAR NOT NULL UNIQUE,
    access_code         VARCHAR NOT NULL,
    description         VARCHAR,
    full_name           VARCHAR,
    address             JSON,
    phone               VARCHAR,
    organization_email  VARCHAR,
    is_active           BOOLEAN,
    is_demo             BOOLEAN,
    created_at          TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at          TIMESTAMP WITH TIME ZONE
);

-- backend/app/models/models.py:245-272, indexes models.py:1119-1121
CREATE TABLE usage_records (
    id                UUID PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id           UUID,
    conversation_id   UUID,
    usage_type        VARCHAR NOT NULL,
    amount            NUMERIC(10, 4) NOT NULL,
    cost_per_unit     NUMERIC(10, 6),
    cost_cents        INTEGER,
    cost_currency     VARCHAR,
    service_provider  VARCHAR,
    model_name        VARCHAR,
    resource_type     VARCHAR,
    resource_id       VARCHAR,
    usage_metadata    JSON,
    additional_data   JSON,
    usage_date        TIMESTAMP WITH TIME ZONE DEFAULT now(),
    created_at        TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX idx_usage_records_tenant_id ON usage_records (tenant_id);
CREATE INDEX idx_usage_records_usage_date ON usage_records (usage_date);
CREATE INDEX idx_usage_records_usage_type ON usage_records (usage_type);

-- backend/app/models/stripe_models.py:14-24
CREATE TABLE stripe_customers (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL UNIQUE REFERENCES tenants(id),
    stripe_customer_id  VARCHAR NOT NULL UNIQUE,
    email               VARCHAR NOT NULL,
    name                VARCHAR,
    phone               VARCHAR,
    created_at          TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at          TIMESTAMP WITH TIME ZONE
);

-- backend/app/models/stripe_models.py:32-46
CREATE TABLE stripe_subscriptions (
    id                      UUID PRIMARY KEY,
    customer_id             UUID NOT NULL REFERENCES stripe_customers(id),
    stripe_subscription_id  VARCHAR NOT NULL UNIQUE,
    stripe_price_id         VARCHAR NOT NULL,
    status                  VARCHAR NOT NULL,
    current_period_start    TIMESTAMP WITH TIME ZONE NOT NULL,
    current_period_end      TIMESTAMP WITH TIME ZONE NOT NULL,
    cancel_at_period_end    BOOLEAN,
    amount_cents            INTEGER NOT NULL,
    currency                VARCHAR,
    created_at              TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at              TIMESTAMP WITH TIME ZONE
);

-- backend/app/models/stripe_models.py:52-68
CREATE TABLE stripe_invoices (
    id                  UUID PRIMARY KEY,
    customer_id         UUID NOT NULL REFERENCES stripe_customers(id),
    stripe_invoice_id   VARCHAR NOT NULL UNIQUE,
    status              VARCHAR NOT NULL,
    amount_due_cents    INTEGER NOT NULL,
    amount_paid_cents   INTEGER,
    currency            VARCHAR,
    period_start        TIMESTAMP WITH TIME ZONE NOT NULL,
    period_end          TIMESTAMP WITH TIME ZONE NOT NULL,
    voice_words_count   INTEGER,
    voice_usage_cents   INTEGER,
    created_at          TIMESTAMP WITH TIME ZONE DEFAULT now(),
    due_date            TIMESTAMP WITH TIME ZONE,
    paid_at             TIMESTAMP WITH TIME ZONE
);
