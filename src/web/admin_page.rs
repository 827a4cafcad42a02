//! `/admin/billing`: the super admin's revenue page: billing problems to act on (only when there are
//! any), figures, charts, organizations with their payment flags and the demo toggle, the monthly runs
//! with the form that starts one, and the audit log. Behind it: each run's page
//! (`/admin/billing/runs/{run_id}`), the failed payments behind the KPI, and the confirmation steps of a
//! live run and of the demo toggle.

use super::chart::{self, Bar, Scale};
use super::html::{self, badge, count, date_time, money, notice};
use super::session::{require, PageUser, Posted};
use crate::auth::Role;
use crate::billing::health::{self, Health};
use crate::billing::report::RunReport;
use crate::billing::start::Once;
use crate::db::audit;
use crate::domain::{time, BillingPeriod, Cents};
use crate::error::ApiError;
use crate::overview::{self, Overview, PaymentFlagReason, RunDetail, RunOutcome};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use maud::{html, Markup};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::HashMap;

const RUNS_SHOWN: i64 = 12;
const AUDIT_SHOWN: i64 = 30;
/// Seconds between reloads of a page that shows a running run (a meta refresh: the CSP allows no script).
const REFRESH_SECS: u32 = 3;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/billing", get(show))
        .route(
            "/admin/billing/tenants/{tenant_id}/demo",
            get(confirm_demo).post(set_demo),
        )
        .route("/admin/billing/runs", post(start_run))
        .route("/admin/billing/runs/{run_id}", get(run_page))
        .route("/admin/billing/failed-payments", get(failed_payments_page))
}

fn require_super_admin(user: &PageUser) -> Result<(), Response> {
    require(
        user,
        user.caller.role == Role::SuperAdmin,
        "This page is for the platform's super admins.",
    )
}

/// An error page of the admin pages: a heading that says what did not happen, what to fix, and the way
/// back to the admin page (not the tenant page the generic error page links).
fn admin_error(user: &PageUser, status: StatusCode, heading: &str, message: &str) -> Response {
    let body = html! {
        div class="card narrow" id="admin-error" {
            h1 { (heading) }
            p id="admin-error-message" { (message) }
            p { a href="/admin/billing" id="back-to-admin" { "Back to the admin page" } }
        }
    };
    admin_page(user, status, heading, None, body)
}

fn admin_page(
    user: &PageUser,
    status: StatusCode,
    title: &str,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    let label = user.label();
    super::html_response(
        status,
        html::page_refreshing(&user.chrome(title, &label), refresh, body),
    )
}

/// The one-time token of a run form: a fresh run id and its HMAC. The run starts under that id, so the
/// same form sent twice finds its run already recorded and starts nothing (see `start::start_once`);
/// the HMAC keeps the id ours, so a posted id cannot name or guess another.
fn run_token(state: &AppState, run_id: &str) -> String {
    format!(
        "{run_id}.{}",
        hex::encode(run_mac(state, run_id).finalize().into_bytes())
    )
}

fn run_mac(state: &AppState, run_id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.jwt_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"run-form\0");
    mac.update(run_id.as_bytes());
    mac
}

fn new_run_token(state: &AppState) -> String {
    run_token(state, &crate::billing::runs::new_run_id())
}

/// The run id of a token this service issued.
fn run_id_of(state: &AppState, token: &str) -> Option<String> {
    let (run_id, mac) = token.split_once('.')?;
    let bytes = hex::decode(mac).ok()?;
    run_mac(state, run_id).verify_slice(&bytes).ok()?;
    Some(run_id.to_owned())
}

fn run_token_field(token: &str) -> Markup {
    html! { input type="hidden" name="run_token" value=(token); }
}

/// `?tenant_id=` or a path segment: the id, percent-encoded.
fn encoded(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[derive(Deserialize)]
struct PageQuery {
    done: Option<String>,
    /// With `done=demo_on|demo_off`: the organization whose demo status changed.
    tenant: Option<String>,
}

/// What switching demo did, named: the organization, and whether Stripe's collection changed with it.
async fn demo_notice(state: &AppState, tenant: Option<&str>, is_demo: bool) -> Option<String> {
    let id = crate::domain::TenantId::parse(tenant?).ok()?;
    let t = crate::db::tenants::get(&state.db, &id).await.ok()??;
    let live = crate::db::subscriptions::live_for_tenant(&state.db, id.as_str())
        .await
        .ok()?;
    Some(match (is_demo, live) {
        (true, Some(sub)) => format!(
            "{} is now a demo account: exempt from billing charges. Stripe no longer collects its subscription {}: renewal invoices are voided until demo is switched off.",
            t.name, sub.stripe_subscription_id
        ),
        (true, None) => format!("{} is now a demo account: exempt from billing charges.", t.name),
        (false, Some(sub)) => format!(
            "{} is no longer a demo account: it is billed normally, and Stripe collects its subscription {} again from the next renewal.",
            t.name, sub.stripe_subscription_id
        ),
        (false, None) => format!("{} is no longer a demo account: it is billed normally.", t.name),
    })
}

async fn show(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Err(r) = require_super_admin(&user) {
        return r;
    }
    let done: Option<String> = match q.done.as_deref() {
        Some(d @ ("demo_on" | "demo_off")) => {
            let on = d == "demo_on";
            Some(
                demo_notice(&state, q.tenant.as_deref(), on)
                    .await
                    .unwrap_or_else(|| {
                        if on {
                            "The organization is now a demo account: exempt from billing charges."
                        } else {
                            "The organization is no longer a demo account: it is billed normally."
                        }
                        .to_owned()
                    }),
            )
        }
        Some("run") => Some(
            "The run has started; its report appears in the runs below when it finishes."
                .to_owned(),
        ),
        _ => None,
    };
    let loaded = async {
        let o = overview::now(&state).await?;
        let runs = overview::recent_runs(&state.db, RUNS_SHOWN).await?;
        let log = audit::recent(&state.db, AUDIT_SHOWN).await?;
        let health = health::check(&state.db, state.settings.billing.timezone, time::now()).await?;
        Ok::<_, ApiError>((o, runs, log, health))
    }
    .await;
    let (o, runs, log, health) = match loaded {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let tz = state.settings.billing.timezone;
    let csrf = html::csrf_field(&user.csrf);
    let default_period = BillingPeriod::containing(time::now(), tz).prev();
    let running = runs.iter().any(|r| r.outcome == RunOutcome::Running);

    let body = html! {
        h1 { "Revenue overview" }
        p class="sub" { "All organizations on the platform." }
        @if let Some(d) = &done {
            (notice("ok", "done", d))
        }
        (health_section(&state, &health, tz, &csrf))
        (kpis(&o))
        (charts(&o))
        (organizations(&o))

        // Monthly runs, and the form that starts one (the handler belongs to the run module).
        section class="card" id="runs" aria-labelledby="runs-h" {
            h2 id="runs-h" { "Monthly billing runs" }
            form method="post" action="/admin/billing/runs" class="row-form" id="run-form" {
                (csrf)
                (run_token_field(&new_run_token(&state)))
                div class="field" {
                    label for="run-period" { "Period" }
                    input type="text" id="run-period" name="period" value=(default_period)
                        pattern="[0-9]{4}-[0-9]{2}" placeholder="YYYY-MM" required
                        aria-describedby="run-period-hint";
                    div class="hint" id="run-period-hint" {
                        "A calendar month, YYYY-MM. A live run asks you to confirm what it will bill."
                    }
                }
                div class="field" {
                    label class="check" for="run-dry-run" {
                        input type="checkbox" id="run-dry-run" name="dry_run" value="true" checked;
                        " Dry run (bill nothing, show what would be billed)"
                    }
                }
                div class="field" { button type="submit" id="run-start" { "Start run" } }
            }
            @if running {
                p class="muted" id="runs-refreshing" {
                    "A run is in progress: this page reloads every " (REFRESH_SECS) " seconds until it ends."
                }
            }
            @if runs.is_empty() {
                p class="muted" { "No runs yet." }
            } @else {
                (runs_table(&runs, tz))
            }
        }

        section class="card" id="audit" aria-labelledby="audit-h" {
            h2 id="audit-h" { "Audit log" }
            @if log.is_empty() {
                p class="muted" { "No admin actions yet." }
            } @else {
                (html::scroll_hint())
                div class="table-scroll" {
                    table {
                        thead {
                            tr {
                                th { "When" }
                                th { "Who" }
                                th { "Action" }
                                th { "Organization" }
                                th { "Detail" }
                            }
                        }
                        tbody {
                            @for e in &log {
                                tr {
                                    td class="when" { (date_time(e.at, tz)) }
                                    td { (e.actor) }
                                    td { (e.action) }
                                    td { (e.tenant_id.as_deref().unwrap_or("—")) }
                                    td { (e.detail) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };

    admin_page(
        &user,
        StatusCode::OK,
        "Revenue overview",
        running.then_some(REFRESH_SECS),
        body,
    )
}

/// The badge of a run's outcome: four colours, so a run with failed tenants does not pass for done.
fn run_badge(outcome: RunOutcome) -> Markup {
    let (class, colour) = match outcome {
        RunOutcome::Running => ("run-running", "info"),
        RunOutcome::Completed => ("run-completed", "good"),
        RunOutcome::CompletedWithFailures => ("run-completed-with-failures", "warn"),
        RunOutcome::Failed => ("run-failed", "bad"),
    };
    html! { span class={ "badge run-status " (class) " " (colour) } { (outcome.label()) } }
}

/// What a run billed: "2 · $412.18", or a dash when it billed nothing new.
fn billed_cell(r: &RunDetail) -> Markup {
    match (r.billed(), r.billed_cents()) {
        (Some(n), Some(c)) if n > 0 => html! { (count(n as i64)) " · " (c) },
        (Some(_), _) => html! { span class="muted" { "0" } },
        _ => html! { span class="muted" { "—" } },
    }
}

fn n_cell(v: Option<usize>) -> Markup {
    match v {
        Some(0) => html! { span class="muted" { "0" } },
        Some(n) => html! { (count(n as i64)) },
        None => html! { span class="muted" { "—" } },
    }
}

fn runs_table(runs: &[RunDetail], tz: chrono_tz::Tz) -> Markup {
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

/// Billing problems that leave usage uninvoiced until someone runs the period: claims without a ledger
/// entry and unfinished periods, each with what to run. Nothing at all when all is well.
fn health_section(state: &AppState, h: &Health, tz: chrono_tz::Tz, csrf: &Markup) -> Markup {
    if h.is_healthy() {
        return html! {};
    }
    let claims = h.orphan_claims.len();
    let periods = h.unfinished_periods.len();
    let mut summary = Vec::new();
    if claims > 0 {
        summary.push(if claims == 1 {
            "1 usage claim has no invoice".to_owned()
        } else {
            format!("{claims} usage claims have no invoice")
        });
    }
    if periods > 0 {
        summary.push(if periods == 1 {
            "1 closed period is unfinished".to_owned()
        } else {
            format!("{periods} closed periods are unfinished")
        });
    }
    let summary = format!(
        "{}. Until each period listed is run, this usage is not invoiced. Runs are safe to repeat: nothing is billed twice.",
        summary.join(" and ")
    );
    // One run form per period listed, the same live run the command starts (after its confirmation).
    let run_button = |p: BillingPeriod| {
        html! {
            form method="post" action="/admin/billing/runs" class="inline" {
                (csrf)
                (run_token_field(&new_run_token(state)))
                input type="hidden" name="period" value=(p);
                button type="submit" class="small secondary" aria-label={ "Run " (p) " now" } { "Run now" }
            }
        }
    };
    html! {
        section class="card" id="billing-health" aria-labelledby="health-h" {
            h2 id="health-h" { "Billing needs attention" }
            (notice("error", "health-summary", &summary))
            @if claims > 0 {
                h3 { "Usage claimed without a ledger entry" }
                p class="muted" {
                    "A run claimed this usage for the period's invoice and stopped before recording it; \
                     only a run of that period invoices it."
                }
                (html::scroll_hint())
                div class="table-scroll" {
                    table id="orphan-claims" {
                        thead {
                            tr {
                                th { "Organization" }
                                th { "Period" }
                                th { "Claimed at" }
                                th { "To finish it" }
                                th { span class="muted" { "Run" } }
                            }
                        }
                        tbody {
                            @for c in &h.orphan_claims {
                                tr {
                                    td { (c.tenant_id) }
                                    td { (c.period) }
                                    td class="when" { (date_time(c.claimed_at, tz)) }
                                    td { code { (health::command(c.period)) } }
                                    td { (run_button(c.period)) }
                                }
                            }
                        }
                    }
                }
            }
            @if periods > 0 {
                h3 { "Unfinished periods" }
                p class="muted" { "Closed periods with tenants not yet invoiced. Run them oldest first." }
                (html::scroll_hint())
                div class="table-scroll" {
                    table id="unfinished-periods" {
                        thead {
                            tr {
                                th { "Period" }
                                th class="num" { "Tenants" }
                                th { "Why" }
                                th { "To finish it" }
                                th { span class="muted" { "Run" } }
                            }
                        }
                        tbody {
                            @for u in &h.unfinished_periods {
                                @let why = u
                                    .reasons
                                    .iter()
                                    .map(health::Reason::describe)
                                    .collect::<Vec<_>>()
                                    .join(". ");
                                tr {
                                    td { (u.period) " " span class="badge bad" { "unfinished" } }
                                    td class="num" {
                                        @if u.tenants == 0 { "—" } @else { (count(u.tenants as i64)) }
                                    }
                                    td { (why) }
                                    td { code { (health::command(u.period)) } }
                                    td { (run_button(u.period)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn kpis(o: &Overview) -> Markup {
    // The failed payments tile opens the list it counts.
    let tiles: [(&str, &str, String, Option<&str>); 7] = [
        ("kpi-mrr", "MRR", o.mrr_cents.to_string(), None),
        ("kpi-active", "Active", count(o.active_subscriptions), None),
        (
            "kpi-trialing",
            "Trialing",
            count(o.trialing_subscriptions),
            None,
        ),
        (
            "kpi-past-due",
            "Past due",
            count(o.past_due_subscriptions),
            None,
        ),
        (
            "kpi-usage-revenue",
            "Usage revenue this month",
            o.usage_revenue_cents.to_string(),
            None,
        ),
        (
            "kpi-failed",
            "Failed payments (30 days)",
            count(o.failed_payments_30d),
            Some("/admin/billing/failed-payments"),
        ),
        ("kpi-churn", "Churned (30 days)", count(o.churned_30d), None),
    ];
    html! {
        section class="kpis" aria-label="Key figures" {
            @for (id, label, value, link) in tiles {
                @match link {
                    Some(href) => {
                        a class="kpi kpi-link" href=(href) id={ (id) "-link" } {
                            div class="label" { (label) " " span aria-hidden="true" { "›" } }
                            div class="value" id=(id) { (value) }
                            div class="more" { "See the list" }
                        }
                    }
                    None => {
                        div class="kpi" {
                            div class="label" { (label) }
                            div class="value" id=(id) { (value) }
                        }
                    }
                }
            }
        }
    }
}

/// `Jan`, or `Jan 26` for January (so a year's turn is visible).
fn month_label(p: BillingPeriod) -> String {
    let name = p.first_day().format("%b").to_string();
    if p.month() == 1 {
        format!("{name} {:02}", p.year() % 100)
    } else {
        name
    }
}

fn charts(o: &Overview) -> Markup {
    let revenue: Vec<Bar> = o
        .monthly
        .iter()
        .map(|m| Bar {
            label: month_label(m.period),
            values: vec![m.subscription_revenue_cents.0, m.usage_revenue_cents.0],
        })
        .collect();
    let words: Vec<Bar> = o
        .monthly
        .iter()
        .map(|m| Bar {
            label: month_label(m.period),
            values: vec![m.words],
        })
        .collect();
    let calls: Vec<Bar> = o
        .monthly
        .iter()
        .map(|m| Bar {
            label: month_label(m.period),
            values: vec![0, m.calls],
        })
        .collect();
    let total: Cents = o
        .monthly
        .iter()
        .map(|m| m.subscription_revenue_cents + m.usage_revenue_cents)
        .sum();
    html! {
        div class="grid" {
            section class="card" aria-labelledby="rev-h" {
                h2 id="rev-h" { "Revenue, last 12 months" }
                (chart::bars(
                    "chart-revenue",
                    "Monthly revenue",
                    "Paid subscription and usage invoices by month, stacked.",
                    &revenue,
                    // At least $100 on the axis.
                    10_000,
                    Scale::Cents,
                ))
                div class="legend" {
                    span { span class="swatch s0" {} "Subscriptions" }
                    span { span class="swatch s1" {} "Usage" }
                    span { "Total " (total) }
                }
            }
            section class="card" aria-labelledby="use-h" {
                h2 id="use-h" { "Usage, last 12 months" }
                (chart::bars(
                    "chart-words",
                    "Voice words by month",
                    "Speech-to-text plus text-to-speech words recorded each month.",
                    &words,
                    10,
                    Scale::Count,
                ))
                div class="legend" { span { span class="swatch s0" {} "Voice words (STT + TTS)" } }
                (chart::bars(
                    "chart-calls",
                    "Phone calls by month",
                    "Phone calls recorded each month.",
                    &calls,
                    10,
                    Scale::Count,
                ))
                div class="legend" { span { span class="swatch s1" {} "Phone calls" } }
            }
        }
    }
}

fn organizations(o: &Overview) -> Markup {
    html! {
        section class="card" id="organizations" aria-labelledby="orgs-h" {
            h2 id="orgs-h" { "Organizations" }
            @if o.organizations.is_empty() {
                p class="muted" { "No organizations yet." }
            } @else {
                (html::scroll_hint())
                div class="table-scroll" tabindex="0" aria-label="Organizations (scrolls sideways)" {
                    table id="organizations-table" {
                        thead {
                            tr {
                                th { "Organization" }
                                th { "Status" }
                                th class="num" { "MRR" }
                                th class="num" { "Words this month" }
                                th class="num" { "Calls" }
                                th class="num" { "Upcoming usage" }
                                th { "Last invoice" }
                                th { "Demo" }
                            }
                        }
                        tbody {
                            @for org in &o.organizations {
                                (organization_row(org))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn organization_row(org: &overview::Organization) -> Markup {
    let id = encoded(&org.tenant_id);
    let u = org.usage_this_month;
    let (label, to) = if org.is_demo {
        ("End demo", "false")
    } else {
        ("Make demo", "true")
    };
    // The run skips a tenant without a subscription: its usage waits, it is not due on the 1st.
    let waits = org.subscription_status.is_none() && !org.is_demo && org.upcoming_usage_cents.0 > 0;
    html! {
        tr id={ "org-" (org.tenant_id) } {
            td {
                a href={ "/billing?tenant_id=" (id) } { (org.name) }
                div class="muted" { (org.subdomain) }
            }
            td {
                @match &org.subscription_status {
                    Some(s) => {
                        (badge(s))
                        @if org.cancel_at_period_end {
                            " " span class="muted" { "(cancels)" }
                        }
                    }
                    None => { span class="muted" { "none" } }
                }
                @if let Some(flag) = &org.payment_flag {
                    div class="payment-flag" {
                        span class="badge bad" { "payment failed" } " "
                        a href="/admin/billing/failed-payments" class="muted" {
                            @match flag.reason {
                                PaymentFlagReason::PastDue => { "renewal unpaid" }
                                PaymentFlagReason::PaymentFailed => { (flag.amount_due_cents) " unpaid" }
                            }
                        }
                    }
                }
            }
            td class="num org-mrr" { (org.mrr_cents) }
            td class="num" { (count(u.stt_words + u.tts_words)) }
            td class="num" { (count(u.phone_calls)) }
            td class="num" {
                (org.upcoming_usage_cents)
                @if waits { div class="muted" { "once subscribed" } }
            }
            td {
                @match &org.last_invoice {
                    Some(i) => {
                        @match i.hosted_invoice_url.as_deref().filter(|u| u.starts_with("http")) {
                            Some(u) => {
                                a href=(u) rel="noopener noreferrer" { (money(i.amount_due_cents.0)) }
                            }
                            None => { (money(i.amount_due_cents.0)) }
                        }
                        " " (badge(&i.status))
                    }
                    None => { span class="muted" { "—" } }
                }
            }
            td {
                @if org.is_demo {
                    span class="badge info" { "demo" } " "
                }
                // A link to the confirmation step: switching demo changes what Stripe collects.
                a class="button small secondary demo-toggle"
                    href={ "/admin/billing/tenants/" (id) "/demo?is_demo=" (to) }
                    aria-label={ (label) ": " (org.name) } { (label) }
            }
        }
    }
}

#[derive(Deserialize)]
struct DemoQuery {
    is_demo: Option<String>,
}

fn parse_is_demo(v: Option<&str>) -> Option<bool> {
    match v {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// The demo toggle's confirmation: what switching does to this organization's billing, then one button.
async fn confirm_demo(
    State(state): State<AppState>,
    user: PageUser,
    Path(tenant_id): Path<String>,
    Query(q): Query<DemoQuery>,
) -> Response {
    if let Err(r) = require_super_admin(&user) {
        return r;
    }
    let Some(is_demo) = parse_is_demo(q.is_demo.as_deref()) else {
        return admin_error(
            &user,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Demo status not changed",
            "Choose demo on or off: is_demo=true or is_demo=false.",
        );
    };
    let not_found = || {
        admin_error(
            &user,
            StatusCode::NOT_FOUND,
            "Demo status not changed",
            "No such organization.",
        )
    };
    let Ok(id) = crate::domain::TenantId::parse(&tenant_id) else {
        return not_found();
    };
    let loaded = async {
        let t = crate::db::tenants::get(&state.db, &id).await?;
        let live = crate::db::subscriptions::live_for_tenant(&state.db, id.as_str()).await?;
        Ok::<_, sqlx::Error>((t, live))
    }
    .await;
    let (tenant, live) = match loaded {
        Ok((Some(t), live)) => (t, live),
        Ok((None, _)) => return not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (heading, button) = if is_demo {
        (format!("Make {} a demo account?", tenant.name), "Make demo")
    } else {
        (format!("End demo for {}?", tenant.name), "End demo")
    };
    let path = format!("/admin/billing/tenants/{}/demo", encoded(&tenant.id));
    let csrf = html::csrf_field(&user.csrf);
    let body = html! {
        div class="card narrow" id="demo-confirmation" {
            h1 { (heading) }
            @if tenant.is_demo == is_demo {
                (notice("info", "demo-unchanged", &format!(
                    "{} is {} a demo account: confirming changes nothing.",
                    tenant.name,
                    if is_demo { "already" } else { "not" }
                )))
            }
            ul id="demo-consequences" {
                @if is_demo {
                    li { "The monthly run skips it, and its usage while it is a demo account is never billed." }
                    @match &live {
                        Some(sub) => li {
                            "Stripe stops collecting its subscription " code { (sub.stripe_subscription_id) }
                            ": renewal invoices are voided until demo is switched off."
                        },
                        None => li { "It has no live subscription, so nothing changes in Stripe." },
                    }
                    li { "Its people see “This is a demo account and is exempt from billing charges.”" }
                } @else {
                    li { "It is billed normally again: usage from now on is invoiced by the monthly run." }
                    @match &live {
                        Some(sub) => li {
                            "Stripe collects its subscription " code { (sub.stripe_subscription_id) }
                            " again from the next renewal."
                        },
                        None => li { "It has no live subscription: it pays once it subscribes." },
                    }
                }
            }
            form method="post" action=(path) class="actions" {
                (csrf)
                input type="hidden" name="is_demo" value=(if is_demo { "true" } else { "false" });
                button type="submit" id="demo-confirm" { (button) }
                a class="button secondary" id="demo-cancel"
                    href={ "/admin/billing#org-" (tenant.id) } { "Cancel" }
            }
        }
    };
    admin_page(&user, StatusCode::OK, &heading, None, body)
}

#[derive(Deserialize)]
struct DemoForm {
    is_demo: String,
}

async fn set_demo(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    posted: Posted<DemoForm>,
) -> Response {
    let user = &posted.user;
    if let Err(r) = require_super_admin(user) {
        return r;
    }
    let Some(is_demo) = parse_is_demo(Some(posted.form.is_demo.as_str())) else {
        return admin_error(
            user,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Demo status not changed",
            "Choose demo on or off.",
        );
    };
    match crate::subscriptions::demo::set_demo(&state, &user.caller, &tenant_id, is_demo)
        .await
        .map_err(ApiError::from)
    {
        Ok((tenant, _)) => {
            let done = if is_demo { "demo_on" } else { "demo_off" };
            let tenant = encoded(&tenant.id);
            Redirect::to(&format!("/admin/billing?done={done}&tenant={tenant}")).into_response()
        }
        Err(e) => admin_error(user, e.status, "Demo status not changed", &e.detail),
    }
}

#[derive(Deserialize)]
struct RunForm {
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

const NOT_STARTED: &str = "The run was not started";

/// Starts the monthly run from the page. A dry run starts at once; a live run first shows what a dry
/// run says it will bill, and starts from that page's Confirm button. Each form starts at most one run.
async fn start_run(State(state): State<AppState>, posted: Posted<RunForm>) -> Response {
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
fn bill_sentence(report: &RunReport) -> String {
    let n = report.billed.len();
    format!(
        "Bill {} organization{} {} for {}",
        count(n as i64),
        if n == 1 { "" } else { "s" },
        Cents(report.totals.billed_cents),
        report.period.long_name()
    )
}

fn confirm_run_page(
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
fn skip_reason(reason: &str) -> &str {
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
async fn run_page(
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
    admin_page(
        &user,
        StatusCode::OK,
        &heading,
        running.then_some(REFRESH_SECS),
        body,
    )
}

/// The failed payments behind the KPI: the same `invoice.payment_failed` events of the last 30 days.
async fn failed_payments_page(State(state): State<AppState>, user: PageUser) -> Response {
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
