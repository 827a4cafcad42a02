//! One period's run over every tenant: claim, plan, then the Stripe steps, each recorded in the ledger.

use super::ledger::{self, Entry, Step};
use super::report::{Billed, Failed, ReportLine, RunReport, Skipped};
use super::{lease, plan};
use crate::config::CollectionMethod;
use crate::db::{customers, subscriptions, tenants};
use crate::domain::time::now;
use crate::domain::{BillingPeriod, TenantId};
use crate::metrics;
use crate::state::AppState;
use crate::stripe::{self, List, Params, StripeError};
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
}

impl RunOptions {
    pub fn new(state: &AppState, dry_run: bool) -> RunOptions {
        let rps = state.settings.stripe_max_requests_per_second as usize;
        RunOptions {
            dry_run,
            // Each tenant waits on Stripe most of the time: enough in flight to keep the limit busy.
            concurrency: if rps == 0 { 32 } else { rps.clamp(4, 64) },
            holder: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            progress: None,
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
    let ttl = i64::from(state.settings.billing_lease_seconds);
    if !opts.dry_run && !lease::acquire(&state.db, period, &opts.holder, ttl).await? {
        return Err(RunError::InProgress(period));
    }
    let renewer = (!opts.dry_run).then(|| {
        let (db, holder) = (state.db.clone(), opts.holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(ttl as u64 * 1000 / 3)).await;
                if !matches!(lease::renew(&db, period, &holder, ttl).await, Ok(true)) {
                    tracing::warn!(%period, "lost the billing lease");
                }
            }
        })
    });
    let result = run_tenants(state, period, &opts).await;
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
) -> Result<RunReport, RunError> {
    let all = tenants::list(&state.db).await?;
    let total = all.len() as u64;
    let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for tenant in all {
        let (state, limit, dry_run) = (state.clone(), limit.clone(), opts.dry_run);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let outcome = bill_tenant(&state, &tenant, period, dry_run).await;
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

/// The key of the tenant's invoice for the period; the usage it bills is claimed under it.
pub fn invoice_key(tenant: &str, period: BillingPeriod) -> String {
    format!("invoice:{tenant}:{period}")
}

async fn bill_tenant(
    state: &AppState,
    tenant: &tenants::Tenant,
    period: BillingPeriod,
    dry_run: bool,
) -> Outcome {
    match bill_tenant_inner(state, tenant, period, dry_run).await {
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

#[derive(Debug, thiserror::Error)]
enum TenantError {
    #[error("{0}")]
    Stripe(#[from] StripeError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn billed(
    tenant: &str,
    invoice: Option<String>,
    lines: impl Iterator<Item = plan::PlannedLine>,
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
    })
}

async fn bill_tenant_inner(
    state: &AppState,
    tenant: &tenants::Tenant,
    period: BillingPeriod,
    dry_run: bool,
) -> Result<Outcome, TenantError> {
    let db = &state.db;
    if let Some(entry) = ledger::get(db, &tenant.id, period).await? {
        return match entry.step {
            Step::Skipped => Ok(Outcome::Skipped(
                entry.skip_reason.unwrap_or_else(|| "no_usage".into()),
            )),
            Step::Done => Ok(billed(
                &tenant.id,
                entry.stripe_invoice_id.clone(),
                entry.lines.into_iter().map(|l| l.line),
            )),
            _ if dry_run => Ok(billed(
                &tenant.id,
                None,
                entry.lines.into_iter().map(|l| l.line),
            )),
            _ => continue_invoice(state, &tenant.id, period, entry).await,
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
    let subs = subscriptions::for_tenant(db, &tenant.id).await?;
    if subs.is_empty() {
        return Ok(Outcome::Skipped("no_subscription".into()));
    }
    let tz = state.settings.billing_timezone;
    let (_, end) = period.bounds(tz);
    let id = TenantId::parse(&tenant.id).expect("stored tenant ids are valid");
    let rates = Rates::from_settings(&state.settings);
    let usage = if dry_run {
        billable::unbilled(db, &id, end, tz).await?
    } else {
        billable::claim_unbilled(db, &id, end, tz, &invoice_key(&tenant.id, period)).await?
    };
    let lines = plan::lines(period, &usage, &rates);
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
    continue_invoice(state, &tenant.id, period, entry).await
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
    let (start, _) = period.bounds(state.settings.billing_timezone);
    let in_trial = subs.iter().any(|s| s.trial_end.is_some_and(|t| t > start));
    Ok(if in_trial { "trial_only" } else { "demo" })
}

/// Takes the invoice from wherever the ledger says it stopped to done.
async fn continue_invoice(
    state: &AppState,
    tenant: &str,
    period: BillingPeriod,
    entry: Entry,
) -> Result<Outcome, TenantError> {
    let db = &state.db;
    let key = invoice_key(tenant, period);
    // After an earlier failed attempt, a reply may have been lost: look in Stripe before writing again.
    let recovering = entry.attempts > 0;
    ledger::attempt(db, tenant, period, None).await?;
    let customer = customers::customer_of(db, tenant)
        .await?
        .unwrap_or_default();

    let invoice_id = match entry.stripe_invoice_id.clone() {
        Some(id) => id,
        None => {
            let found = if recovering {
                find_invoice(state, &customer, tenant, period).await?
            } else {
                None
            };
            let id = match found {
                Some(id) => id,
                None => create_invoice(state, &customer, tenant, period, &key).await?,
            };
            ledger::advance(db, tenant, period, Step::InvoiceCreated, Some(&id)).await?;
            id
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
            for (line_no, item) in items_on_invoice(state, &invoice_id).await? {
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
            let params = Params::new()
                .set("customer", &customer)
                .set("invoice", &invoice_id)
                .set("amount", l.line.amount_cents)
                .set("currency", "usd")
                .set("description", &l.line.description)
                .metadata("tenant_id", tenant)
                .metadata("billing_period", period)
                .metadata("usage_period", l.line.usage_period)
                .metadata("line_no", l.line.line_no);
            let item: stripe::InvoiceItem = state
                .stripe
                .post(
                    "invoiceitems",
                    &params,
                    &format!("{key}:line:{}", l.line.line_no),
                )
                .await?;
            ledger::set_line_item(db, tenant, period, l.line.line_no, &item.id).await?;
        }
        ledger::advance(db, tenant, period, Step::LinesAdded, None).await?;
    }

    // What Stripe says now, when a reply may have been lost; otherwise the steps themselves tell.
    let current_status = if recovering && entry.step < Step::Done {
        let inv: stripe::Invoice = state
            .stripe
            .get(&format!("invoices/{invoice_id}"), &Params::new())
            .await?;
        Some(inv.status().to_owned())
    } else {
        None
    };
    let is_draft = current_status.as_deref().is_none_or(|s| s == "draft");
    if entry.step < Step::Finalized {
        if is_draft {
            // Charged invoices keep auto-advancing after finalization, so that if our charge is declined
            // Stripe's own retries (dunning) go on collecting; emailed invoices are sent by us, once.
            let auto_advance =
                state.settings.billing_collection_method == CollectionMethod::ChargeAutomatically;
            let inv: stripe::Invoice = state
                .stripe
                .post(
                    &format!("invoices/{invoice_id}/finalize"),
                    &Params::new().set("auto_advance", auto_advance),
                    &format!("{key}:finalize"),
                )
                .await?;
            sync::invoice(state, &inv, now()).await?;
        }
        ledger::advance(db, tenant, period, Step::Finalized, None).await?;
    }

    let settled = matches!(
        current_status.as_deref(),
        Some("paid" | "void" | "uncollectible")
    );
    if !settled {
        collect(state, &invoice_id, &key).await?;
    }
    ledger::advance(db, tenant, period, Step::Done, None).await?;
    let entry = ledger::get(db, tenant, period)
        .await?
        .expect("ledger entry exists");
    Ok(billed(
        tenant,
        Some(invoice_id),
        entry.lines.into_iter().map(|l| l.line),
    ))
}

/// Charges the card on file, or emails the invoice, as configured.
async fn collect(state: &AppState, invoice_id: &str, key: &str) -> Result<(), TenantError> {
    let result: Result<stripe::Invoice, StripeError> =
        match state.settings.billing_collection_method {
            CollectionMethod::ChargeAutomatically => {
                state
                    .stripe
                    .post(
                        &format!("invoices/{invoice_id}/pay"),
                        &Params::new(),
                        &format!("{key}:pay"),
                    )
                    .await
            }
            CollectionMethod::SendInvoice => {
                state
                    .stripe
                    .post(
                        &format!("invoices/{invoice_id}/send"),
                        &Params::new(),
                        &format!("{key}:send"),
                    )
                    .await
            }
        };
    match result {
        Ok(inv) => {
            sync::invoice(state, &inv, now()).await?;
            Ok(())
        }
        // A declined card leaves the invoice open; Stripe's retries and the customer's portal take it
        // from here, and the invoice.payment_failed webhook records it.
        Err(StripeError::Api { status: 402, .. }) => {
            tracing::info!(
                invoice = invoice_id,
                "charge declined; the invoice stays open"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn create_invoice(
    state: &AppState,
    customer: &str,
    tenant: &str,
    period: BillingPeriod,
    key: &str,
) -> Result<String, TenantError> {
    let mut params = Params::new()
        .set("customer", customer)
        .set(
            "collection_method",
            state.settings.billing_collection_method.as_stripe(),
        )
        .set("pending_invoice_items_behavior", "exclude")
        .set("auto_advance", false)
        .set(
            "description",
            format!("Thanotopolis voice usage and phone calls for {period}"),
        )
        .metadata("tenant_id", tenant)
        .metadata("billing_period", period);
    if state.settings.billing_collection_method == CollectionMethod::SendInvoice {
        params = params.set("days_until_due", state.settings.billing_days_until_due);
    }
    let inv: stripe::Invoice = state
        .stripe
        .post("invoices", &params, &format!("{key}:create"))
        .await?;
    sync::invoice(state, &inv, now()).await?;
    Ok(inv.id)
}

/// The tenant's invoice for the period if Stripe already has it (the reply to our create was lost).
async fn find_invoice(
    state: &AppState,
    customer: &str,
    tenant: &str,
    period: BillingPeriod,
) -> Result<Option<String>, TenantError> {
    let mut params = Params::new().set("customer", customer).set("limit", 100);
    loop {
        let page: List<stripe::Invoice> = state.stripe.get("invoices", &params).await?;
        let last = page.data.last().map(|i| i.id.clone());
        if let Some(found) = page.data.into_iter().find(|i| {
            i.metadata.get("billing_period").map(String::as_str) == Some(&period.to_string())
                && i.metadata.get("tenant_id").map(String::as_str) == Some(tenant)
                && i.status() != "void"
        }) {
            return Ok(Some(found.id));
        }
        match (page.has_more, last) {
            (true, Some(last)) => {
                params = Params::new()
                    .set("customer", customer)
                    .set("limit", 100)
                    .set("starting_after", last)
            }
            _ => return Ok(None),
        }
    }
}

/// The invoice items already on an invoice, by our line number.
async fn items_on_invoice(
    state: &AppState,
    invoice_id: &str,
) -> Result<Vec<(i32, String)>, TenantError> {
    let page: List<stripe::InvoiceItem> = state
        .stripe
        .get(
            "invoiceitems",
            &Params::new().set("invoice", invoice_id).set("limit", 100),
        )
        .await?;
    Ok(page
        .data
        .into_iter()
        .filter_map(|i| Some((i.metadata.get("line_no")?.parse().ok()?, i.id)))
        .collect())
}
