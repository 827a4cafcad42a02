//! The one product we sell: the $299.00 monthly platform subscription, and what it includes.

use crate::state::AppState;

/// The one plan: $299.00 a month.
pub const PLAN_AMOUNT_CENTS: i64 = 29_900;

pub const PLAN_NAME: &str = "Thanotopolis Platform Subscription";

pub const PLAN_DESCRIPTION: &str =
    "Monthly subscription for Thanotopolis multi-agent platform with web and telephony access";

/// What the plan includes, said with the configured rates.
pub fn plan_features(state: &AppState) -> Vec<String> {
    let s = &state.settings;
    vec![
        "Web and telephony voice agents for your whole organization".to_owned(),
        format!(
            "Voice usage (speech-to-text plus text-to-speech): {} per 1,000 words, billed monthly",
            crate::domain::Cents(s.billing.voice_price_cents_per_1000_words)
        ),
        format!(
            "Phone calls: {} per call plus the call's voice usage, billed monthly",
            crate::domain::Cents(s.billing.call_price_cents)
        ),
        "Manage cards, invoices and cancellation in Stripe's customer portal".to_owned(),
    ]
}
