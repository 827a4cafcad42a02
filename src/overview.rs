//! The super admin's revenue overview: MRR, subscription counts, usage revenue, failed payments, churn,
//! one row per organization and twelve months of history. The definitions are in `docs/OVERVIEW.md`.

use crate::dashboard;
use crate::db::invoices::{self, InvoiceRow};
use crate::db::overview as db_overview;
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::db::{tenants, webhook_events, Db};
use crate::domain::{time, BillingPeriod, Cents, TenantId};
use crate::state::AppState;
use crate::stripe::SubscriptionStatus;
use crate::usage::billable;
use crate::usage::rating::Rates;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Statuses whose monthly amount counts as recurring revenue.
/// How many calendar months the history covers, the current one included.
pub const HISTORY_MONTHS: usize = 12;

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

/// Builds the overview at `now`.
pub async fn build(state: &AppState, now: DateTime<Utc>) -> Result<Overview, sqlx::Error> {
    let db = &state.db;
    let tz = state.settings.billing.timezone;
    let rates = Rates::from_settings(&state.settings);
    let period = BillingPeriod::containing(now, tz);
    let (_, period_end) = period.bounds(tz);
    let first = (1..HISTORY_MONTHS).fold(period, |p, _| p.prev());
    let since_30d = now - Duration::days(30);

    let (tenant_list, subs, last_invoices, usage, paid, daily, failed) = tokio::try_join!(
        tenants::list(db),
        subscriptions::all(db),
        latest_invoice_per_tenant(db),
        usage_by_tenant(db, period),
        db_overview::paid_invoices_since(db, first.bounds(tz).0),
        db_overview::usage_by_day_since(db, first.first_day()),
        webhook_events::count_since(db, crate::stripe::PAYMENT_FAILED, since_30d),
    )?;
    let demo: HashMap<&str, bool> = tenant_list
        .iter()
        .map(|t| (t.id.as_str(), t.is_demo))
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

    let mut organizations = Vec::with_capacity(tenant_list.len());
    for t in &tenant_list {
        let mine: Vec<&SubscriptionRow> = subs.iter().filter(|s| s.tenant_id == t.id).collect();
        // `subscriptions::all` lists each tenant's newest first: the live one if any, else the last one.
        let shown = mine
            .iter()
            .find(|s| s.is_live())
            .or_else(|| mine.first())
            .copied();
        let mrr = if t.is_demo {
            Cents::ZERO
        } else {
            mine.iter()
                .filter(|s| in_mrr(s))
                .map(|s| Cents(s.amount_cents))
                .sum()
        };
        // The same figure as the tenant's dashboard: what this period's run would bill now.
        let upcoming_usage_cents = if t.is_demo {
            Cents::ZERO
        } else {
            let id = TenantId::parse(&t.id).map_err(|e| sqlx::Error::Decode(e.into()))?;
            let unbilled = billable::unbilled(db, &id, period_end, tz).await?;
            dashboard::upcoming(period, unbilled, &rates).total_charges_cents
        };
        organizations.push(Organization {
            tenant_id: t.id.clone(),
            name: t.name.clone(),
            subdomain: t.subdomain.clone(),
            is_demo: t.is_demo,
            subscription_status: shown.map(|s| s.status.clone()),
            cancel_at_period_end: shown.is_some_and(|s| s.cancel_at_period_end && s.is_live()),
            mrr_cents: mrr,
            usage_this_month: usage.get(&t.id).copied().unwrap_or_default(),
            upcoming_usage_cents,
            last_invoice: last_invoices.get(&t.id).map(|i| LastInvoice {
                stripe_invoice_id: i.stripe_invoice_id.clone(),
                status: i.status.clone(),
                amount_due_cents: Cents(i.amount_due_cents),
                hosted_invoice_url: i.hosted_invoice_url.clone(),
            }),
        });
    }

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

/// A monthly run as the admin page lists it, with the totals of its report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub period: String,
    pub dry_run: bool,
    pub status: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub billed: Option<i64>,
    pub skipped: Option<i64>,
    pub failed: Option<i64>,
    pub billed_cents: Option<Cents>,
}

/// The latest monthly runs, newest first, with counts from their reports (none while a run has none).
pub async fn recent_runs(db: &Db, limit: i64) -> Result<Vec<RunSummary>, sqlx::Error> {
    let runs = crate::billing::runs::recent(db, limit).await?;
    Ok(runs
        .into_iter()
        .map(|r| {
            let len = |key: &str| {
                r.report
                    .as_ref()
                    .and_then(|rep| rep[key].as_array())
                    .map(|a| a.len() as i64)
            };
            RunSummary {
                billed: len("billed"),
                skipped: len("skipped"),
                failed: len("failed"),
                billed_cents: r
                    .report
                    .as_ref()
                    .and_then(|rep| rep["totals"]["billed_cents"].as_i64())
                    .map(Cents),
                run_id: r.run_id,
                period: r.period,
                dry_run: r.dry_run,
                status: r.status,
                trigger: r.trigger,
                started_at: r.started_at,
                finished_at: r.finished_at,
            }
        })
        .collect())
}
