//! `/admin/billing`: the super admin's revenue page: billing problems to act on (only when there are
//! any), figures, charts, organizations with the demo toggle, the monthly runs with the form that starts
//! one, and the audit log.

use super::chart::{self, Bar};
use super::html::{self, badge, count, date_time, money, notice};
use super::session::{error_page, require, PageUser, Posted};
use crate::auth::Role;
use crate::billing::health::{self, Health};
use crate::db::audit;
use crate::domain::{time, BillingPeriod, Cents};
use crate::error::ApiError;
use crate::overview::{self, Overview};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

const RUNS_SHOWN: i64 = 12;
const AUDIT_SHOWN: i64 = 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/billing", get(show))
        .route("/admin/billing/tenants/{tenant_id}/demo", post(set_demo))
        .route("/admin/billing/runs", post(start_run))
}

fn require_super_admin(user: &PageUser) -> Result<(), Response> {
    require(
        user,
        user.caller.role == Role::SuperAdmin,
        "This page is for the platform's super admins.",
    )
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
    let n = |v: Option<i64>| v.map(count).unwrap_or_else(|| "—".to_owned());

    let body = html! {
        h1 { "Revenue overview" }
        p class="sub" { "All organizations on the platform." }
        @if let Some(d) = &done {
            (notice("ok", "done", d))
        }
        (health_section(&health, tz, &csrf))
        (kpis(&o))
        (charts(&o))
        (organizations(&o, &csrf))

        // Monthly runs, and the form that starts one (the handler belongs to the run module).
        section class="card" id="runs" aria-labelledby="runs-h" {
            h2 id="runs-h" { "Monthly billing runs" }
            form method="post" action="/admin/billing/runs" class="row-form" id="run-form" {
                (csrf)
                div class="field" {
                    label for="run-period" { "Period" }
                    input type="text" id="run-period" name="period" value=(default_period)
                        pattern="[0-9]{4}-[0-9]{2}" placeholder="YYYY-MM" required
                        aria-describedby="run-period-hint";
                    div class="hint" id="run-period-hint" { "A calendar month, YYYY-MM." }
                }
                div class="field" {
                    label class="check" for="run-dry-run" {
                        input type="checkbox" id="run-dry-run" name="dry_run" value="true" checked;
                        " Dry run (bill nothing, show what would be billed)"
                    }
                }
                div class="field" { button type="submit" id="run-start" { "Start run" } }
            }
            @if runs.is_empty() {
                p class="muted" { "No runs yet." }
            } @else {
                div class="table-scroll" {
                    table id="runs-table" {
                        thead {
                            tr {
                                th { "Started" }
                                th { "Period" }
                                th { "Kind" }
                                th { "Status" }
                                th class="num" { "Billed" }
                                th class="num" { "Skipped" }
                                th class="num" { "Failed" }
                                th class="num" { "Amount" }
                            }
                        }
                        tbody {
                            @for r in &runs {
                                tr {
                                    td { (date_time(r.started_at, tz)) }
                                    td { (r.period) }
                                    td { (if r.dry_run { "dry run" } else { "live" }) " · " (r.trigger) }
                                    td { (badge(&r.status)) }
                                    td class="num" { (n(r.billed)) }
                                    td class="num" { (n(r.skipped)) }
                                    td class="num" { (n(r.failed)) }
                                    td class="num" {
                                        @match r.billed_cents {
                                            Some(c) => { (c) }
                                            None => { "—" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        section class="card" id="audit" aria-labelledby="audit-h" {
            h2 id="audit-h" { "Audit log" }
            @if log.is_empty() {
                p class="muted" { "No admin actions yet." }
            } @else {
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
                                    td { (date_time(e.at, tz)) }
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

    let label = user.label();
    super::html_response(
        StatusCode::OK,
        html::page(&user.chrome("Revenue overview", &label), body),
    )
}

/// Billing problems that leave usage uninvoiced until someone runs the period: claims without a ledger
/// entry and unfinished periods, each with what to run. Nothing at all when all is well.
fn health_section(h: &Health, tz: chrono_tz::Tz, csrf: &Markup) -> Markup {
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
    // One run form per period listed, the same live run the command starts.
    let run_button = |p: BillingPeriod| {
        html! {
            form method="post" action="/admin/billing/runs" class="inline" {
                (csrf)
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
                                    td { (date_time(c.claimed_at, tz)) }
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
    let tiles: [(&str, &str, String); 7] = [
        ("kpi-mrr", "MRR", o.mrr_cents.to_string()),
        ("kpi-active", "Active", count(o.active_subscriptions)),
        ("kpi-trialing", "Trialing", count(o.trialing_subscriptions)),
        ("kpi-past-due", "Past due", count(o.past_due_subscriptions)),
        (
            "kpi-usage-revenue",
            "Usage revenue this month",
            o.usage_revenue_cents.to_string(),
        ),
        (
            "kpi-failed",
            "Failed payments (30 days)",
            count(o.failed_payments_30d),
        ),
        ("kpi-churn", "Churned (30 days)", count(o.churned_30d)),
    ];
    html! {
        section class="kpis" aria-label="Key figures" {
            @for (id, label, value) in tiles {
                div class="kpi" {
                    div class="label" { (label) }
                    div class="value" id=(id) { (value) }
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

fn dollars_axis(cents: i64) -> String {
    // Whole dollars on the axis: the ticks are round numbers.
    let s = Cents(cents).to_string();
    s.strip_suffix(".00").map(str::to_owned).unwrap_or(s)
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
                    dollars_axis,
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
                    count,
                ))
                div class="legend" { span { span class="swatch s0" {} "Voice words (STT + TTS)" } }
                (chart::bars(
                    "chart-calls",
                    "Phone calls by month",
                    "Phone calls recorded each month.",
                    &calls,
                    10,
                    count,
                ))
                div class="legend" { span { span class="swatch s1" {} "Phone calls" } }
            }
        }
    }
}

fn organizations(o: &Overview, csrf: &Markup) -> Markup {
    html! {
        section class="card" id="organizations" aria-labelledby="orgs-h" {
            h2 id="orgs-h" { "Organizations" }
            @if o.organizations.is_empty() {
                p class="muted" { "No organizations yet." }
            } @else {
                div class="table-scroll" {
                    table {
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
                                (organization_row(org, csrf))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn organization_row(org: &overview::Organization, csrf: &Markup) -> Markup {
    let id: String = form_urlencoded::byte_serialize(org.tenant_id.as_bytes()).collect();
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
                form method="post" action={ "/admin/billing/tenants/" (id) "/demo" } class="inline" {
                    (csrf)
                    input type="hidden" name="is_demo" value=(to);
                    button type="submit" class="small secondary demo-toggle"
                        aria-label={ (label) ": " (org.name) } { (label) }
                }
            }
        }
    }
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
    let is_demo = match posted.form.is_demo.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return error_page(
                user,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose demo on or off.",
            )
        }
    };
    match crate::subscriptions::demo::set_demo(&state, &user.caller, &tenant_id, is_demo)
        .await
        .map_err(ApiError::from)
    {
        Ok((tenant, _)) => {
            let done = if is_demo { "demo_on" } else { "demo_off" };
            let tenant: String = form_urlencoded::byte_serialize(tenant.id.as_bytes()).collect();
            Redirect::to(&format!("/admin/billing?done={done}&tenant={tenant}")).into_response()
        }
        Err(e) => error_page(user, e.status, &e.detail),
    }
}

#[derive(Deserialize)]
struct RunForm {
    period: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// Starts the monthly run from the page, in the background; the history below shows its report.
async fn start_run(State(state): State<AppState>, posted: Posted<RunForm>) -> Response {
    let user = &posted.user;
    if let Err(r) = require_super_admin(user) {
        return r;
    }
    let period = match crate::billing::start::closed_period(&state, posted.form.period.trim())
        .map_err(ApiError::from)
    {
        Ok(p) => p,
        Err(e) => return error_page(user, e.status, &e.detail),
    };
    let dry_run = posted.form.dry_run.as_deref() == Some("true");
    match crate::billing::start::start_run(&state, &user.caller.actor(), period, dry_run, false)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => Redirect::to("/admin/billing?done=run").into_response(),
        Err(e) => error_page(user, e.status, &e.detail),
    }
}
