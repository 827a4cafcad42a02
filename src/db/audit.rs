//! The audit log of admin actions: who did what to which tenant, and when.

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<String>,
    pub detail: String,
}

pub async fn record(
    db: &Db,
    actor: &str,
    action: &str,
    tenant_id: Option<&str>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("INSERT INTO audit_log (at, actor, action, tenant_id, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(now())
            .bind(actor)
            .bind(action)
            .bind(tenant_id)
            .bind(detail)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("SELECT id, at, actor, action, tenant_id, detail FROM audit_log ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| AuditEntry {
                        id: r.get("id"),
                        at: r.get("at"),
                        actor: r.get("actor"),
                        action: r.get("action"),
                        tenant_id: r.get("tenant_id"),
                        detail: r.get("detail"),
                    })
                    .collect()
            })
    })
}
