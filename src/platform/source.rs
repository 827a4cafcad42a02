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

/// The platform's database.
#[derive(Clone)]
pub struct Source {
    pool: PgPool,
}

/// The columns of a usage row; the call id only for calls (word rows need none of the JSON).
const USAGE_COLUMNS: &str = "id::text AS id, tenant_id::text AS tenant_id, usage_type, amount::text AS amount, \
     CASE WHEN usage_type IN ('phone_calls', 'telephony_minutes') \
          THEN COALESCE(additional_data ->> 'call_id', usage_metadata ->> 'call_id') END AS call_id, \
     COALESCE(created_at, usage_date) AS created_at, usage_date";

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

    /// The platform's clock.
    pub async fn now(&self) -> Result<DateTime<Utc>, sqlx::Error> {
        sqlx::query_scalar("SELECT statement_timestamp()")
            .fetch_one(&self.pool)
            .await
    }

    /// Every organization of the platform.
    pub async fn tenants(&self) -> Result<Vec<PlatformTenant>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id::text AS id, name, subdomain, COALESCE(is_demo, FALSE) AS is_demo,
                    COALESCE(is_active, TRUE) AS is_active,
                    COALESCE(created_at, statement_timestamp()) AS created_at
             FROM tenants ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| PlatformTenant {
                id: r.get("id"),
                name: r.get("name"),
                subdomain: r.get("subdomain"),
                is_demo: r.get("is_demo"),
                is_active: r.get("is_active"),
                created_at: r.get("created_at"),
            })
            .collect())
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
            "SELECT {USAGE_COLUMNS} FROM usage_records
             WHERE usage_date >= $1 AND (usage_date, id) > ($1, $2::uuid) AND usage_date <= $3
             ORDER BY usage_date, id LIMIT $4"
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

    /// The rows from `from` through `through` committed after the snapshot `since` (what earlier reads
    /// could not see), read in a new snapshot, which is returned with them.
    pub async fn committed_since(
        &self,
        from: DateTime<Utc>,
        through: &Key,
        since: &str,
    ) -> Result<Read, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (snapshot, now, next): (String, DateTime<Utc>, i64) = sqlx::query_as(
            "SELECT pg_current_snapshot()::text, statement_timestamp(),
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
        )
        .fetch_one(&mut *tx)
        .await?;
        // A row's `xmin` is a 32-bit transaction id; made 64-bit (xid8) by the epoch of the snapshot's
        // next id, since every row visible now was written by a transaction before it.
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage_records
             WHERE usage_date >= $1 AND (usage_date, id) <= ($2, $3::uuid)
               AND NOT pg_visible_in_snapshot(
                   ($5::bigint - ((($5::bigint % 4294967296) - xmin::text::bigint + 4294967296) % 4294967296))::text::xid8,
                   $4::text::pg_snapshot)
             ORDER BY usage_date, id"
        ))
        .bind(from)
        .bind(through.at)
        .bind(&through.id)
        .bind(since)
        .bind(next)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Read {
            rows: rows.iter().map(|r| usage_row(r).0).collect(),
            snapshot,
            now,
        })
    }

    /// The platform's snapshot now (a starting point for [`Source::committed_since`]).
    pub async fn snapshot(&self) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_current_snapshot()::text")
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
            "SELECT {USAGE_COLUMNS} FROM usage_records WHERE id = ANY($1::text[]::uuid[])"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| usage_row(r).0).collect())
    }
}
