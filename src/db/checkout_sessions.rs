//! The Checkout sessions opened for each tenant, so that at most one stays open at a time.

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub session_id: String,
    pub url: String,
    /// A digest of what the session was opened with (URLs, trial): the same request may reuse it.
    pub request_hash: String,
    pub created_at: DateTime<Utc>,
}

/// The tenant's sessions not known to be closed, oldest first.
pub async fn open_for(db: &Db, tenant: &str) -> Result<Vec<OpenSession>, sqlx::Error> {
    let rows: Vec<(String, String, String, DateTime<Utc>)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT session_id, url, request_hash, created_at FROM checkout_sessions
             WHERE tenant_id = $1 AND closed_at IS NULL ORDER BY created_at",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(session_id, url, request_hash, created_at)| OpenSession {
            session_id,
            url,
            request_hash,
            created_at,
        })
        .collect())
}

/// How many sessions were ever opened for the tenant (numbers the next one's idempotency key).
pub async fn count(db: &Db, tenant: &str) -> Result<i64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM checkout_sessions WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(pool)
            .await
    })
}

/// Records a session (once: a replayed create gives the same session).
pub async fn record(
    db: &Db,
    tenant: &str,
    session_id: &str,
    url: &str,
    request_hash: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO checkout_sessions (session_id, tenant_id, url, request_hash, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(tenant)
        .bind(url)
        .bind(request_hash)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Marks a session closed (completed, expired, or expired by us).
pub async fn close(db: &Db, session_id: &str) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE checkout_sessions SET closed_at = $2 WHERE session_id = $1 AND closed_at IS NULL")
            .bind(session_id)
            .bind(now())
            .execute(pool)
            .await
            .map(|_| ())
    })
}
