//! One period's run over every tenant: claim, plan, then the Stripe steps, each recorded in the ledger.

use super::ledger::{self, Entry, Step};
use super::run_report::{Billed, Failed, ReportLine, RunReport, Skipped};
use super::{lease, lines};
use crate::config::CollectionMethod;
use crate::db::Db;
use crate::db::{customers, subscriptions, tenants};
use crate::domain::time::now;
use crate::domain::Cents;
use crate::domain::{BillingPeriod, TenantId};
use crate::metrics;
use crate::state::AppState;
use crate::stripe::{Collected, Collection, InvoiceStatus, StripeError, UsageInvoice, UsageLine};
use crate::subscriptions::error::SyncError;
use crate::subscriptions::sync;
use crate::usage::billable;
use crate::usage::rating::Rates;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Called after each tenant with (done, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Tenants in flight at once; the Stripe client's rate limit is the real bound.
    pub concurrency: usize,
    /// Who holds the period's lease (unique per process and run).
    pub holder: String,
    pub progress: Option<Progress>,
    /// Once it fires (the service is stopping), tenants not started yet are left for a re-run.
    pub stop: crate::shutdown::Shutdown,
}

impl RunOptions {
    pub fn new(state: &AppState, dry_run: bool) -> RunOptions {
        let rps = state.settings.stripe.max_requests_per_second as usize;
        RunOptions {
            dry_run,
            // Each tenant waits on Stripe most of the time: enough in flight to keep the limit busy.
            concurrency: if rps == 0 { 32 } else { rps.clamp(4, 64) },
            holder: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            progress: None,
            stop: state.detached.stopping(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("a run for {0} is already in progress; wait for it to finish")]
    InProgress(BillingPeriod),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

enum Outcome {
    Billed(Billed),
    Skipped(String),
    Failed(String),
}

/// Runs `period` for every tenant. Safe to repeat, concurrently too: the lease keeps two runs of one period
/// apart, and below it every step is idempotent on its own.
pub async fn run_period(
    state: &AppState,
    period: BillingPeriod,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    let ttl = i64::from(state.settings.billing.lease_seconds);
    if !opts.dry_run && !lease::acquire(&state.db, period, &opts.holder, ttl).await? {
        return Err(RunError::InProgress(period));
    }
    let guard = if opts.dry_run {
        lease::LeaseGuard::unleased()
    } else {
        lease::LeaseGuard::held(ttl)
    };
    let renewer = (!opts.dry_run).then(|| {
        let (db, holder, guard) = (state.db.clone(), opts.holder.clone(), guard.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(ttl as u64 * 1000 / 3)).await;
                match lease::renew(&db, period, &holder, ttl).await {
                    Ok(true) => guard.renewed(ttl),
                    Ok(false) => {
                        guard.lost();
                        tracing::warn!(%period, "lost the billing lease; no further Stripe writes");
                        return;
                    }
                    // A failed renewal is not a lost lease yet: the guard runs out on its own.
                    Err(e) => {
                        tracing::warn!(%period, error = %e, "could not renew the billing lease")
                    }
                }
            }
        })
    });
    let result = run_tenants(state, period, &opts, &guard).await;
    if let Some(r) = renewer {
        r.abort();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if !opts.dry_run {
                let _ = lease::release(&state.db, period, &opts.holder, false).await;
            }
            metrics::billing_run("error");
            return Err(e);
        }
    };
    if !opts.dry_run {
        lease::release(&state.db, period, &opts.holder, report.failed.is_empty()).await?;
    }
    metrics::billing_run(match (opts.dry_run, report.failed.is_empty()) {
        (true, _) => "dry_run",
        (false, true) => "completed",
        (false, false) => "partial",
    });
    tracing::info!(
        %period,
        dry_run = opts.dry_run,
        billed = report.totals.tenants_billed,
        billed_cents = report.totals.billed_cents,
        skipped = report.skipped.len(),
        failed = report.failed.len(),
        "billing run finished"
    );
    Ok(report)
}

async fn run_tenants(
    state: &AppState,
    period: BillingPeriod,
    opts: &RunOptions,
    guard: &lease::LeaseGuard,
) -> Result<RunReport, RunError> {
    let all = tenants::list(&state.db).await?;
    let total = all.len() as u64;
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for tenant in all {
        let (state, limit, dry_run, guard, stop) = (
            state.clone(),
            limit.clone(),
            opts.dry_run,
            guard.clone(),
            opts.stop.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            if !guard.holds() {
                return (tenant.id, Outcome::Failed(LEASE_LOST.into()));
            }
            if stop.is_requested() {
                return (tenant.id, Outcome::Failed(STOPPING.into()));
            }
            let outcome = bill_tenant(&state, &tenant, period, dry_run, &guard).await;
            (tenant.id, outcome)
        });
    }
    let mut report = RunReport::new(period, opts.dry_run);
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (tenant_id, outcome) = joined.expect("tenant task does not panic");
        done += 1;
        if let Some(p) = &opts.progress {
            p(done, total);
        }
        match outcome {
            Outcome::Billed(b) => {
                metrics::billing_tenant("billed");
                report.billed.push(b)
            }
            Outcome::Skipped(reason) => {
                metrics::billing_tenant("skipped");
                report.skipped.push(Skipped { tenant_id, reason })
            }
            Outcome::Failed(error) => {
                metrics::billing_tenant("failed");
                tracing::warn!(%tenant_id, %period, %error, "tenant not billed; a re-run continues it");
                report.failed.push(Failed { tenant_id, error })
            }
        }
    }
    Ok(report.finish())
}

async fn bill_tenant(
    state: &AppState,
    tenant: &tenants::Tenant,
    period: BillingPeriod,
    dry_run: bool,
    guard: &lease::LeaseGuard,
) -> Outcome {
    match bill_tenant_inner(state, tenant, period, dry_run, guard).await {
        Ok(o) => o,
        Err(e) => {
            let message = e.to_string();
            if !dry_run {
                let _ = ledger::attempt(&state.db, &tenant.id, period, Some(&message)).await;
            }
            Outcome::Failed(message)
        }
    }
}

/// This runner's lease ran out: it must not write to Stripe.
struct LeaseLost;

const STOPPING: &str =
    "the service was stopping before this tenant's turn; a re-run (or the scheduler) continues";

const LEASE_LOST: &str =
    "this runner lost the period's lease (another runner may have taken it over); a re-run continues";

#[derive(Debug, thiserror::Error)]
enum TenantError {
    #[error("{LEASE_LOST}")]
    LeaseLost,
    #[error("{0}")]
    Stripe(#[from] StripeError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<SyncError> for TenantError {
    fn from(e: SyncError) -> TenantError {
        match e {
            SyncError::Stripe(e) => TenantError::Stripe(e),
            SyncError::Db(e) => TenantError::Db(e),
        }
    }
}

fn billed(
    tenant: &str,
    invoice: Option<String>,
    lines: impl Iterator<Item = lines::PlannedLine>,
) -> Outcome {
    let lines: Vec<ReportLine> = lines
        .map(|l| ReportLine {
            description: l.description,
            amount_cents: l.amount_cents,
        })
        .collect();
    Outcome::Billed(Billed {
        tenant_id: tenant.to_owned(),
        stripe_invoice_id: invoice,
        total_cents: lines.iter().map(|l| l.amount_cents).sum(),
        lines,
        payment: None,
    })
}

async fn bill_tenant_inner(
    state: &AppState,
    tenant: &tenants::Tenant,
    period: BillingPeriod,
    dry_run: bool,
    guard: &lease::LeaseGuard,
) -> Result<Outcome, TenantError> {
    let db = &state.db;
    if let Some(entry) = ledger::get(db, &tenant.id, period).await? {
        return match entry.step {
            Step::Skipped => Ok(Outcome::Skipped(
                entry.skip_reason.unwrap_or_else(|| "no_usage".into()),
            )),
            // Invoiced by an earlier run: the report says so rather than count it again.
            Step::Done => Ok(Outcome::Skipped("already_billed".into())),
            _ if dry_run => Ok(billed(
                &tenant.id,
                None,
                entry.lines.into_iter().map(|l| l.line),
            )),
            _ => continue_invoice(state, &tenant.id, period, entry, guard).await,
        };
    }
    // Not started: decide whether the tenant is billed at all. These skips are not recorded, since they
    // can change (a demo account converts, a subscription starts) and the usage must then still be billed.
    if tenant.is_demo {
        return Ok(Outcome::Skipped("demo".into()));
    }
    let Some(customer) = customers::customer_of(db, &tenant.id).await? else {
        return Ok(Outcome::Skipped("no_subscription".into()));
    };
    let mut subs = subscriptions::for_tenant(db, &tenant.id).await?;
    if subs.is_empty() {
        return Ok(Outcome::Skipped("no_subscription".into()));
    }
    // What is free depends on the subscription's trial, and a lost webhook may have left our copy
    // behind: read the subscriptions that still stand from Stripe before claiming. This also puts the
    // payment method Checkout saved where the usage invoice will look for it.
    let standing: Vec<String> = subs
        .iter()
        .filter(|s| s.ended_at.is_none())
        .map(|s| s.stripe_subscription_id.clone())
        .collect();
    if !standing.is_empty() {
        for id in &standing {
            // A dry run writes nothing to Stripe.
            let step = if dry_run {
                sync::PaymentMethodStep::Leave
            } else {
                sync::PaymentMethodStep::FillIfMissing
            };
            match sync::refresh_subscription(state, id, step).await {
                // Gone from Stripe (deleted long ago): our copy is what there is.
                Err(SyncError::Stripe(e)) if e.is_missing() => {}
                other => {
                    other?;
                }
            }
        }
        if !dry_run {
            // A change of payment method not settled yet is, before the charge.
            super::collect::settle_if_due(state, &tenant.id).await?;
        }
        subs = subscriptions::for_tenant(db, &tenant.id).await?;
    }
    let tz = state.settings.billing.timezone;
    let (_, end) = period.bounds(tz);
    let id = TenantId::parse(&tenant.id).expect("stored tenant ids are valid");
    let rates = Rates::from_settings(&state.settings);
    let usage = if dry_run {
        billable::unbilled(db, &id, end, tz).await?
    } else {
        billable::claim_unbilled(db, &id, end, tz, &ledger::invoice_key(&tenant.id, period)).await?
    };
    // What the tenant's other invoices billed of these periods: a period billed in slices is rounded once.
    let billed_before = ledger::billed_voice(db, &tenant.id, period, usage.keys().copied()).await?;
    let lines = lines::lines(period, &usage, &billed_before, &rates);
    let skip = if lines.is_empty() {
        Some(skip_reason(state, &id, period, &usage, &subs).await?)
    } else {
        None
    };
    if dry_run {
        return Ok(match skip {
            Some(reason) => Outcome::Skipped(reason.into()),
            None => billed(&tenant.id, None, lines.into_iter()),
        });
    }
    ledger::record_claim(db, &tenant.id, &customer, period, &lines, skip).await?;
    let entry = ledger::get(db, &tenant.id, period)
        .await?
        .expect("just recorded");
    if entry.step == Step::Skipped {
        return Ok(Outcome::Skipped(entry.skip_reason.unwrap_or_default()));
    }
    continue_invoice(state, &tenant.id, period, entry, guard).await
}

/// Why a tenant with a subscription has nothing to pay for the period.
async fn skip_reason(
    state: &AppState,
    tenant: &TenantId,
    period: BillingPeriod,
    billable_usage: &billable::ByPeriod,
    subs: &[subscriptions::SubscriptionRow],
) -> Result<&'static str, sqlx::Error> {
    if billable_usage.values().any(|t| !t.is_empty()) {
        // Usage so small it rounds to nothing.
        return Ok("no_usage");
    }
    let recorded = billable::recorded(&state.db, tenant, period).await?;
    if recorded.is_empty() {
        return Ok("no_usage");
    }
    let (start, _) = period.bounds(state.settings.billing.timezone);
    let in_trial = subs.iter().any(|s| s.trial_end.is_some_and(|t| t > start));
    Ok(if in_trial { "trial_only" } else { "demo" })
}

/// The idempotency key of one write of the entry: `{invoice key}:{step}`, in a fresh generation once
/// Stripe saved a failure under the earlier one.
fn step_key(key: &str, generation: i32, step: &str) -> String {
    if generation == 0 {
        format!("{key}:{step}")
    } else {
        format!("{key}:{step}:g{generation}")
    }
}

fn collection(state: &AppState) -> Collection {
    match state.settings.billing.collection_method {
        CollectionMethod::ChargeAutomatically => Collection::ChargeAutomatically,
        CollectionMethod::SendInvoice => Collection::SendInvoice {
            days_until_due: state.settings.billing.days_until_due,
        },
    }
}

/// Takes the invoice from wherever the ledger says it stopped to done.
async fn continue_invoice(
    state: &AppState,
    tenant: &str,
    period: BillingPeriod,
    entry: Entry,
    guard: &lease::LeaseGuard,
) -> Result<Outcome, TenantError> {
    let result = continue_invoice_steps(state, tenant, period, &entry, guard).await;
    if let Err(TenantError::Stripe(e)) = &result {
        // Stripe answered 5xx: it may have saved that answer under the keys, and would give it back to
        // every retry for a day. The next attempt looks in Stripe first, then writes under fresh keys.
        if e.is_server_error() {
            ledger::fresh_keys(&state.db, tenant, period).await?;
        }
    }
    result
}

async fn continue_invoice_steps(
    state: &AppState,
    tenant: &str,
    period: BillingPeriod,
    entry: &Entry,
    guard: &lease::LeaseGuard,
) -> Result<Outcome, TenantError> {
    let db = &state.db;
    // Before every Stripe write: a runner that lost its lease leaves the rest to the new holder.
    let may_write = || guard.holds().then_some(()).ok_or(LeaseLost);
    let base_key = ledger::invoice_key(tenant, period);
    let key = |step: &str| step_key(&base_key, entry.key_generation, step);
    // After an earlier failed attempt, a reply may have been lost: look in Stripe before writing again.
    let recovering = entry.attempts > 0;
    ledger::attempt(db, tenant, period, None).await?;
    let customer = customers::customer_of(db, tenant)
        .await?
        .unwrap_or_default();
    let collection = collection(state);

    let invoice_id = match entry.stripe_invoice_id.clone() {
        Some(id) => id,
        None => {
            let found = if recovering {
                state
                    .stripe
                    .find_usage_invoice(&customer, tenant, period)
                    .await?
            } else {
                None
            };
            let inv = match found {
                Some(inv) => inv,
                None => {
                    may_write().map_err(|_| TenantError::LeaseLost)?;
                    let request = UsageInvoice {
                        customer: &customer,
                        tenant,
                        period,
                        collection,
                    };
                    state
                        .stripe
                        .create_usage_invoice(&request, &key("create"))
                        .await?
                }
            };
            sync::invoice(state, &inv, now()).await?;
            ledger::advance(db, tenant, period, Step::InvoiceCreated, Some(&inv.id)).await?;
            inv.id
        }
    };

    if entry.step < Step::LinesAdded {
        let mut have: std::collections::HashMap<i32, String> = entry
            .lines
            .iter()
            .filter_map(|l| {
                l.stripe_invoice_item_id
                    .clone()
                    .map(|id| (l.line.line_no, id))
            })
            .collect();
        if recovering && have.len() < entry.lines.len() {
            for (line_no, item) in state.stripe.usage_lines_on(&invoice_id).await? {
                if let std::collections::hash_map::Entry::Vacant(slot) = have.entry(line_no) {
                    ledger::set_line_item(db, tenant, period, line_no, &item).await?;
                    slot.insert(item);
                }
            }
        }
        for l in entry
            .lines
            .iter()
            .filter(|l| !have.contains_key(&l.line.line_no))
        {
            let line = UsageLine {
                customer: &customer,
                invoice: &invoice_id,
                tenant,
                period,
                usage_period: l.line.usage_period,
                line_no: l.line.line_no,
                amount: Cents(l.line.amount_cents),
                description: &l.line.description,
            };
            may_write().map_err(|_| TenantError::LeaseLost)?;
            let item = state
                .stripe
                .add_usage_line(&line, &key(&format!("line:{}", l.line.line_no)))
                .await?;
            ledger::set_line_item(db, tenant, period, l.line.line_no, &item.id).await?;
        }
        ledger::advance(db, tenant, period, Step::LinesAdded, None).await?;
    }

    // What Stripe says now, when a reply may have been lost; otherwise the steps themselves tell.
    let mut invoice = if recovering && entry.step < Step::Done {
        Some(state.stripe.invoice(&invoice_id).await?)
    } else {
        None
    };
    if entry.step < Step::Finalized {
        let is_draft = invoice
            .as_ref()
            .is_none_or(|i| InvoiceStatus::of(i) == InvoiceStatus::Draft);
        if is_draft {
            may_write().map_err(|_| TenantError::LeaseLost)?;
            // Written and stored as one step for the invoice, as its webhook handlers read and store.
            let _one_at_a_time = sync::one_at_a_time(state, &invoice_id).await;
            let read_at = now();
            let inv = state
                .stripe
                .finalize_invoice(&invoice_id, collection, &key("finalize"))
                .await?;
            sync::invoice(state, &inv, read_at).await?;
            invoice = Some(inv);
        }
        ledger::advance(db, tenant, period, Step::Finalized, None).await?;
    }
    let invoice = match invoice {
        Some(inv) => inv,
        None => state.stripe.invoice(&invoice_id).await?,
    };
    may_write().map_err(|_| TenantError::LeaseLost)?;
    let one_at_a_time = sync::one_at_a_time(state, &invoice_id).await;
    let read_at = now();
    let collected = state
        .stripe
        .collect_invoice(&invoice, collection, &key(collect_step(collection)))
        .await;
    let collected = match collected {
        Ok(collected) => collected,
        // Stripe refuses to charge the invoice for good (a customer with no payment method left): it is
        // issued all the same and stays open, and the tenant is billed. A period held open for it would
        // hold every later period of every tenant (the scheduler never runs past an unfinished one); the
        // tenant's next payment method pays it at once (`collect::after_change`). Only a 400 about the
        // charge: a 404 (the invoice or its read gone) or a key conflict stays a failure the next run
        // retries, never an invoice counted as issued that may not be.
        Err(e)
            if e.status() == Some(400)
                && !e.is_retryable()
                && e.kind() != Some("idempotency_error") =>
        {
            tracing::warn!(
                invoice = %invoice_id,
                tenant = %tenant,
                error = %e,
                "Stripe refused the charge; the invoice stays open"
            );
            drop(one_at_a_time);
            return finish(db, tenant, period, invoice_id, "refused").await;
        }
        Err(e) => return Err(e.into()),
    };
    match &collected {
        // Paid, sent, or a bank debit processing (neither paid nor failed until the bank answers).
        Collected::Done(inv) | Collected::Processing(inv) => {
            sync::invoice(state, inv, read_at).await?;
        }
        // A declined card, or a bank that asks the customer to authenticate, leaves the invoice open;
        // the service's retries (`collect`), a new payment method or the customer's confirmation take
        // it from here, and the webhooks record the failure.
        Collected::Declined | Collected::ActionRequired => {
            tracing::info!(
                invoice = %invoice_id,
                outcome = collected.label(),
                "not paid; the invoice stays open"
            );
        }
        Collected::AlreadySettled(_) => {}
    }
    drop(one_at_a_time);
    finish(db, tenant, period, invoice_id, collected.label()).await
}

/// The tenant's invoice is issued and its charge made (or refused, as `payment` says): the entry is
/// done, and the report bills its lines.
async fn finish(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
    invoice_id: String,
    payment: &str,
) -> Result<Outcome, TenantError> {
    ledger::advance(db, tenant, period, Step::Done, None).await?;
    let entry = ledger::get(db, tenant, period)
        .await?
        .expect("ledger entry exists");
    let mut outcome = billed(
        tenant,
        Some(invoice_id),
        entry.lines.into_iter().map(|l| l.line),
    );
    if let Outcome::Billed(b) = &mut outcome {
        b.payment = Some(payment.to_owned());
    }
    Ok(outcome)
}

fn collect_step(collection: Collection) -> &'static str {
    match collection {
        Collection::ChargeAutomatically => "pay",
        Collection::SendInvoice { .. } => "send",
    }
}
