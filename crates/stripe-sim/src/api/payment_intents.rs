//! PaymentIntents, retrieve only: each invoice's default payment, whose `status` says whether a
//! payment is `processing` (a bank debit) or `requires_action` (the bank asks the customer to
//! authenticate). Its state lives on the invoice (`billing`).

use super::{retrieve, Route};

pub(super) const ROUTES: &[Route] = &[Route::new("GET /v1/payment_intents/{id}", |s, id, p| {
    retrieve(s, p, id, "payment_intent", "intent")
})];
