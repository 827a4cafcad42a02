-- Following the platform's own database (src/platform): how far its `usage_records` have been read, the rows
-- held back because they cannot be billed, and what was last seen of each of its organizations.
-- PostgreSQL keeps the same tables in migrations/postgres/0009_platform_follow.sql (times as RFC 3339 text here).

-- One row: the follower's position and counters, and which process follows now (a lease, so that of several
-- replicas one reads at a time). The cursor is the key (usage_date, id) of `usage_records` up to which every
-- row has been taken; a re-read of the last PLATFORM_LOOKBACK_S seconds below it finds the rows committed
-- since the platform's snapshot `recheck_snapshot` (covering keys up to recheck_at/recheck_id).
CREATE TABLE platform_follow (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    cursor_at         TEXT NOT NULL,
    cursor_id         TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    recheck_snapshot  TEXT,
    recheck_at        TEXT,
    recheck_id        TEXT,
    rows_taken        BIGINT NOT NULL DEFAULT 0,
    rows_late         BIGINT NOT NULL DEFAULT 0,
    rows_released     BIGINT NOT NULL DEFAULT 0,
    rows_not_billed   BIGINT NOT NULL DEFAULT 0,
    holder            TEXT,
    lease_until       TEXT,
    last_read_at      TEXT,
    last_error        TEXT,
    last_error_at     TEXT,
    updated_at        TEXT NOT NULL
);

-- Rows of `usage_records` that cannot be billed as they are (fractional words, an unknown type with a
-- billable name, a tenant we do not have): kept, counted, and tried again until they can be.
CREATE TABLE platform_held_rows (
    record_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    usage_type  TEXT NOT NULL,
    amount      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    held_at     TEXT NOT NULL,
    checked_at  TEXT NOT NULL
);
CREATE INDEX platform_held_rows_checked ON platform_held_rows (checked_at);

-- Each organization of the platform as last applied here: its name, and its `is_demo` (a change of the
-- platform's value is applied once; `demo_pending` is a change being applied, so a crash in between is
-- finished, never applied twice). `problem` says why it could not be registered.
CREATE TABLE platform_tenants (
    tenant_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    subdomain     TEXT NOT NULL,
    is_demo       INTEGER NOT NULL,
    demo_pending  INTEGER,
    pending_at    TEXT,
    problem       TEXT,
    seen_at       TEXT NOT NULL
);
