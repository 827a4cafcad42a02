//! The super admin's revenue overview: MRR, subscription counts, usage revenue, failed payments, churn,
//! one row per organization and twelve months of history. The definitions are in `docs/OVERVIEW.md`.

use crate::billing::run_log::RunRecord;
use crate::billing::run_report::RunReport;
use crate::dashboard;
use crate::db::invoices::{self, InvoiceRow};
use crate::db::overview as db_overview;
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::db::{tenants, webhook_events, Db};
use crate::domain::SubscriptionStatus;
use crate::domain::{time, BillingPeriod, Cents, TenantId};
use crate::state::AppState;
use crate::usage::rating::Rates;
use chrono::{DateTime, Duration, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub mod all_organizations;

/// How many calendar months the history covers, the current one included.
pub const HISTORY_MONTHS: usize = 12;
/// The window of `failed_payments_30d` and of the list behind it.
pub const FAILED_PAYMENTS_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub mrr_cents: Cents,
    pub active_subscriptions: i64,
    pub trialing_subscriptions: i64,
    pub past_due_subscriptions: i64,
    pub usage_revenue_cents: Cents,
    pub failed_payments_30d: i64,
    pub churned_30d: i64,
    pub period: BillingPeriod,
    pub organizations: Vec<Organization>,
    pub monthly: Vec<Month>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub tenant_id: String,
    pub name: String,
    pub subdomain: String,
    pub is_demo: bool,
    pub subscription_status: Option<String>,
    pub cancel_at_period_end: bool,
    pub mrr_cents: Cents,
    pub usage_this_month: UsageThisMonth,
    pub upcoming_usage_cents: Cents,
    pub last_invoice: Option<LastInvoice>,
    /// Set when the organization's money is not coming in: its subscription is past due, or an open
    /// invoice's payment failed. Null when all is well.
    pub payment_flag: Option<PaymentFlag>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentFlagReason {
    /// The subscription is `past_due` (or `unpaid`): a renewal's payment failed and Stripe retries it.
    PastDue,
    /// The subscription is in good standing, but an open invoice's payment failed.
    PaymentFailed,
    /// The bank asks the customer to confirm an open invoice's payment (3-D Secure): only the customer
    /// can, on the invoice's page.
    ActionRequired,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaymentFlag {
    pub reason: PaymentFlagReason,
    /// Open invoices whose payment failed at least once (Stripe's ids), oldest first.
    pub failed_invoices: Vec<String>,
    /// What those invoices still ask for.
    pub amount_due_cents: Cents,
    /// Those of them the service no longer retries with the organization's payment method (a card
    /// declined as lost or stolen, a bank account returned closed, Stripe refusing the payment): only a
    /// new payment method, or the customer, pays them.
    pub retries_stopped: Vec<RetriesStopped>,
}

/// A usage invoice whose retries stopped, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RetriesStopped {
    pub stripe_invoice_id: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// A failed payment behind `failed_payments_30d`: one `invoice.payment_failed` event.
#[derive(Debug, Clone, Serialize)]
pub struct FailedPayment {
    pub received_at: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub invoice_number: Option<String>,
    /// The invoice's status now (`open` while unpaid, `paid` once a retry or a new card paid it).
    pub invoice_status: Option<String>,
    pub amount_due_cents: Option<Cents>,
    pub hosted_invoice_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UsageThisMonth {
    pub stt_words: i64,
    pub tts_words: i64,
    pub phone_calls: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastInvoice {
    pub stripe_invoice_id: String,
    pub status: String,
    pub amount_due_cents: Cents,
    pub hosted_invoice_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Month {
    pub period: BillingPeriod,
    pub subscription_revenue_cents: Cents,
    pub usage_revenue_cents: Cents,
    /// STT plus TTS words recorded in the month.
    pub words: i64,
    pub calls: i64,
}

/// Whether a subscription counts toward MRR: not ended, active or past due.
fn in_mrr(s: &SubscriptionRow) -> bool {
    s.ended_at.is_none() && s.state().is_recurring_revenue()
}

/// One organization's figures at a moment: what the overview's row and the all-organizations
/// dashboard's row are both made of, so that they say the same.
#[derive(Debug, Clone)]
pub struct OrganizationFigures {
    pub tenant: tenants::Tenant,
    /// Its live subscription, else its newest one, else none: the one both views show.
    pub shown: Option<SubscriptionRow>,
    /// Whether it has had a subscription (in any state). The monthly run bills only such organizations;
    /// the usage of the others waits for their first subscription.
    pub has_subscription: bool,
    /// Its monthly amounts that count in MRR (0 for a demo account).
    pub mrr: Cents,
    /// What this period's run would bill it now, as its dashboard says (zero for a demo account).
    pub upcoming: dashboard::UpcomingCharges,
    /// All usage recorded this period (billed or not, free or not).
    pub usage_this_month: UsageThisMonth,
}

/// Every organization's figures at `now`, with every subscription (each tenant's newest first).
pub struct Organizations {
    pub period: BillingPeriod,
    pub subscriptions: Vec<SubscriptionRow>,
    pub figures: Vec<OrganizationFigures>,
}

/// How many organizations' upcoming charges are read at once (each a few queries on one connection).
const UPCOMING_READS_AT_ONCE: usize = 8;

/// Every organization's figures at `now`.
pub async fn organizations_at(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<Organizations, sqlx::Error> {
    let db = &state.db;
    let tz = state.settings.billing.timezone;
    let rates = Rates::from_settings(&state.settings);
    let period = BillingPeriod::containing(now, tz);
    let (tenant_list, subs, usage) = tokio::try_join!(
        tenants::list(db),
        subscriptions::all(db),
        usage_by_tenant(db, period),
    )?;
    // Each organization's upcoming charges are reads of its own rollups; a few at a time, so the page of a
    // thousand organizations waits for the slowest of a few hundred round trips, not for all in a row.
    let reads: Vec<(bool, String)> = tenant_list
        .iter()
        .map(|t| (t.is_demo, t.id.clone()))
        .collect();
    let upcoming: Vec<dashboard::UpcomingCharges> = stream::iter(reads)
        .map(|(is_demo, id)| {
            // Owned: a future that borrowed the list would not be `Send` for every lifetime the router asks.
            let db = db.clone();
            async move {
                if is_demo {
                    return Ok(dashboard::UpcomingCharges::default());
                }
                let id = TenantId::parse(&id).map_err(|e| sqlx::Error::Decode(e.into()))?;
                dashboard::upcoming_for(&db, &id, period, tz, &rates).await
            }
        })
        .buffered(UPCOMING_READS_AT_ONCE)
        .try_collect()
        .await?;
    let mut figures = Vec::with_capacity(tenant_list.len());
    for (t, upcoming) in tenant_list.into_iter().zip(upcoming) {
        let mine: Vec<&SubscriptionRow> = subs.iter().filter(|s| s.tenant_id == t.id).collect();
        // `subscriptions::all` lists each tenant's newest first: the live one if any, else the last one.
        let shown = mine
            .iter()
            .find(|s| s.is_live())
            .or_else(|| mine.first())
            .copied()
            .cloned();
        let mrr = if t.is_demo {
            Cents::ZERO
        } else {
            mine.iter()
                .filter(|s| in_mrr(s))
                .map(|s| Cents(s.amount_cents))
                .sum()
        };
        figures.push(OrganizationFigures {
            usage_this_month: usage.get(&t.id).copied().unwrap_or_default(),
            has_subscription: !mine.is_empty(),
            tenant: t,
            shown,
            mrr,
            upcoming,
        });
    }
    Ok(Organizations {
        period,
        subscriptions: subs,
        figures,
    })
}

/// Builds the overview at `now`.
pub async fn build(state: &AppState, now: DateTime<Utc>) -> Result<Overview, sqlx::Error> {
    let db = &state.db;
    let tz = state.settings.billing.timezone;
    let period = BillingPeriod::containing(now, tz);
    let first = (1..HISTORY_MONTHS).fold(period, |p, _| p.prev());
    let since_30d = now - Duration::days(FAILED_PAYMENTS_DAYS);

    let (orgs, last_invoices, paid, daily, failed, unpaid, stopped) = tokio::try_join!(
        organizations_at(state, now),
        latest_invoice_per_tenant(db),
        db_overview::paid_invoices_since(db, first.bounds(tz).0),
        db_overview::usage_by_day_since(db, first.first_day()),
        webhook_events::count_since(db, crate::stripe::PAYMENT_FAILED, since_30d),
        db_overview::open_invoices_with_failed_payment(db),
        crate::billing::attempts::stopped(db),
    )?;
    let subs = &orgs.subscriptions;
    let demo: HashMap<&str, bool> = orgs
        .figures
        .iter()
        .map(|o| (o.tenant.id.as_str(), o.tenant.is_demo))
        .collect();
    let is_demo = |tenant: &str| demo.get(tenant).copied().unwrap_or(false);

    let counted = |status: SubscriptionStatus| {
        subs.iter()
            .filter(|s| s.ended_at.is_none() && s.state() == status && !is_demo(&s.tenant_id))
            .count() as i64
    };
    let mrr_cents = subs
        .iter()
        .filter(|s| in_mrr(s) && !is_demo(&s.tenant_id))
        .map(|s| Cents(s.amount_cents))
        .sum();
    let churned_30d = subs
        .iter()
        .filter(|s| s.ended_at.is_some_and(|e| e >= since_30d))
        .count() as i64;

    let organizations = orgs
        .figures
        .iter()
        .map(|o| {
            let t = &o.tenant;
            let shown = o.shown.as_ref();
            Organization {
                tenant_id: t.id.clone(),
                name: t.name.clone(),
                subdomain: t.subdomain.clone(),
                is_demo: t.is_demo,
                subscription_status: shown.map(|s| s.status.clone()),
                cancel_at_period_end: shown.is_some_and(|s| s.cancel_at_period_end && s.is_live()),
                mrr_cents: o.mrr,
                usage_this_month: o.usage_this_month,
                // The same figure as the tenant's dashboard: what this period's run would bill now.
                upcoming_usage_cents: o.upcoming.total_charges_cents,
                last_invoice: last_invoices.get(&t.id).map(|i| LastInvoice {
                    stripe_invoice_id: i.stripe_invoice_id.clone(),
                    status: i.status.clone(),
                    amount_due_cents: Cents(i.amount_due_cents),
                    hosted_invoice_url: i.hosted_invoice_url.clone(),
                }),
                payment_flag: payment_flag(shown, &t.id, &unpaid, &stopped),
            }
        })
        .collect();

    let mut months: BTreeMap<BillingPeriod, Month> = BTreeMap::new();
    let mut p = first;
    for _ in 0..HISTORY_MONTHS {
        months.insert(
            p,
            Month {
                period: p,
                subscription_revenue_cents: Cents::ZERO,
                usage_revenue_cents: Cents::ZERO,
                words: 0,
                calls: 0,
            },
        );
        p = p.next();
    }
    for (paid_at, amount, is_usage) in &paid {
        if let Some(m) = months.get_mut(&BillingPeriod::containing(*paid_at, tz)) {
            if *is_usage {
                m.usage_revenue_cents += Cents(*amount);
            } else {
                m.subscription_revenue_cents += Cents(*amount);
            }
        }
    }
    for (day, words, calls) in &daily {
        if let Some(m) = months.get_mut(&BillingPeriod::of_day(*day)) {
            m.words += words;
            m.calls += calls;
        }
    }
    let usage_revenue_cents = months
        .get(&period)
        .map(|m| m.usage_revenue_cents)
        .unwrap_or_default();

    Ok(Overview {
        mrr_cents,
        active_subscriptions: counted(SubscriptionStatus::Active),
        trialing_subscriptions: counted(SubscriptionStatus::Trialing),
        past_due_subscriptions: counted(SubscriptionStatus::PastDue),
        usage_revenue_cents,
        failed_payments_30d: failed,
        churned_30d,
        period,
        organizations,
        monthly: months.into_values().collect(),
    })
}

/// Whether a tenant's money is not coming in: its shown subscription past due, or open invoices whose
/// payment failed (`unpaid`: tenant, invoice, amount due), with those whose retries `stopped`.
fn payment_flag(
    shown: Option<&SubscriptionRow>,
    tenant: &str,
    unpaid: &[db_overview::UnpaidInvoice],
    stopped: &[crate::billing::attempts::Stopped],
) -> Option<PaymentFlag> {
    let mine: Vec<&db_overview::UnpaidInvoice> =
        unpaid.iter().filter(|u| u.tenant_id == tenant).collect();
    let past_due = shown.is_some_and(|s| {
        s.ended_at.is_none()
            && matches!(
                s.state(),
                SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid
            )
    });
    let reason = if mine.iter().any(|u| u.action_required) {
        PaymentFlagReason::ActionRequired
    } else if past_due {
        PaymentFlagReason::PastDue
    } else if !mine.is_empty() {
        PaymentFlagReason::PaymentFailed
    } else {
        return None;
    };
    Some(PaymentFlag {
        reason,
        failed_invoices: mine.iter().map(|u| u.stripe_invoice_id.clone()).collect(),
        amount_due_cents: mine.iter().map(|u| Cents(u.amount_due_cents)).sum(),
        retries_stopped: stopped
            .iter()
            .filter(|s| s.tenant_id == tenant)
            .filter(|s| {
                mine.iter()
                    .any(|u| u.stripe_invoice_id == s.stripe_invoice_id)
            })
            .map(|s| RetriesStopped {
                stripe_invoice_id: s.stripe_invoice_id.clone(),
                reason: s.why.clone(),
            })
            .collect(),
    })
}

/// The failed payments `failed_payments_30d` counts at `now`, newest first.
pub async fn failed_payments(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<Vec<FailedPayment>, sqlx::Error> {
    let since = now - Duration::days(FAILED_PAYMENTS_DAYS);
    Ok(db_overview::failed_payments_since(db, since)
        .await?
        .into_iter()
        .map(|r| FailedPayment {
            received_at: r.received_at,
            tenant_id: r.tenant_id,
            tenant_name: r.tenant_name,
            stripe_invoice_id: r.stripe_invoice_id,
            invoice_number: r.invoice_number,
            invoice_status: r.invoice_status,
            amount_due_cents: r.amount_due_cents.map(Cents),
            hosted_invoice_url: r.hosted_invoice_url,
        })
        .collect())
}

/// Each tenant's newest invoice.
async fn latest_invoice_per_tenant(db: &Db) -> Result<HashMap<String, InvoiceRow>, sqlx::Error> {
    let mut latest: HashMap<String, InvoiceRow> = HashMap::new();
    for i in invoices::newest_per_tenant(db).await? {
        let newer = latest.get(&i.tenant_id).is_none_or(|seen| {
            (i.stripe_created_at, &i.stripe_invoice_id)
                > (seen.stripe_created_at, &seen.stripe_invoice_id)
        });
        if newer {
            latest.insert(i.tenant_id.clone(), i);
        }
    }
    Ok(latest)
}

/// Usage recorded in `period`, by tenant (billed or not, free or not: what happened).
async fn usage_by_tenant(
    db: &Db,
    period: BillingPeriod,
) -> Result<HashMap<String, UsageThisMonth>, sqlx::Error> {
    Ok(db_overview::usage_by_tenant(db, period)
        .await?
        .into_iter()
        .map(|(tenant, stt_words, tts_words, phone_calls)| {
            let usage = UsageThisMonth {
                stt_words,
                tts_words,
                phone_calls,
            };
            (tenant, usage)
        })
        .collect())
}

/// The overview as of now.
pub async fn now(state: &AppState) -> Result<Overview, sqlx::Error> {
    build(state, time::now()).await
}

/// How a run went, as the admin page colours it: the history's `completed` is split by whether every
/// tenant was billed, since a run with failed tenants needs a re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Completed,
    CompletedWithFailures,
    Failed,
}

impl RunOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Completed => "completed",
            RunOutcome::CompletedWithFailures => "completed with failures",
            RunOutcome::Failed => "failed",
        }
    }
}

/// A recorded run read back: its report when it finished, its error when it failed.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run_id: String,
    pub period: String,
    pub dry_run: bool,
    pub outcome: RunOutcome,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub report: Option<RunReport>,
    /// Why the run failed as a whole, or what its failed tenants' errors were.
    pub error: Option<String>,
}

impl RunDetail {
    fn from_record(r: RunRecord) -> RunDetail {
        let report: Option<RunReport> = r
            .report
            .as_ref()
            .filter(|_| r.status == "completed")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let outcome = match (r.status.as_str(), &report) {
            ("running", _) => RunOutcome::Running,
            ("completed", Some(rep)) if !rep.failed.is_empty() => RunOutcome::CompletedWithFailures,
            ("completed", _) => RunOutcome::Completed,
            _ => RunOutcome::Failed,
        };
        let error = match outcome {
            RunOutcome::Failed => Some(
                r.report
                    .as_ref()
                    .and_then(|v| v["error"].as_str())
                    .unwrap_or("the run stopped without a report")
                    .trim_end_matches('.')
                    .to_owned(),
            ),
            RunOutcome::CompletedWithFailures => report.as_ref().map(|rep| {
                let first = &rep.failed[0];
                let more = rep.failed.len() - 1;
                // Said inside a sentence: without its own full stop.
                let first_error = first.error.trim_end_matches('.');
                if more == 0 {
                    format!("{}: {first_error}", first.tenant_id)
                } else {
                    format!("{}: {first_error} (and {more} more)", first.tenant_id)
                }
            }),
            _ => None,
        };
        RunDetail {
            run_id: r.run_id,
            period: r.period,
            dry_run: r.dry_run,
            outcome,
            trigger: r.trigger,
            started_at: r.started_at,
            finished_at: r.finished_at,
            report,
            error,
        }
    }

    /// Tenants this run invoiced (or, dry, would invoice).
    pub fn billed(&self) -> Option<usize> {
        self.report.as_ref().map(|r| r.billed.len())
    }

    /// Tenants an earlier run had already invoiced for the period: nothing new was billed for them.
    pub fn already_billed(&self) -> Option<usize> {
        self.report.as_ref().map(|r| {
            r.skipped
                .iter()
                .filter(|s| s.reason == ALREADY_BILLED)
                .count()
        })
    }

    /// Tenants skipped for any other reason (demo, no subscription, no usage, trial only).
    pub fn skipped(&self) -> Option<usize> {
        self.report.as_ref().map(|r| {
            r.skipped
                .iter()
                .filter(|s| s.reason != ALREADY_BILLED)
                .count()
        })
    }

    pub fn failed(&self) -> Option<usize> {
        self.report.as_ref().map(|r| r.failed.len())
    }

    pub fn billed_cents(&self) -> Option<Cents> {
        self.report.as_ref().map(|r| Cents(r.totals.billed_cents))
    }
}

/// The skip reason of a tenant whose invoice for the period an earlier run made.
pub const ALREADY_BILLED: &str = "already_billed";

/// The latest monthly runs, newest first.
pub async fn recent_runs(db: &Db, limit: i64) -> Result<Vec<RunDetail>, sqlx::Error> {
    Ok(crate::billing::run_log::recent(db, limit)
        .await?
        .into_iter()
        .map(RunDetail::from_record)
        .collect())
}

/// One run, with the names of the organizations its report lists.
pub async fn run_detail(
    db: &Db,
    run_id: &str,
) -> Result<Option<(RunDetail, HashMap<String, String>)>, sqlx::Error> {
    let Some(record) = crate::billing::run_log::get(db, run_id).await? else {
        return Ok(None);
    };
    Ok(Some((
        RunDetail::from_record(record),
        tenant_names(db).await?,
    )))
}

/// Every organization's name, by id (a run report names tenants by id).
pub async fn tenant_names(db: &Db) -> Result<HashMap<String, String>, sqlx::Error> {
    Ok(tenants::list(db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}
