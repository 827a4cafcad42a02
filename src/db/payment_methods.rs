//! The payment method that pays each tenant's invoices, as the dashboard shows it.

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use serde::Serialize;

/// A card or bank account, as a person recognizes it; never more than Stripe shows in its portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PaymentMethodView {
    /// `card`, `us_bank_account`, `sepa_debit`.
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// The card brand (`visa`, ...) or the bank's name.
    #[schema(example = "visa")]
    pub brand: Option<String>,
    #[schema(example = "4242")]
    pub last4: Option<String>,
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
}

pub async fn set(
    db: &Db,
    tenant: &str,
    payment_method_id: &str,
    pm: &PaymentMethodView,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO payment_methods (tenant_id, stripe_payment_method_id, kind, brand, last4, exp_month, exp_year, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id) DO UPDATE SET stripe_payment_method_id = excluded.stripe_payment_method_id,
                kind = excluded.kind, brand = excluded.brand, last4 = excluded.last4,
                exp_month = excluded.exp_month, exp_year = excluded.exp_year, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(payment_method_id)
        .bind(&pm.kind)
        .bind(&pm.brand)
        .bind(&pm.last4)
        .bind(pm.exp_month)
        .bind(pm.exp_year)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
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
