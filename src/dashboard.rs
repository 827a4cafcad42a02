//! A tenant's billing as of now: its subscription, card, invoices, this period's usage and what the
//! monthly run would bill if it ran now. The JSON route and the billing page show the same figures.

use crate::billing::ledger;
use crate::billing::lines::BilledByPeriod;
use crate::db::invoices::{self, InvoiceLine, InvoiceRow};
use crate::db::payment_methods;
use crate::db::subscriptions::{self, CurrentSubscription};
use crate::db::{tenants, Db};
use crate::domain::PaymentMethodView;
use crate::domain::{time, BillingPeriod, Cents, TenantId};
use crate::state::AppState;
use crate::usage::billable;
use crate::usage::rating::{rate_slice, InvoicedUsage, Rates, UsageTotals};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

pub const DEMO_MESSAGE: &str = "This is a demo account and is exempt from billing charges.";
const RECENT_INVOICES: i64 = 10;

#[derive(Serialize, ToSchema)]
pub struct Dashboard {
    pub is_demo: bool,
    /// Only for a demo tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "This is a demo account and is exempt from billing charges.")]
    pub demo_message: Option<&'static str>,
    pub current_subscription: Option<CurrentSubscription>,
    /// The card or bank account that pays the invoices; null when none is known (or for a demo).
    pub payment_method: Option<PaymentMethodView>,
    pub recent_invoices: Vec<InvoiceView>,
    pub current_period_usage: PeriodUsage,
    pub upcoming_charges: UpcomingCharges,
}

/// The current billing period's recorded usage.
#[derive(Serialize, ToSchema)]
pub struct PeriodUsage {
    #[schema(format = DateTime)]
    pub start_date: String,
    #[schema(format = DateTime)]
    pub end_date: String,
    pub total_stt_words: i64,
    pub total_tts_words: i64,
    pub total_phone_calls: i64,
    /// The current period, `YYYY-MM`.
    pub period: BillingPeriod,
    /// What the period's own usage costs by the billing rules (demo and trial usage free, voice rounded
    /// once): `upcoming_charges`' voice and call charges, without earlier periods' late usage.
    pub total_cost_cents: Cents,
}

/// What the run for the current period would bill if it ran now.
#[derive(Debug, Clone, Serialize, Default, ToSchema)]
pub struct UpcomingCharges {
    pub voice_words_count: i64,
    pub voice_usage_cents: Cents,
    pub call_count: i64,
    pub call_charges_cents: Cents,
    pub total_charges_cents: Cents,
    /// Earlier periods' usage not yet billed: the run bills it on lines of its own.
    pub late: Vec<LateCharges>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LateCharges {
    pub period: BillingPeriod,
    pub voice_words_count: i64,
    pub voice_usage_cents: Cents,
    pub call_count: i64,
    pub call_charges_cents: Cents,
}

/// Why a dashboard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("No tenant {0:?} is registered.")]
    TenantNotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The tenant's dashboard as of now (the JSON route and the billing page show the same numbers).
pub async fn load(state: &AppState, tenant_id: &TenantId) -> Result<Dashboard, DashboardError> {
    Ok(load_with_tenant(state, tenant_id).await?.1)
}

/// The tenant as registered, and its dashboard.
async fn load_with_tenant(
    state: &AppState,
    tenant_id: &TenantId,
) -> Result<(tenants::Tenant, Dashboard), DashboardError> {
    let tz = state.settings.billing.timezone;
    let rates = Rates::from_settings(&state.settings);
    let period = BillingPeriod::containing(time::now(), tz);
    let db = &state.db;
    // Independent reads, each on its own pooled connection: the page costs one round trip's latency.
    let (tenant, subscription, invoices, invoiced, recorded, upcoming, payment_method) = tokio::try_join!(
        tenants::get(db, tenant_id),
        subscriptions::current(db, tenant_id),
        invoices::for_tenant(db, tenant_id.as_str(), RECENT_INVOICES),
        ledger::invoiced_usage(db, tenant_id.as_str()),
        billable::recorded(db, tenant_id, period),
        upcoming_for(db, tenant_id, period, tz, &rates),
        payment_methods::get(db, tenant_id.as_str()),
    )?;
    let tenant =
        tenant.ok_or_else(|| DashboardError::TenantNotFound(tenant_id.as_str().to_owned()))?;
    let recent_invoices = invoices
        .into_iter()
        .map(|row| {
            let usage = invoiced
                .get(&row.stripe_invoice_id)
                .copied()
                .unwrap_or_else(|| read_back(&row.lines));
            InvoiceView::new(row, usage)
        })
        .collect();
    let dashboard = if tenant.is_demo {
        Dashboard {
            is_demo: true,
            demo_message: Some(DEMO_MESSAGE),
            current_subscription: None,
            payment_method: None,
            recent_invoices,
            current_period_usage: period_usage(period, tz, recorded, Cents::ZERO),
            upcoming_charges: UpcomingCharges::default(),
        }
    } else {
        Dashboard {
            is_demo: false,
            demo_message: None,
            current_subscription: subscription,
            payment_method,
            recent_invoices,
            current_period_usage: period_usage(
                period,
                tz,
                recorded,
                upcoming.voice_usage_cents + upcoming.call_charges_cents,
            ),
            upcoming_charges: upcoming,
        }
    };
    Ok((tenant, dashboard))
}

/// The dashboard of a tenant we have not registered (a valid token of an organization the platform has
/// not told us about yet): no subscription, no invoices, no usage. Nothing can be stored for such a
/// tenant (usage of an unknown tenant is refused), so this is its true state, not a stand-in.
pub fn unregistered(state: &AppState) -> Dashboard {
    let tz = state.settings.billing.timezone;
    let period = BillingPeriod::containing(time::now(), tz);
    Dashboard {
        is_demo: false,
        demo_message: None,
        current_subscription: None,
        payment_method: None,
        recent_invoices: Vec::new(),
        current_period_usage: period_usage(period, tz, UsageTotals::default(), Cents::ZERO),
        upcoming_charges: UpcomingCharges::default(),
    }
}

fn period_usage(
    period: BillingPeriod,
    tz: Tz,
    recorded: UsageTotals,
    total_cost_cents: Cents,
) -> PeriodUsage {
    let (start, end) = period.bounds(tz);
    PeriodUsage {
        start_date: time::rfc3339(start),
        end_date: time::rfc3339(end),
        total_stt_words: recorded.stt_words,
        total_tts_words: recorded.tts_words,
        total_phone_calls: recorded.calls,
        period,
        total_cost_cents,
    }
}

/// What an invoice without a ledger record bills, read back from its lines.
fn read_back(lines: &[InvoiceLine]) -> InvoicedUsage {
    InvoicedUsage::from_descriptions(
        lines
            .iter()
            .map(|l| (l.description.as_str(), l.amount_cents)),
    )
}

/// What the run for `period` would bill the tenant if it ran now: everything unbilled before the
/// period's end, late usage priced against what earlier invoices billed of its period, as the run
/// prices it. The dashboard, the overview and the all-organizations view all read it from here.
pub async fn upcoming_for(
    db: &Db,
    tenant_id: &TenantId,
    period: BillingPeriod,
    tz: Tz,
    rates: &Rates,
) -> Result<UpcomingCharges, sqlx::Error> {
    let (_, end) = period.bounds(tz);
    let unbilled = billable::unbilled(db, tenant_id, end, tz).await?;
    let billed = ledger::billed_voice(
        db,
        tenant_id.as_str(),
        period,
        unbilled.keys().copied().filter(|p| *p < period),
    )
    .await?;
    Ok(upcoming_after(period, unbilled, &billed, rates))
}

/// A registered organization's dashboard with its name and subdomain (the super admin's page of one
/// organization).
#[derive(Serialize, ToSchema)]
pub struct OrganizationBilling {
    /// The tenant id.
    pub organization_id: String,
    pub organization_name: String,
    pub subdomain: String,
    #[serde(flatten)]
    pub dashboard: Dashboard,
}

/// The dashboard of a registered organization with its name and subdomain.
pub async fn for_organization(
    state: &AppState,
    tenant_id: &TenantId,
) -> Result<OrganizationBilling, DashboardError> {
    let (tenant, dashboard) = load_with_tenant(state, tenant_id).await?;
    Ok(OrganizationBilling {
        organization_id: tenant.id,
        organization_name: tenant.name,
        subdomain: tenant.subdomain,
        dashboard,
    })
}

/// An invoice as the dashboard shows it (API.md, with the fields the platform's pages read).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct InvoiceView {
    pub stripe_invoice_id: String,
    pub status: String,
    /// The usage period a monthly usage invoice bills, `YYYY-MM`; null on subscription invoices.
    #[schema(example = "2026-11")]
    pub billing_period: Option<String>,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub period_end: Option<DateTime<Utc>>,
    pub amount_due_cents: i64,
    pub amount_paid_cents: i64,
    pub currency: String,
    pub hosted_invoice_url: Option<String>,
    pub lines: Vec<InvoiceLine>,
    /// Stripe's invoice id again, under the name the platform's pages read: we keep no id of our own.
    pub id: String,
    /// The voice words the invoice bills (its own period's and late usage); 0 on a subscription invoice.
    pub voice_words_count: i64,
    /// What its voice lines bill.
    pub voice_usage_cents: Cents,
    /// The phone calls it bills; 0 on a subscription invoice.
    pub call_count: i64,
    /// When Stripe created the invoice.
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When an invoice sent for payment is due; null on invoices Stripe charges automatically.
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub due_date: Option<DateTime<Utc>>,
    /// When it was paid; null until then.
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub paid_at: Option<DateTime<Utc>>,
}

impl InvoiceView {
    /// The invoice as shown, with the usage it bills (`usage`: from the run's ledger, or read back
    /// from its lines).
    pub fn new(row: InvoiceRow, usage: InvoicedUsage) -> InvoiceView {
        InvoiceView {
            id: row.stripe_invoice_id.clone(),
            stripe_invoice_id: row.stripe_invoice_id,
            status: row.status,
            billing_period: row.billing_period,
            period_start: row.period_start,
            period_end: row.period_end,
            amount_due_cents: row.amount_due_cents,
            amount_paid_cents: row.amount_paid_cents,
            currency: row.currency,
            hosted_invoice_url: row.hosted_invoice_url,
            lines: row.lines,
            voice_words_count: usage.voice_words,
            voice_usage_cents: usage.voice_cents,
            call_count: usage.calls,
            created_at: row.stripe_created_at,
            due_date: row.due_date,
            paid_at: row.paid_at,
        }
    }
}

/// Splits unbilled usage into the period's own charges and earlier periods' late charges, each priced
/// as the run prices it given what the tenant's other invoices billed of its period (`billed`).
pub fn upcoming_after(
    period: BillingPeriod,
    mut unbilled: billable::ByPeriod,
    billed: &BilledByPeriod,
    rates: &Rates,
) -> UpcomingCharges {
    let billed_of = |p: &BillingPeriod| billed.get(p).copied().unwrap_or_default();
    let own = rate_slice(
        &unbilled.remove(&period).unwrap_or_default(),
        &billed_of(&period),
        rates,
    );
    let mut total = own.total;
    let late = unbilled
        .iter()
        .filter(|(p, _)| **p < period)
        .map(|(p, totals): (&BillingPeriod, &UsageTotals)| {
            let c = rate_slice(totals, &billed_of(p), rates);
            total += c.total;
            LateCharges {
                period: *p,
                voice_words_count: c.voice_words,
                voice_usage_cents: c.voice_cents,
                call_count: c.calls,
                call_charges_cents: c.call_cents,
            }
        })
        .collect();
    UpcomingCharges {
        voice_words_count: own.voice_words,
        voice_usage_cents: own.voice_cents,
        call_count: own.calls,
        call_charges_cents: own.call_cents,
        total_charges_cents: total,
        late,
    }
}

/// What the billing page shows beside the dashboard's figures, from our copy of Stripe (API.md's
/// dashboard does not list these).
pub struct Standing {
    /// Open invoices Stripe failed to charge, latest failure first (some waiting for the customer's
    /// confirmation: `action_required`).
    pub failed: Vec<crate::db::invoices::FailedPayment>,
    /// Open invoices whose bank debit is processing.
    pub processing: Vec<crate::db::invoices::ProcessingPayment>,
    /// Until when a past-due organization keeps access.
    pub access_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the organization has had a subscription (a new one then gets no trial).
    pub subscribed_before: bool,
}

pub async fn standing(
    state: &AppState,
    tenant: &TenantId,
    live: Option<&crate::db::subscriptions::SubscriptionRow>,
) -> Result<Standing, sqlx::Error> {
    let failed = crate::db::invoices::failed_payments(&state.db, tenant).await?;
    let processing = crate::db::invoices::processing(&state.db, tenant).await?;
    let past_due = live.is_some_and(|s| s.state() == crate::domain::SubscriptionStatus::PastDue);
    let access_until = if past_due {
        let grace = chrono::Duration::days(i64::from(state.settings.billing.past_due_grace_days));
        crate::subscriptions::access::for_tenant(
            &state.db,
            tenant,
            grace,
            crate::domain::time::now(),
        )
        .await?
        .filter(|a| {
            matches!(
                a.reason,
                crate::subscriptions::access::AccessReason::PastDue
                    | crate::subscriptions::access::AccessReason::ActionRequired
            )
        })
        .and_then(|a| a.until)
    } else {
        None
    };
    let subscribed_before = live.is_some()
        || !crate::db::subscriptions::for_tenant(&state.db, tenant.as_str())
            .await?
            .is_empty();
    Ok(Standing {
        failed,
        processing,
        access_until,
        subscribed_before,
    })
}

/// The tenant's latest `limit` invoices, newest first, as our copy of Stripe holds them.
pub async fn invoices(
    db: &Db,
    tenant: &TenantId,
    limit: i64,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    invoices::for_tenant(db, tenant.as_str(), limit).await
}
