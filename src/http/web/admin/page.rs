//! The admin page itself: billing problems to act on, figures, charts, organizations, runs, audit log.

use super::runs::{new_run_token, run_token_field, runs_table};
use super::*;
use crate::billing::health::{self, Health};
use crate::domain::{time, BillingPeriod, Cents};
use crate::http::error::ApiError;
use crate::http::web::chart::{self, Bar, Scale};
use crate::http::web::html::{self, badge, count, date_time, money, notice};
use crate::http::web::session::PageUser;
use crate::overview::{self, Overview, PaymentFlagReason, RunOutcome};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct PageQuery {
    done: Option<String>,
    /// With `done=demo_on|demo_off`: the organization whose demo status changed.
    tenant: Option<String>,
}

/// What switching demo did, named: the organization, and whether Stripe's collection changed with it.
pub(super) async fn demo_notice(
    state: &AppState,
    tenant: Option<&str>,
    is_demo: bool,
) -> Option<String> {
    let id = crate::domain::TenantId::parse(tenant?).ok()?;
    let (t, live) = crate::tenants::with_live_subscription(&state.db, &id)
        .await
        .ok()?;
    let t = t?;
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

pub(super) async fn show(
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
        let log = crate::tenants::audit_trail(&state.db, AUDIT_SHOWN).await?;
        let health = health::check(&state.db, state.settings.billing.timezone, time::now()).await?;
        let attempts = crate::billing::attempts::recent(&state.db, ATTEMPTS_SHOWN).await?;
        Ok::<_, ApiError>((o, runs, log, health, attempts))
    }
    .await;
    let (o, runs, log, health, attempts) = match loaded {
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

        section class="card" id="collection-attempts" aria-labelledby="attempts-h" {
            h2 id="attempts-h" { "Payment attempts" }
            p class="sub" {
                "What the service charged itself: open invoices paid at once after an organization's \
                 payment method changed, and the usage invoices' retries (USAGE_RETRY_DAYS after the \
                 first failure)."
            }
            @let names: std::collections::HashMap<String, String> = o
                .organizations
                .iter()
                .map(|org| (org.tenant_id.clone(), org.name.clone()))
                .collect();
            (super::attempts::attempts_table("attempts-table", &attempts, &names, tz, "No payment attempts yet."))
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

/// Billing problems that leave usage uninvoiced until someone runs the period: claims without a ledger
/// entry and unfinished periods, each with what to run. Nothing at all when all is well.
pub(super) fn health_section(
    state: &AppState,
    h: &Health,
    tz: chrono_tz::Tz,
    csrf: &Markup,
) -> Markup {
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

pub(super) fn kpis(o: &Overview) -> Markup {
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
pub(super) fn month_label(p: BillingPeriod) -> String {
    let name = p.first_day().format("%b").to_string();
    if p.month() == 1 {
        format!("{name} {:02}", p.year() % 100)
    } else {
        name
    }
}

pub(super) fn charts(o: &Overview) -> Markup {
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

pub(super) fn organizations(o: &Overview) -> Markup {
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

pub(super) fn organization_row(org: &overview::Organization) -> Markup {
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
                        @if flag.reason == PaymentFlagReason::ActionRequired {
                            span class="badge warn action-required" { "confirmation needed" } " "
                        } @else {
                            span class="badge bad" { "payment failed" } " "
                        }
                        a href="/admin/billing/failed-payments" class="muted" {
                            @match flag.reason {
                                PaymentFlagReason::PastDue => { "renewal unpaid" }
                                PaymentFlagReason::PaymentFailed => { (flag.amount_due_cents) " unpaid" }
                                PaymentFlagReason::ActionRequired => {
                                    "the bank asks the customer to confirm " (flag.amount_due_cents)
                                }
                            }
                        }
                        @for stopped in &flag.retries_stopped {
                            div class="retries-stopped" {
                                span class="badge bad" { "retries stopped" } " "
                                span class="muted" {
                                    (stopped.stripe_invoice_id) ": " (stopped.reason)
                                    ". A new payment method, or the customer, pays it."
                                }
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
