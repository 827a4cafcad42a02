//! The failed payments behind the overview's KPI.

use super::*;
use crate::domain::time;
use crate::http::error::ApiError;
use crate::http::web::html::{self, badge, date_time};
use crate::http::web::session::PageUser;
use crate::overview::{self};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::HashMap;

/// The failed payments behind the KPI: the same `invoice.payment_failed` events of the last 30 days.
pub(super) async fn failed_payments_page(
    State(state): State<AppState>,
    user: PageUser,
) -> Response {
    if let Err(r) = require_super_admin(&user) {
        return r;
    }
    let now = time::now();
    let list = match overview::failed_payments(&state.db, now).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = state.settings.billing.timezone;
    let since = now - chrono::Duration::days(overview::FAILED_PAYMENTS_DAYS);
    let names: HashMap<&str, &str> = list
        .iter()
        .filter_map(|f| Some((f.tenant_id.as_deref()?, f.tenant_name.as_deref()?)))
        .collect();
    let body = html! {
        p class="crumbs" { a href="/admin/billing" { "← Revenue overview" } }
        h1 { "Failed payments, last 30 days" }
        p class="sub" {
            "Every payment Stripe reported as failed since " (html::date(since, tz))
            ": the figure on the overview. An invoice still open is still owed."
        }
        section class="card" {
            @if list.is_empty() {
                p class="muted" id="no-failed-payments" { "No failed payments in the last 30 days." }
            } @else {
                (html::scroll_hint())
                div class="table-scroll" tabindex="0" aria-label="Failed payments (scrolls sideways)" {
                    table id="failed-payments" {
                        thead {
                            tr {
                                th { "When" }
                                th { "Organization" }
                                th { "Invoice" }
                                th class="num" { "Amount" }
                                th { "Invoice now" }
                            }
                        }
                        tbody {
                            @for f in &list {
                                tr class="failed-payment" {
                                    td class="when" { (date_time(f.received_at, tz)) }
                                    td class="fp-org" {
                                        @match &f.tenant_id {
                                            Some(t) => {
                                                a href={ "/billing?tenant_id=" (encoded(t)) } {
                                                    (names.get(t.as_str()).copied().unwrap_or(t))
                                                }
                                            }
                                            None => { span class="muted" { "unknown" } }
                                        }
                                    }
                                    td class="fp-invoice" {
                                        @let label = f.invoice_number.as_deref().or(f.stripe_invoice_id.as_deref()).unwrap_or("—");
                                        @match f.hosted_invoice_url.as_deref().filter(|u| u.starts_with("http")) {
                                            Some(u) => { a href=(u) rel="noopener noreferrer" { (label) } }
                                            None => { (label) }
                                        }
                                    }
                                    td class="num fp-amount" {
                                        @match f.amount_due_cents {
                                            Some(c) => { (c) }
                                            None => { span class="muted" { "—" } }
                                        }
                                    }
                                    td {
                                        @match &f.invoice_status {
                                            Some(s) => { (badge(s)) }
                                            None => { span class="muted" { "not synced" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    admin_page(&user, StatusCode::OK, "Failed payments", None, body)
}
