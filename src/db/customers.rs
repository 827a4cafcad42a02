//! The link between a tenant and its one Stripe customer.

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use sqlx::Row;

/// The tenant's Stripe customer id, if it has one.
pub async fn customer_of(db: &Db, tenant_id: &str) -> Result<Option<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT stripe_customer_id FROM stripe_customers WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await
    })
}

/// The tenant a Stripe customer belongs to, if we know it.
pub async fn tenant_of(db: &Db, customer_id: &str) -> Result<Option<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT tenant_id FROM stripe_customers WHERE stripe_customer_id = $1")
            .bind(customer_id)
            .fetch_optional(pool)
            .await
    })
}

/// Records the link unless the tenant already has a customer; returns the customer the tenant has now.
pub async fn link(
    db: &Db,
    tenant_id: &str,
    customer_id: &str,
    email: Option<&str>,
) -> Result<String, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO stripe_customers (tenant_id, stripe_customer_id, email, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id)
        .bind(customer_id)
        .bind(email)
        .bind(now())
        .execute(pool)
        .await?;
        let row = sqlx::query("SELECT stripe_customer_id FROM stripe_customers WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(pool)
            .await?;
        Ok(row.get::<String, _>(0))
    })
}

/// Every tenant with a Stripe customer, with its customer id, ordered by tenant.
pub async fn all(db: &Db) -> Result<Vec<(String, String)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, (String, String)>(
            "SELECT tenant_id, stripe_customer_id FROM stripe_customers ORDER BY tenant_id",
        )
        .fetch_all(pool)
        .await
    })
}
