//! The payment attempts the service made itself (open invoices paid after a change of payment method,
//! the usage invoices' retries), as the admin page and a run's page list them.

use super::encoded;
use crate::billing::attempts::Attempt;
use crate::http::web::html::{self, date_time};
use maud::{html, Markup};
use std::collections::HashMap;

/// How a charge's outcome reads (an attempt's, or a run's charge of an invoice).
pub(super) fn outcome_badge(outcome: &str) -> Markup {
    let (class, text) = match outcome {
        "paid" => ("good", "paid"),
        "processing" => ("info", "processing (bank debit)"),
        "action_required" => ("warn", "bank asks the customer to confirm"),
        "declined" => ("bad", "declined"),
        "sent" => ("info", "sent"),
        "void" => ("neutral", "voided"),
        "uncollectible" => ("neutral", "marked uncollectible"),
        "refused" => ("bad", "refused by Stripe"),
        "error" => ("warn", "error: made again at the next wake-up"),
        "stopped" => ("bad", "retries stopped"),
        other => ("neutral", other),
    };
    html! { span class={ "badge payment " (class) } { (text) } }
}

/// Why it was made.
fn why(a: &Attempt) -> String {
    match a.reason.as_str() {
        "retry" => format!("retry {} of the usage invoice", a.attempt_no),
        "payment_method_changed" => "paid at once: new payment method".to_owned(),
        "retries_stopped" => format!("usage invoice retries ({} made)", a.attempt_no),
        other => other.to_owned(),
    }
}

/// The attempts as a table (`id`), or `empty` when there are none.
pub(super) fn attempts_table(
    id: &str,
    attempts: &[Attempt],
    names: &HashMap<String, String>,
    tz: chrono_tz::Tz,
    empty: &str,
) -> Markup {
    html! {
        @if attempts.is_empty() {
            p class="muted" { (empty) }
        } @else {
            (html::scroll_hint())
            div class="table-scroll" tabindex="0" aria-label="Payment attempts (scrolls sideways)" {
                table id=(id) {
                    thead {
                        tr {
                            th { "When (Stripe's clock)" }
                            th { "Organization" }
                            th { "Invoice" }
                            th { "Attempt" }
                            th { "Outcome" }
                        }
                    }
                    tbody {
                        @for a in attempts {
                            tr class="collection-attempt" {
                                td { (date_time(a.stripe_time, tz)) }
                                td {
                                    a href={ "/billing?tenant_id=" (encoded(&a.tenant_id)) } {
                                        (names.get(&a.tenant_id).map_or(a.tenant_id.as_str(), String::as_str))
                                    }
                                }
                                td {
                                    (a.stripe_invoice_id)
                                    @if let Some(p) = &a.billing_period {
                                        div class="muted" { (p) " usage" }
                                    }
                                }
                                td class="attempt-why" { (why(a)) }
                                td class="attempt-outcome" {
                                    (outcome_badge(&a.outcome))
                                    @if let Some(d) = &a.detail {
                                        div class="muted" { (d) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
