//! The organizations billed here, as an admin registers and reads them: added with the audit trail's
//! record of who added them, listed, and the trail itself. The platform's follower registers its own
//! organizations (`platform::organizations`).

use crate::db::audit::{self, AuditEntry};
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::db::tenants::{self, AddTenantError, Tenant};
use crate::db::Db;
use crate::domain::{Subdomain, TenantId};

/// Registers an organization; `actor` is recorded in the audit trail as who added it.
pub async fn add(
    db: &Db,
    actor: &str,
    id: &TenantId,
    name: &str,
    subdomain: &Subdomain,
) -> Result<Tenant, AddTenantError> {
    let tenant = tenants::add(db, id, name, subdomain.as_str()).await?;
    audit::record(db, actor, "tenant.add", Some(id.as_str()), name).await?;
    tracing::info!(tenant_id = %id, "tenant added");
    Ok(tenant)
}

pub async fn list(db: &Db) -> Result<Vec<Tenant>, sqlx::Error> {
    tenants::list(db).await
}

/// The organization (None: not registered here) and its live subscription, if any.
pub async fn with_live_subscription(
    db: &Db,
    id: &TenantId,
) -> Result<(Option<Tenant>, Option<SubscriptionRow>), sqlx::Error> {
    let tenant = tenants::get(db, id).await?;
    let live = subscriptions::live_for_tenant(db, id.as_str()).await?;
    Ok((tenant, live))
}

/// The latest `limit` entries of the audit trail, newest first.
pub async fn audit_trail(db: &Db, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
    audit::recent(db, limit).await
}
