//! The pages' sign-in sessions, by a keyed hash of the cookie's random id (the id itself is never stored).

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use chrono::{DateTime, Utc};

/// Who a session signed in, as the platform's token said, and until when the session lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub sub: String,
    pub tenant_id: String,
    pub role: String,
    pub email: Option<String>,
    /// The token's `exp` (unix seconds), as the token said it.
    pub token_exp: i64,
    /// The token's `aud` (every value) and `iss`.
    pub audience: Vec<String>,
    pub issuer: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Records a new session under `id_hash`.
pub async fn create(db: &Db, id_hash: &str, s: &WebSession) -> Result<(), sqlx::Error> {
    let audience = serde_json::to_string(&s.audience).expect("strings serialize");
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO web_sessions
                 (id_hash, sub, tenant_id, role, email, token_exp, audience, issuer, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id_hash)
        .bind(&s.sub)
        .bind(&s.tenant_id)
        .bind(&s.role)
        .bind(&s.email)
        .bind(s.token_exp)
        .bind(&audience)
        .bind(&s.issuer)
        .bind(now())
        .bind(s.expires_at)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// The session stored under `id_hash`, expired or not; `None` once it has ended or been pruned.
pub async fn find(db: &Db, id_hash: &str) -> Result<Option<WebSession>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        i64,
        String,
        Option<String>,
        DateTime<Utc>,
    );
    let row: Option<Row> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT sub, tenant_id, role, email, token_exp, audience, issuer, expires_at
             FROM web_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(
        |(sub, tenant_id, role, email, token_exp, audience, issuer, expires_at)| WebSession {
            sub,
            tenant_id,
            role,
            email,
            token_exp,
            // Written by `create` only; anything else is no audience, which a configured one refuses.
            audience: serde_json::from_str(&audience).unwrap_or_default(),
            issuer,
            expires_at,
        },
    ))
}

/// Ends a session (signing out); true when there was one to end.
pub async fn end(db: &Db, id_hash: &str) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() > 0)
    })
}

/// Deletes the sessions that expired before `before`; returns how many.
pub async fn prune(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })
}

/// How many sessions are stored, ended or not yet pruned included (tests and operators).
pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions")
            .fetch_one(pool)
            .await
    })
}
