//! A payment method as the dashboard and the pages show it: what Stripe reads it as, stored with the
//! tenant's choice.

use serde::Serialize;

/// A card or bank account, as a person recognizes it; never more than Stripe shows in its portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PaymentMethodView {
    /// `card`, `us_bank_account`, `sepa_debit`.
    #[serde(rename = "type")]
    #[schema(example = "card")]
    pub kind: String,
    /// The card brand (`visa`, ...) or the bank's name.
    #[schema(example = "visa")]
    pub brand: Option<String>,
    #[schema(example = "4242")]
    pub last4: Option<String>,
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
}
