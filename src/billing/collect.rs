//! Collecting what is owed beyond the monthly run's first charge: a tenant's open invoices paid at once
//! when its payment method changes, and the usage invoices' own retries on `USAGE_RETRY_DAYS`.
//!
//! Stripe retries a subscription's invoices itself, but retries one-off invoices (our usage invoices)
//! only when an account setting in its dashboard says so, which the API does not show; so the service
//! retries them. Never a second charge: every attempt reads the invoice first (paid, voided or
//! uncollectible: nothing to do; a bank debit processing: not now), and every attempt has an
//! idempotency key of its own, derived from what it is (`collect:{invoice}:{payment method}:{change}`,
//! `usage-retry:{invoice}:{n}`), so an attempt repeated after a crash or by another replica is the same
//! write. Days are counted on Stripe's clock: the failure event's `created` and the `Date` of Stripe's
//! answer to the read before the attempt.

use super::attempts::{self, Attempt, Reason};
use crate::db::payment_methods::Choice;
use crate::db::subscriptions;
use crate::domain::time::now;
use crate::state::AppState;
use crate::stripe::{Collected, Collection, Invoice, InvoiceStatus};
use crate::subscriptions::sync::{self, PaymentMethodStep, SyncError};
use chrono::{DateTime, Utc};

const DAY: i64 = 86_400;

/// After the tenant's payment method changed: pays each of its open invoices (the subscription's and
/// the usage invoices) once with it, then reads its subscriptions again, so that access follows at once.
pub async fn after_change(
    state: &AppState,
    tenant: &str,
    customer: &str,
    choice: &Choice,
) -> Result<(), SyncError> {
    let mut paid_any = false;
    for inv in state.stripe.open_invoices_of(customer).await? {
        let charged = inv.collection_method.as_deref() != Some("send_invoice");
        if !charged || inv.amount_remaining <= 0 {
            continue;
        }
        let key = format!(
            "collect:{}:{}:{}",
            inv.id, choice.stripe_payment_method_id, choice.changed_at
        );
        let outcome = attempt(
            state,
            tenant,
            &inv.id,
            Reason::PaymentMethodChanged,
            0,
            &key,
        )
        .await?;
        paid_any |= outcome == Some("paid");
    }
    if paid_any {
        for sub in subscriptions::for_tenant(&state.db, tenant).await? {
            if sub.is_live() {
                // Boxed: a refresh may settle the payment method, which may come back here.
                Box::pin(sync::refresh_subscription(
                    state,
                    &sub.stripe_subscription_id,
                    PaymentMethodStep::Leave,
                ))
                .await?;
            }
        }
    }
    Ok(())
}

/// One attempt at an invoice, under `key`, after reading it: returns the outcome recorded (`paid`,
/// `processing`, `declined`, `action_required`), or None when there was nothing to attempt (settled,
/// or a bank debit processing).
async fn attempt(
    state: &AppState,
    tenant: &str,
    invoice_id: &str,
    reason: Reason,
    attempt_no: i32,
    key: &str,
) -> Result<Option<&'static str>, SyncError> {
    let _one_at_a_time = sync::one_at_a_time(state, invoice_id).await;
    let read_at = now();
    let inv = state.stripe.invoice_with_payment(invoice_id).await?;
    sync::invoice(state, &inv, read_at).await?;
    if !attemptable(&inv) {
        return Ok(None);
    }
    let stripe_time = stripe_clock(&inv);
    let read_at = now();
    let collected = state
        .stripe
        .collect_invoice(&inv, Collection::ChargeAutomatically, key)
        .await?;
    let detail = match &collected {
        Collected::Done(after) | Collected::Processing(after) => {
            sync::invoice(state, after, read_at).await?;
            None
        }
        Collected::Declined | Collected::ActionRequired => {
            // The invoice's new attempt count and payment state.
            let after = state.stripe.invoice_with_payment(invoice_id).await?;
            sync::invoice(state, &after, read_at).await?;
            None
        }
        Collected::AlreadySettled(_) => Some("settled before the attempt".to_owned()),
    };
    let outcome = collected.label();
    attempts::record(
        &state.db,
        &Attempt {
            idempotency_key: key.to_owned(),
            tenant_id: tenant.to_owned(),
            stripe_invoice_id: invoice_id.to_owned(),
            billing_period: inv.metadata.get("billing_period").cloned(),
            reason: reason.as_str().to_owned(),
            attempt_no,
            stripe_time,
            outcome: outcome.to_owned(),
            detail,
        },
    )
    .await?;
    tracing::info!(
        tenant_id = tenant,
        invoice = invoice_id,
        reason = reason.as_str(),
        outcome,
        "payment attempted"
    );
    Ok(Some(outcome))
}

/// Whether an invoice read just now may be charged: open, something left to pay, and no bank debit
/// processing (that payment is neither paid nor failed yet).
fn attemptable(inv: &Invoice) -> bool {
    InvoiceStatus::of(inv) == InvoiceStatus::Open
        && inv.amount_remaining > 0
        && inv.payment_state() != Some("processing")
}

/// Stripe's clock at the answer that carried `inv` (its `Date`), else ours.
fn stripe_clock(inv: &Invoice) -> DateTime<Utc> {
    inv.stripe_time
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or_else(now)
}

/// The retry of a usage invoice due on Stripe's clock `stripe_now`: its number (1-based), when the
/// retries made so far leave one and its day has come.
pub fn retry_due(
    days: &[u32],
    first_failed_at: DateTime<Utc>,
    retries_made: i64,
    stripe_now: DateTime<Utc>,
) -> Option<usize> {
    let next = usize::try_from(retries_made).ok()?;
    let day = *days.get(next)?;
    let due = first_failed_at.timestamp() + i64::from(day) * DAY;
    (stripe_now.timestamp() >= due).then_some(next + 1)
}

/// Runs the usage invoices' retries that are due. Returns how many attempts were made.
pub async fn retries(state: &AppState) -> Result<usize, SyncError> {
    let days = &state.settings.billing.usage_retry_days;
    let mut made = 0;
    for c in attempts::retry_candidates(&state.db).await? {
        if usize::try_from(c.retries).is_ok_and(|n| n >= days.len()) {
            continue;
        }
        // The status, and Stripe's clock, before the attempt.
        let read_at = now();
        let inv = state
            .stripe
            .invoice_with_payment(&c.stripe_invoice_id)
            .await?;
        sync::invoice(state, &inv, read_at).await?;
        if !attemptable(&inv) {
            continue;
        }
        let Some(n) = retry_due(days, c.first_failed_at, c.retries, stripe_clock(&inv)) else {
            continue;
        };
        let key = format!("usage-retry:{}:{n}", c.stripe_invoice_id);
        let attempt_no = i32::try_from(n).unwrap_or(i32::MAX);
        if attempt(
            state,
            &c.tenant_id,
            &c.stripe_invoice_id,
            Reason::Retry,
            attempt_no,
            &key,
        )
        .await?
        .is_some()
        {
            made += 1;
        }
    }
    Ok(made)
}

/// One wake-up of the collection work: open invoices still due after a change of payment method (a
/// crash, or a Stripe error, left them), then the retries.
pub async fn tick(state: &AppState) {
    match crate::db::payment_methods::collect_due(&state.db).await {
        Ok(tenants) => {
            for tenant in tenants {
                if let Err(e) = crate::subscriptions::payment_method::settle(state, &tenant).await {
                    tracing::warn!(tenant_id = %tenant, error = %e, "open invoices not collected yet");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the tenants due for collection"),
    }
    match retries(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(attempts = n, "usage invoice retries made"),
        Err(e) => {
            tracing::warn!(error = %e, "usage invoice retries stopped; the next wake-up goes on")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + day * DAY, 0).unwrap()
    }

    fn invoice(status: &str, remaining: i64, payment: Option<&str>) -> Invoice {
        let mut v = serde_json::json!({
            "id": "in_1", "object": "invoice", "status": status, "currency": "usd", "created": 1,
            "amount_remaining": remaining,
        });
        if let Some(p) = payment {
            v["payments"] = serde_json::json!({"object": "list", "has_more": false, "data": [
                {"status": "open", "payment": {"type": "payment_intent",
                    "payment_intent": {"id": "pi_1", "status": p}}}]});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_an_open_invoice_owing_money_without_a_debit_in_flight_is_attempted() {
        assert!(attemptable(&invoice("open", 300, None)));
        assert!(attemptable(&invoice(
            "open",
            300,
            Some("requires_payment_method")
        )));
        // The bank asks for authentication: trying again is allowed (it asks again).
        assert!(attemptable(&invoice("open", 300, Some("requires_action"))));
        // A bank debit in flight is neither paid nor failed: not now.
        assert!(!attemptable(&invoice("open", 300, Some("processing"))));
        for settled in ["paid", "void", "uncollectible"] {
            assert!(!attemptable(&invoice(settled, 0, None)), "{settled}");
        }
        assert!(
            !attemptable(&invoice("open", 0, None)),
            "nothing left to pay"
        );
    }

    #[test]
    fn retries_fall_on_the_days_after_the_first_failure() {
        let days = [3, 5, 7];
        assert_eq!(retry_due(&days, t(0), 0, t(2)), None);
        assert_eq!(retry_due(&days, t(0), 0, t(3)), Some(1));
        // Late (the service was down): still the first retry, once.
        assert_eq!(retry_due(&days, t(0), 0, t(6)), Some(1));
        assert_eq!(retry_due(&days, t(0), 1, t(4)), None);
        assert_eq!(retry_due(&days, t(0), 1, t(5)), Some(2));
        assert_eq!(retry_due(&days, t(0), 2, t(7)), Some(3));
        // All made: no more.
        assert_eq!(retry_due(&days, t(0), 3, t(30)), None);
        assert_eq!(retry_due(&[], t(0), 0, t(30)), None);
    }
}
