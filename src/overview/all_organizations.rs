//! The super admin's all-organizations dashboard: the view the platform's `SuperAdminBilling` page
//! shows when a super admin opens billing. Every figure comes from the overview's per-organization
//! figures (`organizations_at`), which take each organization's charges from the same function as its own
//! dashboard (`dashboard::upcoming_for`): the view says what the overview says and what the monthly run
//! would bill now.

use super::{OrganizationFigures, UsageThisMonth};
use crate::dashboard::UpcomingCharges;
use crate::domain::{time, Cents};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// How the platform's page tells this view from a tenant's dashboard.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViewType {
    SuperAdmin,
}

/// Every registered organization's billing in the current period, to now.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllOrganizations {
    /// Always `super_admin`.
    pub view_type: ViewType,
    pub total_organizations: i64,
    /// The sum of the organizations' `total_charges_cents`: subscriptions counted in MRR plus usage.
    pub total_revenue_cents: Cents,
    /// The voice words the organizations' charges bill this period (`voice_words_count` summed).
    pub total_voice_words: i64,
    /// The phone calls the organizations' charges bill this period (`call_count` summed).
    pub total_phone_calls: i64,
    pub organizations: Vec<OrganizationCharges>,
    pub summary: Summary,
}

/// One organization's row.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationCharges {
    /// The tenant id.
    pub organization_id: String,
    pub organization_name: String,
    pub subdomain: String,
    pub is_demo: bool,
    /// Its live subscription, else its newest one; null when it never subscribed.
    pub subscription: Option<SubscriptionSummary>,
    /// The monthly amount of its subscription when that counts in MRR (active or past due, not a demo
    /// account), else 0.
    pub subscription_revenue_cents: Cents,
    /// This period's billable voice words (STT + TTS outside trials and demo time) and their charge,
    /// rounded once on the period's total.
    pub voice_words_count: i64,
    pub voice_charges_cents: Cents,
    /// This period's billable phone calls and their charge.
    pub call_count: i64,
    pub call_charges_cents: Cents,
    /// Earlier periods' usage not billed yet, which the next run bills on lines of its own.
    pub late_charges_cents: Cents,
    /// `subscription_revenue_cents` plus the usage charges: voice, calls and late usage. The usage part
    /// is the organization's dashboard's `upcoming_charges.total_charges_cents` and the overview's
    /// `upcoming_usage_cents`.
    pub total_charges_cents: Cents,
    /// True when the organization has never subscribed: the monthly run skips it
    /// (`no_subscription`) and its usage charges wait for its first subscription.
    pub awaiting_subscription: bool,
    /// All usage recorded this period, billable or not (a demo's, a trial's).
    pub usage_this_month: UsageThisMonth,
}

/// The subscription a row shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionSummary {
    /// Stripe's status, e.g. `active`, `trialing`, `past_due`, `canceled`.
    #[schema(example = "active")]
    pub status: String,
    pub amount_cents: i64,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub current_period_end: Option<DateTime<Utc>>,
    /// Set to end at the end of the current period (only while it is live).
    pub cancel_at_period_end: bool,
}

/// The period's totals; every amount is in cents.
#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    /// The first instant of the current billing period.
    #[schema(format = DateTime)]
    pub period_start: String,
    /// Now: the figures cover the period so far.
    #[schema(format = DateTime)]
    pub period_end: String,
    /// `subscription_revenue_cents` summed: the overview's `mrr_cents`.
    pub total_subscription_revenue: Cents,
    pub total_voice_revenue: Cents,
    pub total_call_revenue: Cents,
    pub total_late_revenue: Cents,
    /// Voice, calls and late usage: what the monthly run would bill now, plus the usage of
    /// organizations awaiting their first subscription (`total_awaiting_subscription`).
    pub total_usage_revenue: Cents,
    /// The part of `total_usage_revenue` that waits for organizations to subscribe.
    pub total_awaiting_subscription: Cents,
}

/// The view at `now`.
pub async fn build(state: &AppState, now: DateTime<Utc>) -> Result<AllOrganizations, sqlx::Error> {
    let orgs = super::organizations_at(state, now).await?;
    let (period_start, _) = orgs.period.bounds(state.settings.billing.timezone);
    let organizations: Vec<OrganizationCharges> = orgs.figures.iter().map(row).collect();
    let sum = |f: fn(&OrganizationCharges) -> Cents| organizations.iter().map(f).sum::<Cents>();
    let summary = Summary {
        period_start: time::rfc3339(period_start),
        period_end: time::rfc3339(now),
        total_subscription_revenue: sum(|o| o.subscription_revenue_cents),
        total_voice_revenue: sum(|o| o.voice_charges_cents),
        total_call_revenue: sum(|o| o.call_charges_cents),
        total_late_revenue: sum(|o| o.late_charges_cents),
        total_usage_revenue: sum(OrganizationCharges::usage_cents),
        total_awaiting_subscription: sum(|o| {
            if o.awaiting_subscription {
                o.usage_cents()
            } else {
                Cents::ZERO
            }
        }),
    };
    Ok(AllOrganizations {
        view_type: ViewType::SuperAdmin,
        total_organizations: organizations.len() as i64,
        total_revenue_cents: sum(|o| o.total_charges_cents),
        total_voice_words: organizations.iter().map(|o| o.voice_words_count).sum(),
        total_phone_calls: organizations.iter().map(|o| o.call_count).sum(),
        organizations,
        summary,
    })
}

/// The view as of now.
pub async fn now(state: &AppState) -> Result<AllOrganizations, sqlx::Error> {
    build(state, time::now()).await
}

impl OrganizationCharges {
    /// The usage part of `total_charges_cents`.
    fn usage_cents(&self) -> Cents {
        self.voice_charges_cents + self.call_charges_cents + self.late_charges_cents
    }
}

fn row(o: &OrganizationFigures) -> OrganizationCharges {
    let UpcomingCharges {
        voice_words_count,
        voice_usage_cents,
        call_count,
        call_charges_cents,
        total_charges_cents,
        ref late,
    } = o.upcoming;
    OrganizationCharges {
        organization_id: o.tenant.id.clone(),
        organization_name: o.tenant.name.clone(),
        subdomain: o.tenant.subdomain.clone(),
        is_demo: o.tenant.is_demo,
        subscription: o.shown.as_ref().map(|s| SubscriptionSummary {
            status: s.status.clone(),
            amount_cents: s.amount_cents,
            current_period_end: s.current_period_end,
            cancel_at_period_end: s.cancel_at_period_end && s.is_live(),
        }),
        subscription_revenue_cents: o.mrr,
        voice_words_count,
        voice_charges_cents: voice_usage_cents,
        call_count,
        call_charges_cents,
        late_charges_cents: late
            .iter()
            .map(|l| l.voice_usage_cents + l.call_charges_cents)
            .sum(),
        total_charges_cents: o.mrr + total_charges_cents,
        awaiting_subscription: !o.has_subscription && !o.tenant.is_demo,
        usage_this_month: o.usage_this_month,
    }
}
