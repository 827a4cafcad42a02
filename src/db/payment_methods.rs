//! The payment method that pays each tenant's invoices: the one the tenant changed last, as the
//! dashboard shows it, when it changed by Stripe's clock, and whether the tenant's open invoices are
//! still to be paid after that change.

use super::Db;
use crate::domain::time::now;
use crate::domain::PaymentMethodView;
use crate::with_pool;

/// The tenant's payment method as last chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub stripe_payment_method_id: String,
    /// Stripe's clock (seconds) of the change that chose it; 0 when only read, never seen changing.
    pub changed_at: i64,
    /// The tenant's open invoices are still to be paid with it.
    pub collect_due: bool,
}

/// Records that the tenant set `payment_method_id` at `changed_at` (Stripe's clock), unless a change
/// at least as recent is stored (a change in the same second replaces another method: the later
/// news wins). A different payment method than before makes the open invoices due for collection.
/// Returns whether it was recorded (it is the latest change known), in the one statement that decides.
pub async fn record_change(
    db: &Db,
    tenant: &str,
    payment_method_id: &str,
    pm: &PaymentMethodView,
    changed_at: i64,
) -> Result<bool, sqlx::Error> {
    let newer = "ON CONFLICT (tenant_id) DO UPDATE SET stripe_payment_method_id = excluded.stripe_payment_method_id,
                kind = excluded.kind, brand = excluded.brand, last4 = excluded.last4,
                exp_month = excluded.exp_month, exp_year = excluded.exp_year, updated_at = excluded.updated_at,
                changed_at = excluded.changed_at,
                collect_due = (payment_methods.collect_due
                    OR payment_methods.stripe_payment_method_id <> excluded.stripe_payment_method_id)
             WHERE payment_methods.changed_at < excluded.changed_at
                OR (payment_methods.changed_at = excluded.changed_at
                    AND payment_methods.stripe_payment_method_id <> excluded.stripe_payment_method_id)
             RETURNING tenant_id";
    let written = insert(db, tenant, payment_method_id, pm, changed_at, true, newer).await?;
    Ok(written > 0)
}

/// Records `payment_method_id` as the tenant's when none is recorded: a reading, not a change (any
/// change reported later wins, and nothing becomes due for collection).
pub async fn fill(
    db: &Db,
    tenant: &str,
    payment_method_id: &str,
    pm: &PaymentMethodView,
) -> Result<(), sqlx::Error> {
    insert(
        db,
        tenant,
        payment_method_id,
        pm,
        0,
        false,
        "ON CONFLICT (tenant_id) DO NOTHING RETURNING tenant_id",
    )
    .await
    .map(|_| ())
}

/// Inserts the tenant's payment method, or does `on_conflict` (which ends `RETURNING tenant_id`) when
/// it has one. Returns the rows written (0 or 1).
async fn insert(
    db: &Db,
    tenant: &str,
    payment_method_id: &str,
    pm: &PaymentMethodView,
    changed_at: i64,
    collect_due: bool,
    on_conflict: &str,
) -> Result<usize, sqlx::Error> {
    let sql = format!(
        "INSERT INTO payment_methods (tenant_id, stripe_payment_method_id, kind, brand, last4, exp_month,
            exp_year, updated_at, changed_at, collect_due)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) {on_conflict}"
    );
    let rows: Vec<(String,)> = with_pool!(db, pool => {
        sqlx::query_as(&sql)
            .bind(tenant)
            .bind(payment_method_id)
            .bind(&pm.kind)
            .bind(&pm.brand)
            .bind(&pm.last4)
            .bind(pm.exp_month)
            .bind(pm.exp_year)
            .bind(now())
            .bind(changed_at)
            .bind(collect_due)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.len())
}

/// The tenant's chosen payment method, if any.
pub async fn choice(db: &Db, tenant: &str) -> Result<Option<Choice>, sqlx::Error> {
    let row: Option<(String, i64, bool)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT stripe_payment_method_id, changed_at, collect_due FROM payment_methods WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(
        |(stripe_payment_method_id, changed_at, collect_due)| Choice {
            stripe_payment_method_id,
            changed_at,
            collect_due,
        },
    ))
}

/// The open invoices were paid after the change `choice` records (a later change keeps its own due).
pub async fn collected(db: &Db, tenant: &str, choice: &Choice) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE payment_methods SET collect_due = FALSE
             WHERE tenant_id = $1 AND stripe_payment_method_id = $2 AND changed_at = $3",
        )
        .bind(tenant)
        .bind(&choice.stripe_payment_method_id)
        .bind(choice.changed_at)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Tenants whose open invoices are still to be paid after a change of payment method.
pub async fn collect_due(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT tenant_id FROM payment_methods WHERE collect_due = TRUE ORDER BY tenant_id")
            .fetch_all(pool)
            .await
    })
}

pub async fn get(db: &Db, tenant: &str) -> Result<Option<PaymentMethodView>, sqlx::Error> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<i32>,
    );
    let row: Option<Row> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT kind, brand, last4, exp_month, exp_year FROM payment_methods WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(
        |(kind, brand, last4, exp_month, exp_year)| PaymentMethodView {
            kind,
            brand,
            last4,
            exp_month,
            exp_year,
        },
    ))
}
