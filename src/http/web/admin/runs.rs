//! Monthly runs from the admin page: the runs table, the form's one-time token, the live run's
//! confirmation, and each run's page.

use super::*;
use crate::billing::run_report::RunReport;
use crate::billing::start::Once;
use crate::domain::{BillingPeriod, Cents};
use crate::http::error::ApiError;
use crate::http::web::html::{self, count, date_time, notice};
use crate::http::web::session::{PageUser, Posted};
use crate::overview::{self, RunDetail, RunOutcome};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use maud::{html, Markup};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;

/// The one-time token of a run form: a fresh run id and its HMAC. The run starts under that id, so the
/// same form sent twice finds its run already recorded and starts nothing (see `start::start_once`);
/// the HMAC keeps the id ours, so a posted id cannot name or guess another.
pub(super) fn run_token(state: &AppState, run_id: &str) -> String {
    format!(
        "{run_id}.{}",
        hex::encode(run_mac(state, run_id).finalize().into_bytes())
    )
}

pub(super) fn run_mac(state: &AppState, run_id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.jwt_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"run-form\0");
    mac.update(run_id.as_bytes());
    mac
}

pub(super) fn new_run_token(state: &AppState) -> String {
    run_token(state, &crate::billing::run_log::new_run_id())
}

/// The run id of a token this service issued.
pub(super) fn run_id_of(state: &AppState, token: &str) -> Option<String> {
    let (run_id, mac) = token.split_once('.')?;
    let bytes = hex::decode(mac).ok()?;
    run_mac(state, run_id).verify_slice(&bytes).ok()?;
    Some(run_id.to_owned())
}

pub(super) fn run_token_field(token: &str) -> Markup {
    html! { input type="hidden" name="run_token" value=(token); }
}

/// The badge of a run's outcome: four colours, so a run with failed tenants does not pass for done.
pub(super) fn run_badge(outcome: RunOutcome) -> Markup {
    let (class, colour) = match outcome {
        RunOutcome::Running => ("run-running", "info"),
        RunOutcome::Completed => ("run-completed", "good"),
        RunOutcome::CompletedWithFailures => ("run-completed-with-failures", "warn"),
        RunOutcome::Failed => ("run-failed", "bad"),
    };
    html! { span class={ "badge run-status " (class) " " (colour) } { (outcome.label()) } }
}

/// What a run billed: "2 · $412.18", or a dash when it billed nothing new.
pub(super) fn billed_cell(r: &RunDetail) -> Markup {
    match (r.billed(), r.billed_cents()) {
        (Some(n), Some(c)) if n > 0 => html! { (count(n as i64)) " · " (c) },
        (Some(_), _) => html! { span class="muted" { "0" } },
        _ => html! { span class="muted" { "—" } },
    }
}

pub(super) fn n_cell(v: Option<usize>) -> Markup {
    match v {
        Some(0) => html! { span class="muted" { "0" } },
        Some(n) => html! { (count(n as i64)) },
        None => html! { span class="muted" { "—" } },
    }
}

pub(super) fn runs_table(runs: &[RunDetail], tz: chrono_tz::Tz) -> Markup {
    html! {
        (html::scroll_hint())
        div class="table-scroll" tabindex="0" aria-label="Monthly billing runs (scrolls sideways)" {
            table id="runs-table" {
                thead {
                    tr {
                        th { "Started" }
                        th { "Period" }
                        th { "Kind" }
                        th { "Status" }
                        th class="num" { "Billed" }
                        th class="num" { "Already billed" }
                        th class="num" { "Skipped" }
                        th class="num" { "Failed" }
                    }
                }
                tbody {
                    @for r in runs {
                        tr id={ "run-" (r.run_id) } class="run-row" {
                            td class="when" {
                                // The start time opens the run's report.
                                a class="run-link" href={ "/admin/billing/runs/" (encoded(&r.run_id)) } {
                                    (date_time(r.started_at, tz))
                                }
                            }
                            td class="nowrap" { (r.period) }
                            td {
                                (if r.dry_run { "dry run" } else { "live" })
                                div class="muted" { (r.trigger) }
                            }
                            td class="run-status-cell" {
                                (run_badge(r.outcome))
                                @if let Some(e) = &r.error {
                                    div class="run-error" { (e) }
                                }
                            }
                            td class="num run-billed" {
                                @if r.dry_run && r.billed().unwrap_or(0) > 0 { "would bill " }
                                (billed_cell(r))
                            }
                            td class="num run-already-billed" { (n_cell(r.already_billed())) }
                            td class="num run-skipped" { (n_cell(r.skipped())) }
                            td class="num run-failed" { (n_cell(r.failed())) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RunForm {
    period: String,
    #[serde(default)]
    dry_run: Option<String>,
    /// The form's one-time token (see `run_token`).
    #[serde(default)]
    run_token: String,
    /// `yes` from the confirmation step of a live run.
    #[serde(default)]
    confirm: Option<String>,
}

pub(super) const NOT_STARTED: &str = "The run was not started";

/// Starts the monthly run from the page. A dry run starts at once; a live run first shows what a dry
/// run says it will bill, and starts from that page's Confirm button. Each form starts at most one run.
pub(super) async fn start_run(State(state): State<AppState>, posted: Posted<RunForm>) -> Response {
    let user = &posted.user;
    if let Err(r) = require_super_admin(user) {
        return r;
    }
    let form = &posted.form;
    let period = match crate::billing::start::closed_period(&state, form.period.trim())
        .map_err(ApiError::from)
    {
        Ok(p) => p,
        Err(e) => return admin_error(user, e.status, NOT_STARTED, &e.detail),
    };
    let Some(run_id) = run_id_of(&state, &form.run_token) else {
        return admin_error(
            user,
            StatusCode::BAD_REQUEST,
            NOT_STARTED,
            "This form is out of date. Reload the admin page and start the run again.",
        );
    };
    let already = || {
        let body = html! {
            div class="card narrow" id="run-already-started" {
                h1 { "This run was already started" }
                p {
                    "This form was sent before, and each form starts one run, so nothing new was started. "
                    "To run the period again, start it from the admin page."
                }
                p class="actions" {
                    a class="button" id="already-started-run"
                        href={ "/admin/billing/runs/" (encoded(&run_id)) } { "See the run" }
                    a class="button secondary" href="/admin/billing#runs" { "Back to the admin page" }
                }
            }
        };
        admin_page(
            user,
            StatusCode::CONFLICT,
            "Run already started",
            None,
            body,
        )
    };
    let dry_run = form.dry_run.as_deref() == Some("true");
    let actor = user.caller.actor();
    if dry_run || form.confirm.as_deref() == Some("yes") {
        return match crate::billing::start::start_once(&state, &actor, &run_id, period, dry_run)
            .await
            .map_err(ApiError::from)
        {
            Ok(Once::Started) if dry_run => Redirect::to("/admin/billing?done=run").into_response(),
            // The run's page shows it going, and reloads itself until it ends.
            Ok(Once::Started) => {
                Redirect::to(&format!("/admin/billing/runs/{}", encoded(&run_id))).into_response()
            }
            Ok(Once::AlreadyStarted) => already(),
            Err(e) => admin_error(user, e.status, NOT_STARTED, &e.detail),
        };
    }
    // A live run, not yet confirmed. A form already used (back, then resubmit) goes no further.
    match overview::run_detail(&state.db, &run_id).await {
        Ok(Some(_)) => return already(),
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    let previewed = async {
        let report = crate::billing::start::preview(&state, period).await?;
        let names = overview::tenant_names(&state.db).await?;
        Ok::<_, ApiError>((report, names))
    }
    .await;
    match previewed {
        Ok((report, names)) => confirm_run_page(user, &form.run_token, &report, &names),
        Err(e) => admin_error(user, e.status, NOT_STARTED, &e.detail),
    }
}

/// "Bill 12 organizations $1,234.56 for November 2026".
pub(super) fn bill_sentence(report: &RunReport) -> String {
    let n = report.billed.len();
    format!(
        "Bill {} organization{} {} for {}",
        count(n as i64),
        if n == 1 { "" } else { "s" },
        Cents(report.totals.billed_cents),
        report.period.long_name()
    )
}

pub(super) fn confirm_run_page(
    user: &PageUser,
    token: &str,
    report: &RunReport,
    names: &HashMap<String, String>,
) -> Response {
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let already = report
        .skipped
        .iter()
        .filter(|s| s.reason == overview::ALREADY_BILLED)
        .count();
    let skipped = report.skipped.len() - already;
    let nothing = report.billed.is_empty();
    let body = html! {
        div class="card" id="run-confirmation" {
            h1 { "Confirm the live run" }
            p class="sub" { "A dry run just now says what this run will invoice in Stripe." }
            p class="confirm-summary" id="run-confirm-summary" {
                @if nothing {
                    "Nothing to bill for " (report.period.long_name()) ": no organization has usage to invoice."
                } @else {
                    (bill_sentence(report))
                }
            }
            ul class="confirm-facts" {
                @if already > 0 {
                    li id="confirm-already-billed" {
                        (count(already as i64)) " already billed for the period: not billed again."
                    }
                }
                @if skipped > 0 {
                    li { (count(skipped as i64)) " skipped (demo, no subscription, no usage or trial only)." }
                }
                @if !report.failed.is_empty() {
                    li class="bad-text" id="confirm-failed" {
                        (count(report.failed.len() as i64))
                        " could not be checked and may fail again: "
                        (report.failed.iter().map(|f| format!("{}: {}", f.tenant_id, f.error)).collect::<Vec<_>>().join("; "))
                    }
                }
            }
            @if !nothing {
                (html::scroll_hint())
                div class="table-scroll" tabindex="0" aria-label="What the run will bill (scrolls sideways)" {
                    table id="run-confirm-table" {
                        thead { tr { th { "Organization" } th { "Lines" } th class="num" { "Amount" } } }
                        tbody {
                            @for b in &report.billed {
                                tr id={ "confirm-" (b.tenant_id) } {
                                    td { (name(&b.tenant_id)) div class="muted" { (b.tenant_id) } }
                                    td {
                                        @for l in &b.lines {
                                            div { (l.description) " " span class="muted" { (Cents(l.amount_cents)) } }
                                        }
                                    }
                                    td class="num" { (Cents(b.total_cents)) }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/admin/billing/runs" class="actions confirm-actions" id="run-confirm-form" {
                (html::csrf_field(&user.csrf))
                (run_token_field(token))
                input type="hidden" name="period" value=(report.period);
                input type="hidden" name="confirm" value="yes";
                button type="submit" id="run-confirm" {
                    @if nothing { "Confirm the run" } @else { "Confirm: " (bill_sentence(report)) }
                }
                a class="button secondary" id="run-cancel" href="/admin/billing#runs" { "Cancel" }
            }
        }
    };
    admin_page(user, StatusCode::OK, "Confirm the live run", None, body)
}

/// In words, why the run did not bill a tenant.
pub(super) fn skip_reason(reason: &str) -> &str {
    match reason {
        overview::ALREADY_BILLED => "Already billed: an earlier run invoiced the period",
        "demo" => "Demo account: exempt from billing charges",
        "no_subscription" => "No subscription: its usage waits until it subscribes",
        "no_usage" => "No usage to bill",
        "trial_only" => "All usage was in its free trial",
        other => other,
    }
}

/// One run: its status and error, its totals, and per organization what it billed, why it skipped it,
/// or why it failed.
pub(super) async fn run_page(
    State(state): State<AppState>,
    user: PageUser,
    Path(run_id): Path<String>,
) -> Response {
    if let Err(r) = require_super_admin(&user) {
        return r;
    }
    let (run, names) = match overview::run_detail(&state.db, &run_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return admin_error(
                &user,
                StatusCode::NOT_FOUND,
                "No such run",
                "There is no run with this id. The admin page lists the latest runs.",
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = state.settings.billing.timezone;
    // What the service itself attempted since on the invoices this run made.
    let invoices: Vec<String> = run
        .report
        .iter()
        .flat_map(|r| r.billed.iter().filter_map(|b| b.stripe_invoice_id.clone()))
        .collect();
    let attempts = match crate::billing::attempts::for_invoices(&state.db, &invoices).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let period_name = run
        .period
        .parse::<BillingPeriod>()
        .map(BillingPeriod::long_name)
        .unwrap_or_else(|_| run.period.clone());
    let heading = if run.dry_run {
        format!("Dry run for {period_name}")
    } else {
        format!("Run for {period_name}")
    };
    let running = run.outcome == RunOutcome::Running;
    let body = html! {
        p class="crumbs" { a href="/admin/billing#runs" { "← Revenue overview" } }
        h1 { (heading) }
        p class="sub" {
            "Started " (date_time(run.started_at, tz)) " by " (run.trigger)
            @if let Some(f) = run.finished_at { ", finished " (date_time(f, tz)) }
            ". " code { (run.run_id) }
        }
        section class="card" id="run-summary" aria-label="Outcome" {
            p { (run_badge(run.outcome)) }
            @if running {
                (notice("info", "run-running", &format!(
                    "The run is in progress: this page reloads every {REFRESH_SECS} seconds until it ends."
                )))
            }
            @if let Some(e) = &run.error {
                @let (kind, text) = if run.outcome == RunOutcome::Failed {
                    ("error", format!("The run failed: {e}."))
                } else {
                    ("warn", format!("Some organizations were not billed: {e}. A re-run of the period finishes them."))
                };
                (notice(kind, "run-error", &text))
            }
            @if run.report.is_some() {
                dl class="facts" {
                    dt { (if run.dry_run { "Would bill" } else { "Billed" }) }
                    dd id="run-billed" { (billed_cell(&run)) }
                    dt { "Already billed" }
                    dd id="run-already-billed" { (n_cell(run.already_billed())) }
                    dt { "Skipped" }
                    dd id="run-skipped" { (n_cell(run.skipped())) }
                    dt { "Failed" }
                    dd id="run-failed" { (n_cell(run.failed())) }
                }
            }
        }
        @if let Some(report) = &run.report {
            section class="card" aria-labelledby="run-tenants-h" {
                h2 id="run-tenants-h" { "Organizations" }
                @if report.billed.is_empty() && report.skipped.is_empty() && report.failed.is_empty() {
                    p class="muted" { "No organizations." }
                } @else {
                    (html::scroll_hint())
                    div class="table-scroll" tabindex="0" aria-label="Organizations of the run (scrolls sideways)" {
                        table id="run-tenants" {
                            thead {
                                tr {
                                    th { "Organization" }
                                    th { "Outcome" }
                                    th { "Detail" }
                                    th class="num" { "Amount" }
                                }
                            }
                            tbody {
                                @for f in &report.failed {
                                    tr id={ "tenant-" (f.tenant_id) } class="tenant-failed" {
                                        td { (name(&f.tenant_id)) div class="muted" { (f.tenant_id) } }
                                        td { span class="badge bad" { "failed" } }
                                        td class="tenant-error" { (f.error) }
                                        td class="num" { span class="muted" { "—" } }
                                    }
                                }
                                @for b in &report.billed {
                                    tr id={ "tenant-" (b.tenant_id) } class="tenant-billed" {
                                        td { (name(&b.tenant_id)) div class="muted" { (b.tenant_id) } }
                                        td {
                                            span class="badge good" { (if run.dry_run { "would bill" } else { "billed" }) }
                                            @if let Some(p) = &b.payment {
                                                " " (super::attempts::outcome_badge(p))
                                            }
                                            @if let Some(inv) = &b.stripe_invoice_id {
                                                div class="muted" { (inv) }
                                            }
                                        }
                                        td {
                                            ul class="lines" {
                                                @for l in &b.lines {
                                                    li { (l.description) " " span class="muted" { (Cents(l.amount_cents)) } }
                                                }
                                            }
                                        }
                                        td class="num" { (Cents(b.total_cents)) }
                                    }
                                }
                                @for s in &report.skipped {
                                    tr id={ "tenant-" (s.tenant_id) } class="tenant-skipped" {
                                        td { (name(&s.tenant_id)) div class="muted" { (s.tenant_id) } }
                                        td {
                                            @if s.reason == overview::ALREADY_BILLED {
                                                span class="badge info" { "already billed" }
                                            } @else {
                                                span class="badge neutral" { "skipped" }
                                            }
                                        }
                                        td class="skip-reason" { (skip_reason(&s.reason)) }
                                        td class="num" { span class="muted" { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        @if !run.dry_run {
            section class="card" id="run-attempts" aria-labelledby="run-attempts-h" {
                h2 id="run-attempts-h" { "Payment attempts since" }
                p class="sub" {
                    "The service's own attempts at this run's invoices: retries of a declined usage invoice \
                     (USAGE_RETRY_DAYS), and payments made at once after a change of payment method."
                }
                (super::attempts::attempts_table("run-attempts-table", &attempts, &names, tz, "None: every invoice was settled by the run's charge, or is left to the customer."))
            }
        }
    };
    admin_page(
        &user,
        StatusCode::OK,
        &heading,
        running.then_some(REFRESH_SECS),
        body,
    )
}
