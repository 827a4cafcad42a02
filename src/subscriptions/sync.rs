//! Turning Stripe's objects into our rows. Every write carries the time we read the object, and an older
//! reading never replaces a newer one, so webhooks may arrive in any order, any number of times.

use super::error::SyncError;
use crate::db::invoices::{self, InvoiceLineRow, InvoiceRow};
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::db::{customers, tenants};
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe;
use chrono::{DateTime, Utc};

pub fn ts(secs: Option<i64>) -> Option<DateTime<Utc>> {
    secs.and_then(|s| DateTime::from_timestamp(s, 0))
}

/// Which tenant a Stripe customer belongs to: our link, or (first sight) the `tenant_id` metadata of the
/// object, which we then record as the link if that tenant exists.
async fn resolve_tenant(
    state: &AppState,
    customer_id: &str,
    metadata_tenant: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    if let Some(t) = customers::tenant_of(&state.db, customer_id).await? {
        return Ok(Some(t));
    }
    let Some(candidate) = metadata_tenant.and_then(|t| TenantId::parse(t).ok()) else {
        return Ok(None);
    };
    if tenants::get(&state.db, &candidate).await?.is_none() {
        return Ok(None);
    }
    let linked = customers::link(&state.db, candidate.as_str(), customer_id, None).await?;
    // The tenant may already have another customer; then this object is not the tenant's.
    Ok((linked == customer_id).then(|| candidate.to_string()))
}

/// Stores a subscription read from Stripe at `read_at` (our clock; Stripe's clock, kept on the object,
/// orders readings first). Returns the row, or None if no tenant owns it.
pub async fn subscription(
    state: &AppState,
    sub: &stripe::Subscription,
    read_at: DateTime<Utc>,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    let customer_id = sub.customer.id();
    let Some(tenant_id) = resolve_tenant(
        state,
        customer_id,
        sub.metadata.get("tenant_id").map(String::as_str),
    )
    .await?
    else {
        tracing::warn!(subscription = %sub.id, customer = %customer_id, "subscription of an unknown customer ignored");
        return Ok(None);
    };
    let (start, end) = sub.current_period();
    let row = SubscriptionRow {
        stripe_subscription_id: sub.id.clone(),
        tenant_id,
        stripe_customer_id: customer_id.to_owned(),
        status: sub.status.clone(),
        price_id: sub.price_id().map(str::to_owned),
        amount_cents: sub.monthly_amount_cents(),
        currency: sub.currency(),
        current_period_start: ts(start),
        current_period_end: ts(end),
        trial_start: ts(sub.trial_start),
        trial_end: ts(sub.trial_end),
        cancel_at_period_end: sub.cancel_at_period_end,
        canceled_at: ts(sub.canceled_at),
        ended_at: ts(sub.ended_at),
        stripe_created_at: ts(Some(sub.created)).unwrap_or_else(now),
        stripe_updated_at: read_at,
    };
    subscriptions::upsert_versioned(&state.db, &row, sub.stripe_time).await?;
    subscriptions::get(&state.db, &row.stripe_subscription_id).await
}

/// Stores an invoice read from Stripe at `read_at` (ordered as [`subscription`] orders), with every line:
/// Stripe embeds only the first ones, the rest are read page by page.
/// Returns the row, or None if no tenant owns it.
pub async fn invoice(
    state: &AppState,
    inv: &stripe::Invoice,
    read_at: DateTime<Utc>,
) -> Result<Option<InvoiceRow>, SyncError> {
    let Some(customer_id) = inv.customer_id() else {
        return Ok(None);
    };
    let Some(tenant_id) = resolve_tenant(
        state,
        customer_id,
        inv.metadata.get("tenant_id").map(String::as_str),
    )
    .await?
    else {
        tracing::warn!(invoice = %inv.id, customer = %customer_id, "invoice of an unknown customer ignored");
        return Ok(None);
    };
    let paged;
    let all_lines: &[stripe::InvoiceLine] = match inv.lines.as_ref() {
        Some(l) if l.has_more => {
            paged = state.stripe.invoice_lines(&inv.id).await?;
            &paged
        }
        Some(l) => &l.data,
        None => &[],
    };
    let lines = all_lines
        .iter()
        .map(|line| InvoiceLineRow {
            description: line.description.clone().unwrap_or_default(),
            amount_cents: line.amount,
        })
        .collect();
    let row = InvoiceRow {
        stripe_invoice_id: inv.id.clone(),
        tenant_id,
        stripe_customer_id: customer_id.to_owned(),
        stripe_subscription_id: inv.subscription_id().map(str::to_owned),
        billing_period: inv.metadata.get("billing_period").cloned(),
        status: inv.status().to_owned(),
        number: inv.number.clone(),
        period_start: ts(inv.period_start),
        period_end: ts(inv.period_end),
        amount_due_cents: inv.amount_due,
        amount_paid_cents: inv.amount_paid,
        currency: inv.currency.clone(),
        hosted_invoice_url: inv.hosted_invoice_url.clone(),
        invoice_pdf: inv.invoice_pdf.clone(),
        paid_at: ts(inv.status_transitions.paid_at),
        due_date: ts(inv.due_date),
        lines,
        stripe_created_at: ts(Some(inv.created)).unwrap_or_else(now),
        stripe_updated_at: read_at,
    };
    let written = invoices::upsert_versioned(&state.db, &row, inv.stripe_time).await?;
    // Read with its payments expanded, the invoice says whether a payment is processing or waits for
    // the customer; otherwise what we knew stands.
    if written && inv.payments.is_some() && row.status == "open" {
        invoices::set_payment_state(&state.db, &row.stripe_invoice_id, inv.payment_state()).await?;
    }
    Ok(invoices::get(&state.db, &row.stripe_invoice_id).await?)
}

/// What a refresh of a subscription does about the tenant's payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethodStep {
    /// Nothing (a dry run writes nothing to Stripe).
    Leave,
    /// Record the one the subscription is paid with when the tenant has none on record, and copy the
    /// tenant's onto the customer and subscriptions where it is missing
    /// (`payment_method::fill_if_missing`).
    FillIfMissing,
}

/// Reads the subscription from Stripe now and stores it, with the payment-method `step`. The fetch and
/// the store are one step per object in this process (see [`one_at_a_time`]), and the reading is
/// ordered by Stripe's clock at its answer: a handler that read earlier never stores over one that read
/// later, whatever the replicas' clocks say.
pub async fn refresh_subscription(
    state: &AppState,
    id: &str,
    step: PaymentMethodStep,
) -> Result<Option<SubscriptionRow>, SyncError> {
    let _one_at_a_time = one_at_a_time(state, id).await;
    let read_at = now();
    let sub = state.stripe.subscription_with_customer(id).await?;
    let row = subscription(state, &sub, read_at).await?;
    if let Some(r) = row.as_ref() {
        if sub.ended_at.is_none() && step == PaymentMethodStep::FillIfMissing {
            super::payment_method::fill_if_missing(state, &r.tenant_id, &sub).await?;
        }
    }
    Ok(row)
}

/// Reads the invoice from Stripe now and stores it (as [`refresh_subscription`] does).
pub async fn refresh_invoice(state: &AppState, id: &str) -> Result<Option<InvoiceRow>, SyncError> {
    let _one_at_a_time = one_at_a_time(state, id).await;
    let read_at = now();
    let inv = state.stripe.invoice_with_payment(id).await?;
    invoice(state, &inv, read_at).await
}

/// The lock under which a Stripe object is read or written and stored, so that in this process two
/// readings of one object are stored in the order they were made.
pub async fn one_at_a_time(state: &AppState, object_id: &str) -> crate::db::locks::HeldLocal {
    crate::db::locks::lock_local(&state.locks, &format!("stripe:{object_id}")).await
}
