//! Reading the platform's PostgreSQL (read-only: a role with SELECT on `tenants`, `usage_records` and
//! `stripe_customers` is enough). Tables and columns as the platform's models define them
//! (techwiz42/thanotopolis at 23d725c): `tenants` (backend/app/models/models.py:67-84), `usage_records`
//! (models.py:245-272, indexed on `usage_date`, not on `created_at`: models.py:1119-1121) and
//! `stripe_customers` (backend/app/models/stripe_models.py:14-24).
//!
//! Usage is read in keyset order of `(usage_date, id)`: `usage_date` and `created_at` are both set by the
//! server's `now()` in the same insert (models.py:271-272; nothing in the platform sets either), so they
//! are equal, and `usage_date` is the one with an index (an index scan plus an incremental sort on `id`
//! reads a batch in time proportional to the batch, however large the backlog).

use super::mapping::{UsageRow, CALL_TYPES};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use std::time::Duration;

/// A position in `usage_records`: every row at or before it (in `(usage_date, id)` order) is behind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub at: DateTime<Utc>,
    /// The row's id as text (UUIDs compare as PostgreSQL compares them when cast back).
    pub id: String,
}

impl Key {
    /// The greatest UUID: a key at `at` past every row of that instant.
    pub const MAX_ID: &'static str = "ffffffff-ffff-ffff-ffff-ffffffffffff";
    pub const MIN_ID: &'static str = "00000000-0000-0000-0000-000000000000";

    /// The position before every row at `at` or later.
    pub fn before(at: DateTime<Utc>) -> Key {
        Key {
            at: at - chrono::Duration::microseconds(1),
            id: Key::MAX_ID.to_owned(),
        }
    }

    pub fn through(at: DateTime<Utc>) -> Key {
        Key {
            at,
            id: Key::MAX_ID.to_owned(),
        }
    }
}

/// An organization as the platform has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformTenant {
    pub id: String,
    pub name: String,
    pub subdomain: String,
    pub is_demo: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// When the platform last changed the row (`onupdate=now()`, models.py:85; null until then): a change
    /// of `is_demo` seen now happened at or before it.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A row of the platform's `stripe_customers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformCustomer {
    pub tenant_id: String,
    pub stripe_customer_id: String,
    pub email: Option<String>,
}

/// A read of usage in one snapshot of the platform's database.
#[derive(Debug)]
pub struct Read {
    pub rows: Vec<UsageRow>,
    /// The platform's snapshot the rows were read in (`pg_current_snapshot()` as text).
    pub snapshot: String,
    /// The platform's clock at the read.
    pub now: DateTime<Utc>,
}

/// What a scan for rows committed late ([`Source::committed_since`]) found.
#[derive(Debug)]
pub struct Scan {
    /// The rows scanned that the snapshot `since` could not see, in key order.
    pub rows: Vec<UsageRow>,
    /// Rows scanned (at most the limit).
    pub scanned: i64,
    /// Where the next scan starts: the last row scanned, or `through` once done.
    pub reached: Key,
    /// Whether the range is scanned through.
    pub done: bool,
}

impl Scan {
    /// A scan of an empty range.
    pub fn nothing(through: &Key) -> Scan {
        Scan {
            rows: Vec::new(),
            scanned: 0,
            reached: through.clone(),
            done: true,
        }
    }
}

/// The platform's database.
#[derive(Clone)]
pub struct Source {
    pool: PgPool,
}

/// The columns of a usage row of the table aliased `t`; the call id only for calls (word rows need none of
/// the JSON).
fn usage_columns(t: &str) -> String {
    format!(
        "{t}.id::text AS id, {t}.tenant_id::text AS tenant_id, {t}.usage_type, {t}.amount::text AS amount, \
         CASE WHEN {t}.usage_type IN ('phone_calls', 'telephony_minutes') \
              THEN COALESCE({t}.additional_data ->> 'call_id', {t}.usage_metadata ->> 'call_id') END AS call_id, \
         COALESCE({t}.created_at, {t}.usage_date) AS created_at, {t}.usage_date"
    )
}

/// A row's `xmin` as an `xid8` (what `pg_visible_in_snapshot` takes), `$next` being the 64-bit next
/// transaction id of the snapshot it is read in: `xmin` is 32 bits, and every row visible now was written
/// by a transaction before that one, so it is the latest id with those low bits not after it.
fn xmin_as_xid8(xmin: &str, next: &str) -> String {
    format!(
        "({next}::bigint - ((({next}::bigint % 4294967296) - {xmin}::text::bigint + 4294967296) % 4294967296))::text::xid8"
    )
}

fn usage_row(r: &sqlx::postgres::PgRow) -> (UsageRow, Key) {
    let id: String = r.get("id");
    let at: DateTime<Utc> = r.get("usage_date");
    (
        UsageRow {
            tenant_id: r.get("tenant_id"),
            usage_type: r.get("usage_type"),
            amount: r.get("amount"),
            call_id: r.get("call_id"),
            created_at: r.get("created_at"),
            id: id.clone(),
        },
        Key { at, id },
    )
}

impl Source {
    /// A pool that connects on first use, so a platform that is down delays nothing at start.
    pub fn connect_lazy(url: &str) -> anyhow::Result<Source> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy(url)
            .map_err(|e| {
                anyhow::anyhow!("PLATFORM_DATABASE_URL is not a valid PostgreSQL URL: {e}")
            })?;
        // The call types are spelled out in the SQL above; keep them in step.
        debug_assert_eq!(CALL_TYPES, ["phone_calls", "telephony_minutes"]);
        Ok(Source { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Every organization of the platform, with the platform's clock when they were read.
    pub async fn tenants(&self) -> Result<(Vec<PlatformTenant>, DateTime<Utc>), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let read_at: DateTime<Utc> = sqlx::query_scalar("SELECT statement_timestamp()")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT id::text AS id, name, subdomain, COALESCE(is_demo, FALSE) AS is_demo,
                    COALESCE(is_active, TRUE) AS is_active,
                    COALESCE(created_at, statement_timestamp()) AS created_at, updated_at
             FROM tenants ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let tenants = rows
            .iter()
            .map(|r| PlatformTenant {
                id: r.get("id"),
                name: r.get("name"),
                subdomain: r.get("subdomain"),
                is_demo: r.get("is_demo"),
                is_active: r.get("is_active"),
                created_at: r.get("created_at"),
                updated_at: r.get("updated_at"),
            })
            .collect();
        Ok((tenants, read_at))
    }

    /// Every row of `stripe_customers`.
    pub async fn customers(&self) -> Result<Vec<PlatformCustomer>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT tenant_id::text AS tenant_id, stripe_customer_id, email FROM stripe_customers
             ORDER BY tenant_id, created_at, stripe_customer_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PlatformCustomer {
                tenant_id: r.get("tenant_id"),
                stripe_customer_id: r.get("stripe_customer_id"),
                email: r.get("email"),
            })
            .collect())
    }

    /// Up to `limit` rows after `after`, no later than `settle` before the platform's clock, in key order,
    /// with the snapshot they were read in. Returns the key of the last row, or, when fewer than `limit`
    /// came back, the horizon the read covered.
    pub async fn read_after(
        &self,
        after: &Key,
        settle: Duration,
        limit: i64,
    ) -> Result<(Read, Key), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (snapshot, now): (String, DateTime<Utc>) =
            sqlx::query_as("SELECT pg_current_snapshot()::text, statement_timestamp()")
                .fetch_one(&mut *tx)
                .await?;
        let horizon = now - chrono::Duration::from_std(settle).unwrap_or_default();
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_records r
             WHERE usage_date >= $1 AND (usage_date, id) > ($1, $2::uuid) AND usage_date <= $3
             ORDER BY usage_date, id LIMIT $4",
            usage_columns("r")
        ))
        .bind(after.at)
        .bind(&after.id)
        .bind(horizon)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let full = rows.len() as i64 >= limit;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            let (row, key) = usage_row(r);
            out.push(row);
            last = Some(key);
        }
        let reached = match last {
            Some(k) if full => k,
            _ => Key::through(horizon).max(after.clone()),
        };
        Ok((
            Read {
                rows: out,
                snapshot,
                now,
            },
            reached,
        ))
    }

    /// Scans up to `limit` rows after `after` through `through` in key order (through the `usage_date`
    /// index), in a snapshot of its own, and returns those whose transaction had not committed in the
    /// snapshot `since`: rows that committed after a read before `since` passed their keys. Only the rows
    /// returned are read whole (by their primary key); the others cost an index entry and their `xmin`.
    pub async fn committed_since(
        &self,
        after: &Key,
        through: &Key,
        since: &str,
        limit: i64,
    ) -> Result<Scan, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let next: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                .fetch_one(&mut *tx)
                .await?;
        let rows = sqlx::query(&format!(
            "WITH scanned AS MATERIALIZED (
                 SELECT usage_date, id, xmin AS row_xmin FROM usage_records
                 WHERE usage_date >= $1 AND usage_date <= $3
                   AND (usage_date, id) > ($1, $2::uuid) AND (usage_date, id) <= ($3, $4::uuid)
                 ORDER BY usage_date, id LIMIT $6),
             marked AS (
                 SELECT usage_date, id, NOT pg_visible_in_snapshot({xid8}, $5::text::pg_snapshot) AS late,
                        row_number() OVER (ORDER BY usage_date DESC, id DESC) = 1 AS last,
                        count(*) OVER () AS scanned
                 FROM scanned)
             SELECT m.late, m.scanned, m.usage_date AS key_at, m.id::text AS key_id, {columns}
             FROM marked m LEFT JOIN usage_records r ON m.late AND r.id = m.id
             WHERE m.late OR m.last
             ORDER BY m.usage_date, m.id",
            xid8 = xmin_as_xid8("row_xmin", "$7"),
            columns = usage_columns("r"),
        ))
        .bind(after.at)
        .bind(&after.id)
        .bind(through.at)
        .bind(&through.id)
        .bind(since)
        .bind(limit)
        .bind(next)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut scan = Scan {
            rows: Vec::new(),
            scanned: 0,
            reached: through.clone(),
            done: true,
        };
        for r in &rows {
            scan.scanned = r.get("scanned");
            if r.get::<bool, _>("late") {
                scan.rows.push(usage_row(r).0);
            }
            scan.reached = Key {
                at: r.get("key_at"),
                id: r.get("key_id"),
            };
        }
        if scan.scanned < limit {
            scan.reached = through.clone();
        } else {
            scan.done = false;
        }
        Ok(scan)
    }

    /// The platform's snapshot now and its clock (a starting point for [`Source::committed_since`]).
    pub async fn snapshot(&self) -> Result<(String, DateTime<Utc>), sqlx::Error> {
        sqlx::query_as("SELECT pg_current_snapshot()::text, statement_timestamp()")
            .fetch_one(&self.pool)
            .await
    }

    /// Rows from `since` on, by type.
    pub async fn usage_by_type(
        &self,
        since: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT usage_type, COUNT(*) FROM usage_records WHERE usage_date >= $1 GROUP BY usage_type",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// The rows with these ids that still exist.
    pub async fn rows(&self, ids: &[String]) -> Result<Vec<UsageRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_records r WHERE id = ANY($1::text[]::uuid[])",
            usage_columns("r")
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| usage_row(r).0).collect())
    }
}
