//! Tenants (organizations) and their demo status.

use super::Db;
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub subdomain: String,
    pub is_demo: bool,
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum AddTenantError {
    #[error("a tenant with id {0:?} already exists")]
    DuplicateId(String),
    #[error("the subdomain {0:?} is already taken")]
    DuplicateSubdomain(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, name, subdomain, is_demo, created_at";

fn from_row<R: Row>(row: &R) -> Tenant
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Tenant {
        id: row.get("id"),
        name: row.get("name"),
        subdomain: row.get("subdomain"),
        is_demo: row.get("is_demo"),
        created_at: row.get("created_at"),
    }
}

pub async fn add(
    db: &Db,
    id: &TenantId,
    name: &str,
    subdomain: &str,
) -> Result<Tenant, AddTenantError> {
    let at = now();
    let result = with_pool!(db, pool => {
        sqlx::query(&format!(
            "INSERT INTO tenants (id, name, subdomain, is_demo, created_at, updated_at)
             VALUES ($1, $2, $3, FALSE, $4, $4) RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(name)
        .bind(subdomain)
        .bind(at)
        .fetch_one(pool)
        .await
        .map(|row| from_row(&row))
    });
    result.map_err(|e| add_error(e, id, subdomain))
}

/// A refused insert said in our terms: which unique key it hit.
fn add_error(e: sqlx::Error, id: &TenantId, subdomain: &str) -> AddTenantError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            if d.constraint() == Some("tenants_subdomain_key") || d.message().contains("subdomain")
            {
                AddTenantError::DuplicateSubdomain(subdomain.to_owned())
            } else {
                AddTenantError::DuplicateId(id.to_string())
            }
        }
        _ => AddTenantError::Db(e),
    }
}

/// Adds a tenant that has been a demo account since `since` (its creation elsewhere): one transaction, so
/// it never exists without its demo interval.
pub async fn add_demo_since(
    db: &Db,
    id: &TenantId,
    name: &str,
    subdomain: &str,
    since: DateTime<Utc>,
) -> Result<Tenant, AddTenantError> {
    let at = now();
    let result: Result<Tenant, sqlx::Error> = async {
        crate::begin_write!(db, pool, tx => {
            let row = sqlx::query(&format!(
                "INSERT INTO tenants (id, name, subdomain, is_demo, created_at, updated_at)
                 VALUES ($1, $2, $3, TRUE, $4, $4) RETURNING {COLUMNS}"
            ))
            .bind(id.as_str())
            .bind(name)
            .bind(subdomain)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO tenant_demo_periods (tenant_id, started_at) VALUES ($1, $2)")
                .bind(id.as_str())
                .bind(since.min(at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(from_row(&row))
        })
    }
    .await;
    result.map_err(|e| add_error(e, id, subdomain))
}

/// Renames a tenant; false if it is unknown.
pub async fn rename(db: &Db, id: &TenantId, name: &str) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE tenants SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(name)
            .bind(now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1)
    })
}

/// Whether another tenant than `except` has this subdomain.
pub async fn subdomain_taken(db: &Db, subdomain: &str, except: &str) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, String>("SELECT id FROM tenants WHERE subdomain = $1 AND id <> $2")
            .bind(subdomain)
            .bind(except)
            .fetch_optional(pool)
            .await
            .map(|r| r.is_some())
    })
}

pub async fn get(db: &Db, id: &TenantId) -> Result<Option<Tenant>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map(|row| row.map(|r| from_row(&r)))
    })
}

pub async fn list(db: &Db) -> Result<Vec<Tenant>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tenants ORDER BY created_at, id"))
            .fetch_all(pool)
            .await
            .map(|rows| rows.iter().map(from_row).collect())
    })
}

/// Sets a tenant's demo status and keeps the demo intervals in step. Returns the tenant, or None if unknown.
pub async fn set_demo(
    db: &Db,
    id: &TenantId,
    is_demo: bool,
) -> Result<Option<Tenant>, sqlx::Error> {
    set_demo_as_of(db, id, is_demo, now()).await
}

/// [`set_demo`] for a switch that happened at `as_of` (no later than now): a demo interval starts then, or
/// the open one ends then. Intervals stay disjoint and in order: a start is never before the end of an
/// earlier interval, an end never before its start (an interval that ends as it starts frees nothing).
///
/// Against a period already billed: the monthly run's claim fixed what each claimed rollup bills
/// (`usage::billable`, `billed_by` and the billed quantities), and later intervals change only open
/// rollups. So an interval reaching back into billed time never unbills or bills again what a run claimed:
/// usage claimed as billable stays billed, usage claimed as free stays free; events of that time that
/// arrive later (late usage) follow the interval.
pub async fn set_demo_as_of(
    db: &Db,
    id: &TenantId,
    is_demo: bool,
    as_of: DateTime<Utc>,
) -> Result<Option<Tenant>, sqlx::Error> {
    let at = now();
    let as_of = as_of.min(at);
    crate::begin_write!(db, pool, tx => {
        let before: Option<bool> = sqlx::query_scalar("SELECT is_demo FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = before else { return Ok(None) };
        if before != is_demo {
            sqlx::query("UPDATE tenants SET is_demo = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(is_demo)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            let bounds: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
                "SELECT started_at, ended_at FROM tenant_demo_periods WHERE tenant_id = $1",
            )
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if is_demo {
                let last_end = bounds.iter().filter_map(|(_, e)| *e).max();
                sqlx::query("INSERT INTO tenant_demo_periods (tenant_id, started_at) VALUES ($1, $2)")
                    .bind(id.as_str())
                    .bind(last_end.map_or(as_of, |e| e.max(as_of)))
                    .execute(&mut *tx)
                    .await?;
            } else {
                let open_start = bounds.iter().filter(|(_, e)| e.is_none()).map(|(s, _)| *s).max();
                sqlx::query(
                    "UPDATE tenant_demo_periods SET ended_at = $2 WHERE tenant_id = $1 AND ended_at IS NULL",
                )
                .bind(id.as_str())
                .bind(open_start.map_or(as_of, |s| s.max(as_of)))
                .execute(&mut *tx)
                .await?;
            }
        }
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(from_row(&row)))
    })
}

/// Which of `ids` are registered tenants (one query, whatever the count).
pub async fn existing(db: &Db, ids: &[&str]) -> Result<Vec<String>, sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(pool)
                .await
        }
        Db::Sqlite(pool) => {
            let json = serde_json::to_string(ids).expect("strings serialize");
            sqlx::query_scalar(
                "SELECT id FROM tenants WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(json)
            .fetch_all(pool)
            .await
        }
    }
}

/// The tenant's demo periods, each from its start to its end, for [`super::spans`] (as
/// `subscriptions::TRIAL_SPANS`).
pub const DEMO_SPANS: &str =
    "SELECT started_at, ended_at FROM tenant_demo_periods WHERE tenant_id = $1";
