//! A tenant's billing as of now: its subscription, card, invoices, this period's usage and what the
//! monthly run would bill if it ran now. The JSON route and the billing page show the same figures.

use crate::billing::ledger;
use crate::billing::plan::BilledByPeriod;
use crate::db::invoices::{self, InvoiceView};
use crate::db::payment_methods::{self, PaymentMethodView};
use crate::db::subscriptions::{self, CurrentSubscription};
use crate::db::tenants;
use crate::domain::{time, BillingPeriod, Cents, TenantId};
use crate::state::AppState;
use crate::usage::billable;
use crate::usage::rating::{rate_slice, Rates, UsageTotals};
use serde::Serialize;
use utoipa::ToSchema;

pub const DEMO_MESSAGE: &str = "This is a demo account and is exempt from billing charges.";
const RECENT_INVOICES: u32 = 10;

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
}

/// What the run for the current period would bill if it ran now.
#[derive(Serialize, Default, ToSchema)]
pub struct UpcomingCharges {
    pub voice_words_count: i64,
    pub voice_usage_cents: Cents,
    pub call_count: i64,
    pub call_charges_cents: Cents,
    pub total_charges_cents: Cents,
    /// Earlier periods' usage not yet billed: the run bills it on lines of its own.
    pub late: Vec<LateCharges>,
}

#[derive(Serialize, ToSchema)]
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
    let tz = state.settings.billing.timezone;
    let rates = Rates::from_settings(&state.settings);
    let period = BillingPeriod::containing(time::now(), tz);
    let (start, end) = period.bounds(tz);
    let db = &state.db;
    // Independent reads, each on its own pooled connection: the page costs one round trip's latency.
    let (tenant, subscription, invoices, recorded, unbilled, payment_method) = tokio::try_join!(
        tenants::get(db, tenant_id),
        subscriptions::current(db, tenant_id),
        invoices::recent(db, tenant_id, RECENT_INVOICES),
        billable::recorded(db, tenant_id, period),
        // What the run for this period would bill now: everything unbilled before the period's end.
        billable::unbilled(db, tenant_id, end, tz),
        payment_methods::get(db, tenant_id.as_str()),
    )?;
    let tenant =
        tenant.ok_or_else(|| DashboardError::TenantNotFound(tenant_id.as_str().to_owned()))?;
    let current_period_usage = PeriodUsage {
        start_date: time::rfc3339(start),
        end_date: time::rfc3339(end),
        total_stt_words: recorded.stt_words,
        total_tts_words: recorded.tts_words,
        total_phone_calls: recorded.calls,
    };
    if tenant.is_demo {
        return Ok(Dashboard {
            is_demo: true,
            demo_message: Some(DEMO_MESSAGE),
            current_subscription: None,
            payment_method: None,
            recent_invoices: invoices,
            current_period_usage,
            upcoming_charges: UpcomingCharges::default(),
        });
    }
    // Late usage is priced against what earlier invoices billed of its period, as the run prices it.
    let billed = ledger::billed_voice(
        db,
        tenant_id.as_str(),
        period,
        unbilled.keys().copied().filter(|p| *p < period),
    )
    .await?;
    Ok(Dashboard {
        is_demo: false,
        demo_message: None,
        current_subscription: subscription,
        payment_method,
        recent_invoices: invoices,
        current_period_usage,
        upcoming_charges: upcoming_after(period, unbilled, &billed, &rates),
    })
}

/// `upcoming_after` with nothing billed before: right only for periods no invoice has billed yet.
pub fn upcoming(
    period: BillingPeriod,
    unbilled: billable::ByPeriod,
    rates: &Rates,
) -> UpcomingCharges {
    upcoming_after(period, unbilled, &BilledByPeriod::new(), rates)
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
