//! Collecting what is owed beyond the monthly run's first charge: a tenant's open invoices paid at once
//! when its payment method changes, and the usage invoices' own retries on `USAGE_RETRY_DAYS`.
//!
//! Stripe retries a subscription's invoices itself, but retries one-off invoices (our usage invoices)
//! only when an account setting in its dashboard says so, which the API does not show; so the service
//! retries them. Never a second charge: every attempt reads the invoice first (paid, voided or
//! uncollectible: nothing to do; a bank debit processing: not now; sent for payment by email: the
//! customer pays it, nothing is charged), and every attempt has an idempotency key of its own, derived
//! from what it is (`collect:{invoice}:{payment method}:{change}`, `usage-retry:{invoice}:{n}`), so an
//! attempt repeated after a crash or by another replica is the same write. Days are counted on
//! Stripe's clock: the failure event's `created` and the `Date` of Stripe's answer to the read before
//! the attempt.
//!
//! Each invoice stands alone: one that fails (Stripe refusing it, or unreachable) is recorded and
//! logged, and the others go on. A retry is only made where it may help and the rules allow it: not
//! after a card declined as lost, stolen, picked up or fraudulent (the card networks forbid retrying
//! those), nor after a bank returned a debit for any reason but insufficient funds, which NACHA's rules
//! allow to be presented again at most twice; nor after Stripe refused the payment for good. Those
//! stop the retries with the tenant's payment method (a row the admin page shows); a new one is
//! charged at once, and retried again if it fails.

use super::attempts::{self, Attempt, Reason, RetryCandidate};
use crate::db::payment_methods::{self, Choice};
use crate::db::{subscriptions, tenants};
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe::{Collected, Collection, Invoice, InvoiceStatus, PaymentError, StripeError};
use crate::subscriptions::error::SyncError;
use crate::subscriptions::payment_method;
use crate::subscriptions::sync::{self, PaymentMethodStep};
use chrono::{DateTime, Utc};

const DAY: i64 = 86_400;

/// What one attempt at an invoice came to.
#[derive(Debug)]
enum Tried {
    /// Nothing was attempted: settled, a bank debit processing, or sent for payment by email.
    Nothing,
    /// Made, and recorded with this outcome (`paid`, `processing`, `declined`, `action_required`, or
    /// what the invoice turned out to be: `void`, `uncollectible`).
    Made(&'static str),
    /// Stripe refused it for good (recorded as `refused`).
    Refused(StripeError),
}

/// After the tenant's payment method changed: pays each of its open invoices (the subscription's and
/// the usage invoices) once with it, then reads its subscriptions again, so that access follows at once.
/// An invoice that cannot be paid now does not keep the others from being paid: the error is returned
/// after all were tried (the change stays due, and the next wake-up tries again), unless Stripe
/// refused that invoice for good (recorded, and left to the retries' rules).
pub async fn after_change(
    state: &AppState,
    tenant: &str,
    customer: &str,
    choice: &Choice,
) -> Result<(), SyncError> {
    let mut paid_any = false;
    let mut failed = None;
    for inv in state.stripe.open_invoices_of(customer).await? {
        if sent_for_payment(&inv) || inv.amount_remaining <= 0 {
            continue;
        }
        let key = format!(
            "collect:{}:{}:{}",
            inv.id, choice.stripe_payment_method_id, choice.changed_at
        );
        match attempt(
            state,
            tenant,
            &inv.id,
            Reason::PaymentMethodChanged,
            0,
            &key,
        )
        .await
        {
            Ok(Tried::Made(outcome)) => paid_any |= outcome == "paid",
            Ok(Tried::Nothing | Tried::Refused(_)) => {}
            Err(e) => {
                tracing::warn!(tenant_id = tenant, invoice = %inv.id, error = %e, "open invoice not paid yet; the others go on");
                failed.get_or_insert(e);
            }
        }
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
    failed.map_or(Ok(()), Err)
}

/// One attempt at an invoice, under `key`, after reading it, recorded with its outcome. An error on
/// the way (Stripe unreachable, a 5xx) is recorded as `error` and returned: the same attempt, under the
/// same key, is made again later. An error before the attempt (the read) is returned, nothing recorded.
async fn attempt(
    state: &AppState,
    tenant: &str,
    invoice_id: &str,
    reason: Reason,
    attempt_no: i32,
    key: &str,
) -> Result<Tried, SyncError> {
    let _one_at_a_time = sync::one_at_a_time(state, invoice_id).await;
    let read_at = now();
    let inv = state.stripe.invoice_with_payment(invoice_id).await?;
    sync::invoice(state, &inv, read_at).await?;
    if !attemptable(&inv) {
        return Ok(Tried::Nothing);
    }
    let stripe_time = stripe_clock(&inv);
    let read_at = now();
    let collected = state
        .stripe
        .collect_invoice(&inv, Collection::ChargeAutomatically, key)
        .await;
    // What Stripe has now: the answer, or (after a refusal) the invoice's new attempt count, payment
    // state and failure. Stored only once the attempt is recorded, so that an error storing it does
    // not lose the record.
    let mut after: Option<Invoice> = None;
    let (tried, outcome, detail) = match collected {
        Ok(collected) => {
            let detail = match &collected {
                Collected::Done(inv) | Collected::Processing(inv) => {
                    after = Some((**inv).clone());
                    None
                }
                Collected::Declined | Collected::ActionRequired => {
                    after = state.stripe.invoice_with_payment(invoice_id).await.ok();
                    after
                        .as_ref()
                        .and_then(|a| a.last_failure())
                        .and_then(describe)
                }
                Collected::AlreadySettled(_) => Some("settled before the attempt".to_owned()),
            };
            let outcome = collected.label();
            (Ok(Tried::Made(outcome)), outcome, detail)
        }
        Err(e) => {
            let detail = Some(e.to_string());
            if e.refuses_payment() {
                (Ok(Tried::Refused(e)), attempts::REFUSED, detail)
            } else {
                (Err(SyncError::from(e)), attempts::ERROR, detail)
            }
        }
    };
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
    if let Some(after) = &after {
        sync::invoice(state, after, read_at).await?;
    }
    tracing::info!(
        tenant_id = tenant,
        invoice = invoice_id,
        reason = reason.as_str(),
        outcome,
        "payment attempted"
    );
    tried
}

/// What the last failure says, for the record: its code and the issuer's or bank's reason.
fn describe(failure: &PaymentError) -> Option<String> {
    match (failure.code.as_deref(), failure.decline_code.as_deref()) {
        (Some(code), Some(reason)) if code != reason => Some(format!("{code} ({reason})")),
        (Some(code), _) => Some(code.to_owned()),
        (None, reason) => reason.map(str::to_owned),
    }
}

/// An invoice Stripe emails for the customer to pay (`send_invoice`): never charged off-session.
fn sent_for_payment(inv: &Invoice) -> bool {
    inv.collection_method.as_deref() == Some("send_invoice")
}

/// Whether an invoice read just now may be charged: open, something left to pay, charged rather than
/// sent for payment by email, and no bank debit processing (that payment is neither paid nor failed
/// yet).
fn attemptable(inv: &Invoice) -> bool {
    InvoiceStatus::of(inv) == InvoiceStatus::Open
        && inv.amount_remaining > 0
        && !sent_for_payment(inv)
        && inv.payment_state() != Some("processing")
}

/// Stripe's clock at the answer that carried `inv` (its `Date`), else ours.
fn stripe_clock(inv: &Invoice) -> DateTime<Utc> {
    inv.stripe_time
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or_else(now)
}

/// The retry of a usage invoice due on Stripe's clock `stripe_now`: its number (1-based), when the
/// retries made so far leave one, its day has come, and the service's last attempt on the invoice
/// (`last_attempt_at`) is far enough behind: the gap `USAGE_RETRY_DAYS` sets between this retry and
/// the one before, and at least a day. So retries the service could not make on their days (it was
/// down) are spread out again, not made one after another.
pub fn retry_due(
    days: &[u32],
    first_failed_at: DateTime<Utc>,
    retries_made: i64,
    last_attempt_at: Option<DateTime<Utc>>,
    stripe_now: DateTime<Utc>,
) -> Option<usize> {
    let next = usize::try_from(retries_made).ok()?;
    let day = i64::from(*days.get(next)?);
    let due = first_failed_at.timestamp() + day * DAY;
    let gap = match next.checked_sub(1).and_then(|p| days.get(p)) {
        Some(before) => (day - i64::from(*before)).max(1),
        None => 1,
    };
    let spaced = last_attempt_at.map_or(i64::MIN, |t| t.timestamp() + gap * DAY);
    (stripe_now.timestamp() >= due.max(spaced)).then_some(next + 1)
}

/// Card decline codes after which the card networks forbid trying the card again: the issuer will
/// never approve it (Stripe, https://docs.stripe.com/declines/codes: "The customer needs to use an
/// alternative card").
const HARD_DECLINES: &[&str] = &["lost_card", "stolen_card", "pickup_card", "fraudulent"];

/// Bank debits NACHA allows to be presented again after a return for insufficient or uncollected
/// funds (R01, R09; Stripe's `insufficient_funds`): two, within 180 days.
const BANK_REPRESENTMENTS: i64 = 2;

/// Why a usage invoice must not be retried with the tenant's payment method (`current`, Stripe's id),
/// given its last failure and the retries made, if it must not. A failure of another payment method
/// than the tenant's (changed since) stops nothing: the present one has not failed.
pub fn stop_reason(
    failure: Option<&PaymentError>,
    current: Option<&str>,
    retries_made: i64,
) -> Option<String> {
    let failure = failure?;
    let failed_pm = failure.payment_method.as_ref();
    if let (Some(failed), Some(current)) = (failed_pm, current) {
        if failed.id != current {
            return None;
        }
    }
    let code = failure.code.as_deref().unwrap_or("");
    let reason = failure.decline_code.as_deref().unwrap_or("");
    let bank = match failed_pm.and_then(|p| p.kind.as_deref()) {
        Some(kind) => kind != "card",
        None => BANK_CODES.contains(&code),
    };
    if bank {
        if code == "insufficient_funds" || reason == "insufficient_funds" {
            return (retries_made >= BANK_REPRESENTMENTS).then(|| {
                format!(
                    "the bank returned the debit for insufficient funds again: NACHA's rules allow {BANK_REPRESENTMENTS} new presentments, no more"
                )
            });
        }
        return Some(format!(
            "the bank returned the debit ({}): NACHA's rules forbid debiting the account again until the customer has fixed it",
            describe(failure).unwrap_or_else(|| "no reason given".to_owned())
        ));
    }
    HARD_DECLINES
        .iter()
        .find(|hard| reason == **hard || code == **hard)
        .map(|hard| {
            format!("the card was declined as {hard}: the card networks forbid trying it again")
        })
}

/// Failure codes only a bank debit gives (when the failure does not say which payment method failed).
const BANK_CODES: &[&str] = &[
    "account_closed",
    "no_account",
    "debit_not_authorized",
    "payment_method_bank_account_blocked",
    "bank_account_restricted",
    "bank_account_unusable",
];

/// Runs the usage invoices' retries that are due, each invoice on its own: one that fails is logged
/// and the others go on. Returns how many attempts were made.
pub async fn retries(state: &AppState) -> Result<usize, SyncError> {
    let mut made = 0;
    for c in attempts::retry_candidates(&state.db).await? {
        match retry(state, &c).await {
            Ok(true) => made += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(
                tenant_id = %c.tenant_id,
                invoice = %c.stripe_invoice_id,
                error = %e,
                "usage invoice not retried now; the next wake-up tries again"
            ),
        }
    }
    Ok(made)
}

/// The retry of one candidate, if one is due and allowed. Returns whether an attempt was made.
async fn retry(state: &AppState, c: &RetryCandidate) -> Result<bool, SyncError> {
    let days = &state.settings.billing.usage_retry_days;
    if c.stopped || usize::try_from(c.retries).is_ok_and(|n| n >= days.len()) {
        return Ok(false);
    }
    // The status, why it last failed, and Stripe's clock, before the attempt.
    let read_at = now();
    let inv = state
        .stripe
        .invoice_with_payment(&c.stripe_invoice_id)
        .await?;
    sync::invoice(state, &inv, read_at).await?;
    if !attemptable(&inv) {
        return Ok(false);
    }
    let current = c.payment_method.as_deref();
    if let Some(why) = stop_reason(inv.last_failure(), current, c.retries) {
        stop(state, c, stripe_clock(&inv), &why).await?;
        return Ok(false);
    }
    let Some(n) = retry_due(
        days,
        c.first_failed_at,
        c.retries,
        c.last_attempt_at,
        stripe_clock(&inv),
    ) else {
        return Ok(false);
    };
    let key = format!("usage-retry:{}:{n}", c.stripe_invoice_id);
    let attempt_no = i32::try_from(n).unwrap_or(i32::MAX);
    match attempt(
        state,
        &c.tenant_id,
        &c.stripe_invoice_id,
        Reason::Retry,
        attempt_no,
        &key,
    )
    .await?
    {
        Tried::Nothing => Ok(false),
        Tried::Made(_) => Ok(true),
        Tried::Refused(e) => {
            let why = format!("Stripe refused the payment: {e}");
            stop(state, c, stripe_clock(&inv), &why).await?;
            Ok(true)
        }
    }
}

/// Records that the candidate's retries stop with the tenant's payment method, and why.
async fn stop(
    state: &AppState,
    c: &RetryCandidate,
    stripe_time: DateTime<Utc>,
    why: &str,
) -> Result<(), SyncError> {
    let stopped = Attempt {
        idempotency_key: attempts::stop_key(&c.stripe_invoice_id, c.payment_method.as_deref()),
        tenant_id: c.tenant_id.clone(),
        stripe_invoice_id: c.stripe_invoice_id.clone(),
        billing_period: None,
        reason: Reason::RetriesStopped.as_str().to_owned(),
        attempt_no: i32::try_from(c.retries).unwrap_or(i32::MAX),
        stripe_time,
        outcome: attempts::STOPPED.to_owned(),
        detail: Some(why.to_owned()),
    };
    attempts::record(&state.db, &stopped).await?;
    tracing::warn!(
        tenant_id = %c.tenant_id,
        invoice = %c.stripe_invoice_id,
        why,
        "usage invoice retries stopped; a new payment method or the customer pays it"
    );
    Ok(())
}

/// Settles a change of the tenant's payment method: copies it onto the customer and every live
/// subscription (`payment_method::align`), then, if the change left them due, pays the open invoices.
pub async fn settle(state: &AppState, tenant: &str) -> Result<(), SyncError> {
    let Some((customer, choice)) = payment_method::align(state, tenant).await? else {
        return Ok(());
    };
    if choice.collect_due {
        let demo = match TenantId::parse(tenant) {
            Ok(t) => tenants::get(&state.db, &t)
                .await?
                .is_some_and(|t| t.is_demo),
            Err(_) => false,
        };
        // A demo account is not collected (API.md); its invoices wait until it is not one.
        if !demo {
            after_change(state, tenant, &customer, &choice).await?;
        }
        payment_methods::collected(&state.db, tenant, &choice).await?;
    }
    Ok(())
}

/// [`settle`]s a change recorded and not collected yet (a crash or a Stripe error stopped it), if any.
pub async fn settle_if_due(state: &AppState, tenant: &str) -> Result<(), SyncError> {
    match payment_methods::choice(&state.db, tenant).await? {
        Some(c) if c.collect_due => settle(state, tenant).await,
        _ => Ok(()),
    }
}

/// One wake-up of the collection work: open invoices still due after a change of payment method (a
/// crash, or a Stripe error, left them), then the retries.
pub async fn tick(state: &AppState) {
    match payment_methods::collect_due(&state.db).await {
        Ok(tenants) => {
            for tenant in tenants {
                if let Err(e) = settle(state, &tenant).await {
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
            tracing::warn!(error = %e, "could not read the usage invoices to retry; the next wake-up goes on")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::FailedPaymentMethod;

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
        // Sent for the customer to pay: never charged off-session.
        let mut sent = invoice("open", 300, Some("requires_payment_method"));
        sent.collection_method = Some("send_invoice".into());
        assert!(!attemptable(&sent));
    }

    #[test]
    fn retries_fall_on_the_days_after_the_first_failure() {
        let days = [3, 5, 7];
        assert_eq!(retry_due(&days, t(0), 0, None, t(2)), None);
        assert_eq!(retry_due(&days, t(0), 0, None, t(3)), Some(1));
        // Late (the service was down): still the first retry, once.
        assert_eq!(retry_due(&days, t(0), 0, None, t(6)), Some(1));
        assert_eq!(retry_due(&days, t(0), 1, Some(t(3)), t(4)), None);
        assert_eq!(retry_due(&days, t(0), 1, Some(t(3)), t(5)), Some(2));
        assert_eq!(retry_due(&days, t(0), 2, Some(t(5)), t(7)), Some(3));
        // All made: no more.
        assert_eq!(retry_due(&days, t(0), 3, Some(t(7)), t(30)), None);
        assert_eq!(retry_due(&[], t(0), 0, None, t(30)), None);
    }

    #[test]
    fn retries_missed_in_an_outage_are_spread_out_again() {
        let days = [3, 5, 7];
        let at = |d: f64| DateTime::from_timestamp(t(0).timestamp() + (d * DAY as f64) as i64, 0);
        // Down from day 2 to day 9: retry 1 on coming back, the next two days apart each (the gaps
        // USAGE_RETRY_DAYS sets), not all three within the hour.
        assert_eq!(retry_due(&days, t(0), 0, None, t(9)), Some(1));
        assert_eq!(retry_due(&days, t(0), 1, Some(t(9)), t(9)), None);
        assert_eq!(retry_due(&days, t(0), 1, at(9.0), at(10.9).unwrap()), None);
        assert_eq!(retry_due(&days, t(0), 1, Some(t(9)), t(11)), Some(2));
        assert_eq!(retry_due(&days, t(0), 2, Some(t(11)), t(12)), None);
        assert_eq!(retry_due(&days, t(0), 2, Some(t(11)), t(13)), Some(3));
        // Days closer than a day apart in the setting: still a day between attempts.
        assert_eq!(retry_due(&[3, 3], t(0), 1, Some(t(3)), t(3)), None);
        assert_eq!(retry_due(&[3, 3], t(0), 1, Some(t(3)), t(4)), Some(2));
        // A payment at once after a change, the day before the first retry: a day later.
        let changed = at(2.5).unwrap();
        assert_eq!(retry_due(&days, t(0), 0, Some(changed), t(3)), None);
        assert_eq!(
            retry_due(&days, t(0), 0, Some(changed), at(3.5).unwrap()),
            Some(1)
        );
    }

    fn failure(code: &str, reason: Option<&str>, pm: &str, kind: Option<&str>) -> PaymentError {
        PaymentError {
            code: Some(code.into()),
            decline_code: reason.map(Into::into),
            payment_method: Some(FailedPaymentMethod {
                id: pm.into(),
                kind: kind.map(Into::into),
            }),
        }
    }

    #[test]
    fn hard_card_declines_stop_the_retries_soft_ones_do_not() {
        for hard in ["lost_card", "stolen_card", "pickup_card", "fraudulent"] {
            let f = failure("card_declined", Some(hard), "pm_1", Some("card"));
            let why = stop_reason(Some(&f), Some("pm_1"), 0).unwrap_or_default();
            assert!(why.contains(hard), "{hard}: {why}");
        }
        for soft in ["generic_decline", "insufficient_funds", "do_not_honor"] {
            let f = failure("card_declined", Some(soft), "pm_1", Some("card"));
            assert_eq!(stop_reason(Some(&f), Some("pm_1"), 2), None, "{soft}");
        }
        // Authentication: the retries ask again, nothing forbids them.
        let f = failure(
            "authentication_required",
            Some("authentication_required"),
            "pm_1",
            Some("card"),
        );
        assert_eq!(stop_reason(Some(&f), Some("pm_1"), 0), None);
        assert_eq!(stop_reason(None, Some("pm_1"), 0), None);
    }

    #[test]
    fn bank_returns_stop_the_retries_but_insufficient_funds_is_presented_twice_more() {
        for (code, reason) in [
            ("account_closed", "bank_account_closed"),
            ("no_account", "bank_account_invalid_details"),
            ("debit_not_authorized", "debit_not_authorized"),
            ("payment_method_bank_account_blocked", ""),
        ] {
            let f = failure(code, Some(reason), "pm_b", Some("us_bank_account"));
            let why = stop_reason(Some(&f), Some("pm_b"), 0).unwrap_or_default();
            assert!(why.contains(code), "{code}: {why}");
            // Without the payment method's type, the code alone tells a bank's return.
            let mut bare = f.clone();
            bare.payment_method = None;
            assert!(
                stop_reason(Some(&bare), Some("pm_b"), 0).is_some(),
                "{code}"
            );
        }
        let short = failure(
            "insufficient_funds",
            Some("insufficient_funds"),
            "pm_b",
            Some("us_bank_account"),
        );
        assert_eq!(stop_reason(Some(&short), Some("pm_b"), 0), None);
        assert_eq!(stop_reason(Some(&short), Some("pm_b"), 1), None);
        assert!(
            stop_reason(Some(&short), Some("pm_b"), 2).is_some(),
            "a third re-presentment"
        );
    }

    #[test]
    fn a_failure_of_a_payment_method_since_replaced_stops_nothing() {
        let lost = failure("card_declined", Some("lost_card"), "pm_old", Some("card"));
        assert_eq!(stop_reason(Some(&lost), Some("pm_new"), 0), None);
        // No payment method on record: the failure is the one there is.
        assert!(stop_reason(Some(&lost), None, 0).is_some());
    }
}
