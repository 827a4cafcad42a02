//! The monthly run against the Stripe simulator: exact lines, exactly one invoice per tenant and period,
//! whatever fails and however often it runs.

use crate::helpers::{spawn_app_with, stripe_lines, super_admin, token, Reply, Store, TestApp};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::domain::BillingPeriod;

store_tests!(
    bills_usage_exactly_and_a_rerun_changes_nothing,
    trial_demo_and_unsubscribed_tenants_are_skipped_and_usage_waits,
    a_new_trial_never_frees_earlier_usage,
    late_usage_is_billed_by_the_next_run,
    dry_run_writes_nothing_to_stripe,
    server_errors_at_every_step_then_a_rerun_finishes,
    lost_replies_at_every_step_never_duplicate,
    runs_are_listed_and_async_runs_report,
    bad_run_requests_are_clear,
);

/// The last closed period and the one before it.
pub(crate) fn closed_periods() -> (BillingPeriod, BillingPeriod) {
    let current = BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC);
    (current.prev(), current.prev().prev())
}

/// Noon on the 10th of the period, UTC.
pub(crate) fn inside(p: BillingPeriod) -> String {
    format!("{p}-10T12:00:00Z")
}

pub(crate) async fn usage(app: &TestApp, events: Value) {
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &json!({"events": events}),
    )
    .await
    .expect(200);
}

pub(crate) async fn run(app: &TestApp, period: BillingPeriod, dry_run: bool) -> Reply {
    app.post(
        "/api/admin/billing/runs",
        Some(&super_admin()),
        &json!({"period": period.to_string(), "dry_run": dry_run}),
    )
    .await
}

async fn item_count(app: &TestApp) -> usize {
    let list = app
        .sim_get("/v1/invoiceitems?limit=100")
        .await
        .expect(200)
        .body;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["metadata"]["billing_period"].is_string())
        .count()
}

use crate::helpers::billed_entry as billed;

fn skip_reason(report: &Value, tenant: &str) -> String {
    report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} not skipped: {report}"))["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A tenant subscribed with a good card, with the standard usage in `p`.
async fn paying_tenant_with_usage(app: &TestApp, tenant: &str, p: BillingPeriod) {
    app.add_tenant(tenant).await;
    app.subscribe(tenant, None, "4242424242424242").await;
    standard_usage(app, tenant, p).await;
}

async fn standard_usage(app: &TestApp, tenant: &str, p: BillingPeriod) {
    usage(
        app,
        json!([
            {"event_id": format!("{tenant}-stt"), "tenant_id": tenant, "type": "stt_words", "quantity": 10_000, "occurred_at": inside(p)},
            {"event_id": format!("{tenant}-tts"), "tenant_id": tenant, "type": "tts_words", "quantity": 2_345, "occurred_at": inside(p)},
            {"event_id": format!("{tenant}-call-1"), "tenant_id": tenant, "type": "phone_calls", "quantity": 1, "occurred_at": inside(p)},
            {"event_id": format!("{tenant}-call-2"), "tenant_id": tenant, "type": "phone_calls", "quantity": 1, "occurred_at": inside(p)},
        ]),
    )
    .await;
}

const EXPECTED_LINES: [(&str, i64); 2] = [
    ("Voice Usage: 12,345 words (STT: 10,000, TTS: 2,345)", 1_235),
    ("Phone Calls: 2 calls", 200),
];

/// As [`assert_already_billed`], in a run that also billed or failed other tenants.
fn assert_already_billed_among(report: &Value, tenant: &str) {
    assert_eq!(skip_reason(report, tenant), "already_billed", "{report}");
}

/// The report counts nothing for a tenant an earlier run invoiced: skipped as `already_billed`.
fn assert_already_billed(report: &Value, tenant: &str) {
    assert_eq!(skip_reason(report, tenant), "already_billed", "{report}");
    assert!(
        report["billed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["tenant_id"] != tenant),
        "{report}"
    );
    assert_eq!(report["totals"]["tenants_billed"], 0, "{report}");
    assert_eq!(report["totals"]["billed_cents"], 0, "{report}");
}

fn lines_of(v: &Value) -> Vec<(String, i64)> {
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap().to_owned(),
                l["amount_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn expected() -> Vec<(String, i64)> {
    EXPECTED_LINES
        .iter()
        .map(|(d, a)| (d.to_string(), *a))
        .collect()
}

async fn bills_usage_exactly_and_a_rerun_changes_nothing(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "acme", p).await;

    let first = run(&app, p, false).await.expect(200).body;
    let b = billed(&first, "acme");
    assert_eq!(lines_of(b), expected());
    assert_eq!(b["total_cents"], 1_435);
    assert_eq!(first["totals"]["billed_cents"], 1_435);
    assert_eq!(first["failed"].as_array().unwrap().len(), 0, "{first}");

    let invoices = app.usage_invoices("acme", p).await;
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    assert_eq!(inv["id"], b["stripe_invoice_id"]);
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_due"], 1_435);
    assert_eq!(stripe_lines(inv), expected());
    // The invoice the customer receives says which month it bills, in words.
    assert_eq!(
        inv["description"],
        format!(
            "Thanotopolis voice usage and phone calls for {}",
            p.long_name()
        )
    );

    // Again, dry, and again concurrently: reported as already billed, no new invoice or line.
    let again = run(&app, p, false).await.expect(200).body;
    assert_already_billed(&again, "acme");
    let dry = run(&app, p, true).await.expect(200).body;
    assert_already_billed(&dry, "acme");
    let (a, b2) = tokio::join!(run(&app, p, false), run(&app, p, false));
    for r in [a, b2] {
        assert!(r.status == 200 || r.status == 409, "{}", r.text);
    }
    assert_eq!(app.usage_invoices("acme", p).await.len(), 1);
    assert_eq!(item_count(&app).await, 2);
    app.settle().await;
    // The webhook brought the paid usage invoice into our copy.
    let ours = app
        .get("/api/billing/invoices", Some(&token("acme", "member")))
        .await
        .expect(200)
        .body;
    let usage_inv = ours["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["billing_period"] == p.to_string())
        .cloned();
    let usage_inv = usage_inv.expect("usage invoice mirrored");
    assert_eq!(usage_inv["amount_paid_cents"], 1_435);
    assert_eq!(lines_of(&usage_inv), expected());
}

async fn trial_demo_and_unsubscribed_tenants_are_skipped_and_usage_waits(app: TestApp) {
    let (p, _) = closed_periods();
    for t in ["trial", "demo", "later", "quiet"] {
        app.add_tenant(t).await;
    }
    app.subscribe("trial", Some(30), "4242424242424242").await;
    app.subscribe("quiet", None, "4242424242424242").await;
    standard_usage(&app, "trial", p).await;
    standard_usage(&app, "demo", p).await;
    standard_usage(&app, "later", p).await;
    app.post(
        "/api/billing/set-demo-status/demo?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);

    let report = run(&app, p, false).await.expect(200).body;
    // A trial frees only its own window: last month's usage, from before the trial started, is billed.
    assert_eq!(lines_of(billed(&report, "trial")), expected());
    assert_eq!(skip_reason(&report, "demo"), "demo");
    assert_eq!(skip_reason(&report, "later"), "no_subscription");
    assert_eq!(skip_reason(&report, "quiet"), "no_usage");
    assert_eq!(report["totals"]["tenants_billed"], 1);

    // The unsubscribed tenant's usage waited: once it subscribes, a re-run bills it.
    app.subscribe("later", None, "4242424242424242").await;
    let report = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&report, "later")), expected());
    assert_eq!(app.usage_invoices("trial", p).await.len(), 1);
}

/// The attack the trial rule closes: usage left unbilled after a cancellation, then a new checkout
/// with the longest trial there is. The old usage is billed, and only a first subscription may have a
/// trial at all.
async fn a_new_trial_never_frees_earlier_usage(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "acme", p).await;
    app.post(
        "/api/billing/cancel-subscription",
        Some(&token("acme", "org_admin")),
        &json!({}),
    )
    .await
    .expect(200);
    app.advance_clock(40 * 86_400).await;
    app.settle().await;
    assert!(app.live_subscription("acme").await.is_none(), "ended");

    // The organization admin may not ask for a trial again, nor for more than MAX_TRIAL_DAYS at all.
    app.add_tenant("fresh").await;
    for (tenant, days, says) in [
        ("acme", 7, "first subscription"),
        ("fresh", 31, "at most 30 days"),
    ] {
        let body = json!({"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "trial_days": days});
        let r = app
            .post(
                "/api/billing/create-checkout-session",
                Some(&token(tenant, "org_admin")),
                &body,
            )
            .await
            .expect(422);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{tenant}: {detail}");
    }

    // A super admin may grant a first subscription two years of trial; it frees only its own window,
    // so the month of usage from before it is billed.
    standard_usage(&app, "fresh", p).await;
    let s = app
        .post(
            "/api/billing/create-checkout-session?tenant_id=fresh",
            Some(&super_admin()),
            &json!({"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", "trial_days": 730}),
        )
        .await
        .expect(200);
    let id = s.body["session_id"].as_str().unwrap();
    app.sim_post(&format!("/_sim/checkout/sessions/{id}/complete"), &[])
        .await
        .expect(200);
    app.settle().await;
    assert_eq!(
        app.live_subscription("fresh").await.unwrap().status,
        "trialing"
    );

    app.subscribe("acme", None, "4242424242424242").await;
    let report = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&report, "acme")), expected());
    assert_eq!(lines_of(billed(&report, "fresh")), expected());
}

async fn late_usage_is_billed_by_the_next_run(app: TestApp) {
    let (p, earlier) = closed_periods();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    usage(&app, json!([{"event_id": "e1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)}])).await;
    let r = run(&app, earlier, false).await.expect(200).body;
    assert_eq!(
        lines_of(billed(&r, "acme")),
        vec![("Phone Calls: 1 call".to_owned(), 100)]
    );
    // Usage for the billed period arrives late, with the next period's own usage.
    usage(
        &app,
        json!([
            {"event_id": "late-1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)},
            {"event_id": "late-2", "tenant_id": "acme", "type": "stt_words", "quantity": 290, "occurred_at": inside(earlier)},
            {"event_id": "own-1", "tenant_id": "acme", "type": "tts_words", "quantity": 1_000, "occurred_at": inside(p)},
            {"event_id": "e1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)},
        ]),
    )
    .await;
    // The earlier period's run is done and stays as it was.
    let r = run(&app, earlier, false).await.expect(200).body;
    assert_already_billed(&r, "acme");
    let r = run(&app, p, false).await.expect(200).body;
    assert_eq!(
        lines_of(billed(&r, "acme")),
        vec![
            (
                "Voice Usage: 1,000 words (STT: 0, TTS: 1,000)".to_owned(),
                100
            ),
            (
                format!("Late usage for {earlier}: Voice Usage: 290 words (STT: 290, TTS: 0)"),
                29
            ),
            (
                format!("Late usage for {earlier}: Phone Calls: 1 call"),
                100
            ),
        ]
    );
    assert_eq!(app.usage_invoices("acme", p).await.len(), 1);
    assert_eq!(app.usage_invoices("acme", earlier).await.len(), 1);
}

async fn dry_run_writes_nothing_to_stripe(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "acme", p).await;
    // Without the customer's invoice default (as before a webhook brought it), a live run would set
    // it; a dry run must not.
    let customer = thanotopolis_billing::db::customers::customer_of(&app.db, "acme")
        .await
        .unwrap()
        .unwrap();
    app.sim_post(
        &format!("/v1/customers/{customer}"),
        &[("invoice_settings[default_payment_method]", "")],
    )
    .await
    .expect(200);
    app.sim_post("/_sim/stats/reset", &[]).await.expect(200);
    let dry = run(&app, p, true).await.expect(200).body;
    assert_eq!(dry["dry_run"], true);
    let b = billed(&dry, "acme");
    assert!(b["stripe_invoice_id"].is_null());
    assert_eq!(lines_of(b), expected());
    let stats = app.sim_get("/_sim/stats").await.body;
    let writes: u64 = stats["by_route"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("POST"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(writes, 0, "{stats}");
    // The real run bills the same.
    let real = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&real, "acme")), expected());
}

async fn fault(app: &TestApp, path: &str, status: &str, when: &str, count: &str) {
    app.sim_post(
        "/_sim/faults",
        &[
            ("path", path),
            ("status", status),
            ("when", when),
            ("count", count),
        ],
    )
    .await
    .expect(200);
}

async fn clear_faults(app: &TestApp) {
    app.client
        .delete(format!("{}/_sim/faults", app.sim))
        .send()
        .await
        .unwrap();
}

/// The Stripe path each write of the run goes to, for the tenant's invoice (known once created).
async fn step_path(app: &TestApp, tenant: &str, p: BillingPeriod, step: &str) -> String {
    match step {
        "create" => "/v1/invoices".to_owned(),
        "items" => "/v1/invoiceitems".to_owned(),
        _ => {
            let invs = app.usage_invoices(tenant, p).await;
            format!("/v1/invoices/{}/{step}", invs[0]["id"].as_str().unwrap())
        }
    }
}

/// Brings the tenant's invoice to just before `step`: for finalize and pay, a first run stops at the items.
async fn reach(app: &TestApp, tenant: &str, p: BillingPeriod, step: &str) {
    if matches!(step, "finalize" | "pay") {
        fault(app, "/v1/invoiceitems", "500", "before", "50").await;
        run(app, p, false).await.expect(200);
        clear_faults(app).await;
    }
    if step == "pay" {
        let path = step_path(app, tenant, p, "pay").await;
        // Let finalize through, stop at pay.
        fault(app, &path, "500", "before", "50").await;
    }
}

const STEPS: [&str; 4] = ["create", "items", "finalize", "pay"];

/// For each Stripe write of the run, a persistent failure fails that tenant (others go on), and a re-run
/// after the failure clears finishes the invoice without duplicating anything.
async fn server_errors_at_every_step_then_a_rerun_finishes(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "bystander", p).await;
    assert_eq!(
        lines_of(billed(
            &run(&app, p, false).await.expect(200).body,
            "bystander"
        )),
        expected()
    );
    for step in STEPS {
        let t = format!("t-{step}");
        paying_tenant_with_usage(&app, &t, p).await;
        reach(&app, &t, p, step).await;
        if step != "pay" {
            let path = step_path(&app, &t, p, step).await;
            fault(&app, &path, "500", "before", "50").await;
        }
        let r = run(&app, p, false).await.expect(200).body;
        assert!(
            r["failed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["tenant_id"] == t.as_str()),
            "{step}: {r}"
        );
        // The failure of one tenant never stops the others (billed earlier: reported as such).
        assert_already_billed_among(&r, "bystander");
        clear_faults(&app).await;
        let r = run(&app, p, false).await.expect(200).body;
        assert_eq!(lines_of(billed(&r, &t)), expected(), "{step}: {r}");
        app.assert_one_paid_usage_invoice(&t, p, 2, step).await;
    }
}

/// Stripe applies each write but the reply is lost (a crash or timeout at that line), and the re-run
/// happens where Stripe no longer replays our idempotency keys (another API key stands in for the key
/// window having passed): it must find what was done instead of doing it again.
async fn lost_replies_at_every_step_never_duplicate(app: TestApp) {
    let (p, _) = closed_periods();
    let later = crate::helpers::spawn_replica_with(&app.database_url, &app.sim, |v| {
        v.insert(
            "STRIPE_SECRET_KEY".into(),
            "sk_test_after_the_key_window".into(),
        );
    })
    .await;
    for step in STEPS {
        let t = format!("lost-{step}");
        paying_tenant_with_usage(&app, &t, p).await;
        reach(&app, &t, p, step).await;
        if step == "pay" {
            clear_faults(&app).await;
        }
        let path = step_path(&app, &t, p, step).await;
        fault(&app, &path, "500", "after", "50").await;
        let r = run(&app, p, false).await.expect(200).body;
        clear_faults(&app).await;
        let first_failed = r["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["tenant_id"] == t.as_str());
        let r = run(&later, p, false).await.expect(200).body;
        if first_failed {
            assert_eq!(lines_of(billed(&r, &t)), expected(), "{step}: {r}");
        } else {
            // The client's retry under the same key got Stripe's saved answer: billed by the first run.
            assert_already_billed(&r, &t);
        }
        let label = format!("{step} (first run failed: {first_failed})");
        app.assert_one_paid_usage_invoice(&t, p, 2, &label).await;
    }
    // No item was left pending outside its invoice, to land on some other invoice later.
    assert_eq!(app.stray_invoice_items().await, 0);
}

async fn runs_are_listed_and_async_runs_report(app: TestApp) {
    let (p, _) = closed_periods();
    let r = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": p.to_string(), "wait": false}),
        )
        .await
        .expect(202);
    let run_id = r.body["run_id"].as_str().unwrap().to_owned();
    let mut status = String::new();
    for _ in 0..200 {
        let r = app
            .get(
                &format!("/api/admin/billing/runs/{run_id}"),
                Some(&super_admin()),
            )
            .await
            .expect(200);
        status = r.body["status"].as_str().unwrap().to_owned();
        if status != "running" {
            assert_eq!(r.body["report"]["period"], p.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "completed");
    let list = app
        .get("/api/admin/billing/runs", Some(&super_admin()))
        .await
        .expect(200);
    assert_eq!(list.body["runs"][0]["run_id"], run_id.as_str());
    app.get("/api/admin/billing/runs/run_nope", Some(&super_admin()))
        .await
        .expect(404);
    app.get("/api/admin/billing/runs", Some(&token("acme", "admin")))
        .await
        .expect(403);
}

async fn bad_run_requests_are_clear(app: TestApp) {
    let r = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": "2026-13"}),
        )
        .await
        .expect(422);
    assert!(
        r.body["detail"].as_str().unwrap().contains("YYYY-MM"),
        "{}",
        r.text
    );
    let current = BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC);
    let r = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": current.to_string()}),
        )
        .await
        .expect(422);
    assert_eq!(r.body["code"], "period_not_closed");
    app.post(
        "/api/admin/billing/runs",
        Some(&token("x", "org_admin")),
        &json!({"period": "2026-01"}),
    )
    .await
    .expect(403);
}

/// Two replicas on one database run the same period at once: one invoice per tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_bill_each_tenant_once() {
    let (p, _) = closed_periods();
    let a = spawn_app_with(Store::Postgres, |_| {}).await;
    // The second replica shares the first one's database and Stripe.
    let (url, sim) = (a.database_url.clone(), a.sim.clone());
    let b = crate::helpers::spawn_replica_with(&url, &sim, |_| {}).await;
    for i in 0..6 {
        let t = format!("r{i}");
        a.add_tenant(&t).await;
        a.subscribe(&t, None, "4242424242424242").await;
        standard_usage(&a, &t, p).await;
    }
    let (ra, rb) = tokio::join!(run(&a, p, false), run(&b, p, false));
    let ok: Vec<&Reply> = [&ra, &rb].into_iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty(), "{} / {}", ra.text, rb.text);
    // Whichever lost the lease now finds everything done.
    let again = run(&b, p, false).await.expect(200).body;
    for i in 0..6 {
        assert_already_billed(&again, &format!("r{i}"));
    }
    for i in 0..6 {
        assert_eq!(a.usage_invoices(&format!("r{i}"), p).await.len(), 1);
    }
    assert_eq!(item_count(&a).await, 12);
}

store_tests!(rate_limits_and_timeouts_at_every_step);

/// 429s and `lock_timeout` 409s at each step are retried within the run; a call that times out after
/// `STRIPE_TIMEOUT_MS` (its work still done by Stripe later) is retried with the same key or finished by
/// the re-run. Either way: one invoice, one item per line.
async fn rate_limits_and_timeouts_at_every_step(app: TestApp) {
    let (p, _) = closed_periods();
    let slow = crate::helpers::spawn_replica_with(&app.database_url, &app.sim, |v| {
        v.insert("STRIPE_TIMEOUT_MS".into(), "250".into());
    })
    .await;
    for kind in ["429", "409", "timeout"] {
        for step in STEPS {
            let t = format!("{kind}-{step}");
            paying_tenant_with_usage(&app, &t, p).await;
            reach(&app, &t, p, step).await;
            clear_faults(&app).await;
            let path = step_path(&app, &t, p, step).await;
            if kind != "timeout" {
                // Two in a row: within the client's two retries.
                fault(&app, &path, kind, "before", "2").await;
            } else {
                app.sim_post(
                    "/_sim/faults",
                    &[("path", &path), ("delay_ms", "700"), ("count", "1")],
                )
                .await
                .expect(200);
            }
            let first = run(&slow, p, false).await.expect(200).body;
            let first_billed = first["billed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["tenant_id"] == t.as_str());
            if kind != "timeout" {
                assert_eq!(
                    lines_of(billed(&first, &t)),
                    expected(),
                    "{kind} {step}: {first}"
                );
            }
            // Let a delayed request finish in Stripe before the re-run looks.
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            clear_faults(&app).await;
            let r = run(&slow, p, false).await.expect(200).body;
            if first_billed {
                assert_already_billed(&r, &t);
            } else {
                assert_eq!(lines_of(billed(&r, &t)), expected(), "{kind} {step}: {r}");
            }
            app.assert_one_paid_usage_invoice(&t, p, 2, &format!("{kind} {step}"))
                .await;
        }
    }
    assert_eq!(app.stray_invoice_items().await, 0);
    // The slow calls were abandoned after STRIPE_TIMEOUT_MS, not waited out.
    let metrics = slow.get("/metrics", None).await.expect(200).text;
    assert!(metrics.contains("outcome=\"timeout\""), "{metrics}");
}

store_tests!(a_declined_charge_leaves_the_invoice_open_until_a_new_card_pays_it);

/// The card on file is declined: the invoice stays open (billed once, not failed), the failure is
/// recorded from the webhook, and once the customer fixes the card the open invoice is paid with it
/// (Stripe does not retry a one-off invoice unless its dashboard says so; the service pays it at once).
async fn a_declined_charge_leaves_the_invoice_open_until_a_new_card_pays_it(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "acme", p).await;
    let customer = thanotopolis_billing::db::customers::customer_of(&app.db, "acme")
        .await
        .unwrap()
        .unwrap();
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", "4000000000000341")],
    )
    .await
    .expect(200);

    let r = run(&app, p, false).await.expect(200).body;
    let b = billed(&r, "acme");
    assert_eq!(lines_of(b), expected());
    let invs = app.usage_invoices("acme", p).await;
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0]["status"], "open");
    app.settle().await;
    assert!(
        app.webhook_events_recorded("invoice.payment_failed", 1)
            .await
            >= 1
    );
    // A re-run does not charge again or bill again.
    let again = run(&app, p, false).await.expect(200).body;
    assert_already_billed(&again, "acme");

    // The customer fixes the card: the open invoice is paid with it at once.
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", "4242424242424242")],
    )
    .await
    .expect(200);
    app.settle().await;
    let invs = app.usage_invoices("acme", p).await;
    assert_eq!(invs[0]["status"], "paid", "{}", invs[0]);
    let ours = app
        .get(
            "/api/billing/invoices?limit=50",
            Some(&token("acme", "member")),
        )
        .await
        .expect(200)
        .body;
    let usage_inv = ours["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["billing_period"] == p.to_string())
        .cloned()
        .unwrap();
    assert_eq!(usage_inv["status"], "paid");
}

store_tests!(the_card_given_at_checkout_pays_the_usage_invoice);

/// Checkout saves the card on the subscription, not as the customer's invoice default; the usage
/// invoice (which belongs to no subscription) is still charged to it, and after the card is changed in
/// the portal, to the new one.
async fn the_card_given_at_checkout_pays_the_usage_invoice(app: TestApp) {
    let (p, earlier) = closed_periods();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let sub = app.live_subscription("acme").await.unwrap();
    let stripe_sub = app
        .sim_get(&format!("/v1/subscriptions/{}", sub.stripe_subscription_id))
        .await
        .expect(200)
        .body;
    let checkout_pm = stripe_sub["default_payment_method"]
        .as_str()
        .unwrap()
        .to_owned();

    usage(&app, json!([{"event_id": "call-1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)}])).await;
    let r = run(&app, earlier, false).await.expect(200).body;
    assert_eq!(
        lines_of(billed(&r, "acme")),
        vec![("Phone Calls: 1 call".to_owned(), 100)]
    );
    app.assert_one_paid_usage_invoice("acme", earlier, 1, "paid from the checkout card")
        .await;
    let customer = thanotopolis_billing::db::customers::customer_of(&app.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let c = app
        .sim_get(&format!("/v1/customers/{customer}"))
        .await
        .expect(200)
        .body;
    assert_eq!(
        c["invoice_settings"]["default_payment_method"],
        checkout_pm.as_str()
    );

    // The customer replaces the card in the portal with one that declines: the next usage invoice is
    // charged to the new card (and so stays open), not to the card from checkout.
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", "4000000000000341")],
    )
    .await
    .expect(200);
    app.settle().await;
    standard_usage(&app, "acme", p).await;
    run(&app, p, false).await.expect(200);
    let invs = app.usage_invoices("acme", p).await;
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0]["status"], "open", "{}", invs[0]);
}

store_tests!(an_invoice_settled_otherwise_before_the_charge_is_not_reported_paid);

/// The run stops before charging (Stripe down at `/pay`); meanwhile one tenant's invoice is voided and
/// another's marked uncollectible. The run that finishes them reports each as what it became, and
/// counts neither as paid.
async fn an_invoice_settled_otherwise_before_the_charge_is_not_reported_paid(app: TestApp) {
    let (p, _) = closed_periods();
    let tenants = [("voided", "void"), ("written-off", "mark_uncollectible")];
    for (t, _) in tenants {
        paying_tenant_with_usage(&app, t, p).await;
    }
    // A first run stops at the items; the next one finalizes, then stops at `/pay`.
    fault(&app, "/v1/invoiceitems", "500", "before", "50").await;
    run(&app, p, false).await.expect(200);
    clear_faults(&app).await;
    for (t, _) in tenants {
        let path = step_path(&app, t, p, "pay").await;
        fault(&app, &path, "500", "before", "50").await;
    }
    let first = run(&app, p, false).await.expect(200).body;
    assert_eq!(first["failed"].as_array().unwrap().len(), 2, "{first}");
    clear_faults(&app).await;
    for (t, action) in tenants {
        let invs = app.usage_invoices(t, p).await;
        assert_eq!(invs[0]["status"], "open", "{t}");
        let id = invs[0]["id"].as_str().unwrap();
        app.sim_post(&format!("/v1/invoices/{id}/{action}"), &[])
            .await
            .expect(200);
    }
    let r = run(&app, p, false).await.expect(200).body;
    assert_eq!(billed(&r, "voided")["payment"], "void", "{r}");
    assert_eq!(billed(&r, "written-off")["payment"], "uncollectible", "{r}");
    assert_eq!(r["totals"]["paid_cents"], 0, "{r}");
    assert_eq!(r["totals"]["unpaid_cents"], 0, "{r}");
    assert_eq!(
        r["totals"]["billed_cents"],
        2 * expected().iter().map(|(_, c)| c).sum::<i64>()
    );
}

store_tests!(voice_is_rounded_once_per_period);

async fn stt(app: &TestApp, id: &str, tenant: &str, words: i64, p: BillingPeriod) {
    usage(app, json!([{"event_id": id, "tenant_id": tenant, "type": "stt_words", "quantity": words, "occurred_at": inside(p)}])).await;
}

/// The dashboard's upcoming late charges for `p`: (words, voice cents).
async fn upcoming_late_voice(app: &TestApp, tenant: &str, p: BillingPeriod) -> (i64, i64) {
    let d = app
        .get("/api/billing/dashboard", Some(&token(tenant, "member")))
        .await
        .expect(200)
        .body;
    let late = d["upcoming_charges"]["late"].as_array().unwrap();
    let l = late
        .iter()
        .find(|l| l["period"] == p.to_string())
        .unwrap_or_else(|| panic!("no late charges for {p}: {d}"));
    (
        l["voice_words_count"].as_i64().unwrap(),
        l["voice_usage_cents"].as_i64().unwrap(),
    )
}

/// What Stripe holds of period `p`'s voice usage for `tenant`, over the invoices of the given runs.
async fn voice_billed_in_stripe(
    app: &TestApp,
    tenant: &str,
    p: BillingPeriod,
    runs: &[BillingPeriod],
) -> i64 {
    let mut cents = 0;
    for run_period in runs {
        for inv in app.usage_invoices(tenant, run_period).await {
            for (description, amount) in stripe_lines(&inv) {
                let own = *run_period == p && description.starts_with("Voice Usage: ");
                if own || description.starts_with(&format!("Late usage for {p}: Voice Usage: ")) {
                    cents += amount;
                }
            }
        }
    }
    cents
}

/// A period billed in slices (its own run, then late usage on later runs) is rounded once on its whole
/// total: a late voice line bills the whole rounded less what was billed, or nothing; a slice that
/// billed nothing still counts; the dashboard shows what the run then bills.
async fn voice_is_rounded_once_per_period(app: TestApp) {
    let (p, earlier) = closed_periods();
    let first = earlier.prev();
    for t in ["acme", "beta", "gamma"] {
        app.add_tenant(t).await;
        app.subscribe(t, None, "4242424242424242").await;
    }
    stt(&app, "acme-1", "acme", 1_005, first).await;
    stt(&app, "beta-1", "beta", 1_004, first).await;
    stt(&app, "gamma-1", "gamma", 1_000, first).await;
    let r = run(&app, first, false).await.expect(200).body;
    let voice = |words: &str, cents| {
        vec![(
            format!("Voice Usage: {words} words (STT: {words}, TTS: 0)"),
            cents,
        )]
    };
    assert_eq!(lines_of(billed(&r, "acme")), voice("1,005", 101));
    assert_eq!(lines_of(billed(&r, "beta")), voice("1,004", 100));
    assert_eq!(lines_of(billed(&r, "gamma")), voice("1,000", 100));

    // Late words for `first`: 1,010 words cost 101, already billed; 1,006 cost 101, one more cent;
    // 1,004 cost 100, nothing more.
    stt(&app, "acme-2", "acme", 5, first).await;
    usage(&app, json!([{"event_id": "acme-call", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)}])).await;
    stt(&app, "beta-2", "beta", 2, first).await;
    stt(&app, "gamma-2", "gamma", 4, first).await;
    assert_eq!(upcoming_late_voice(&app, "acme", first).await, (5, 0));
    assert_eq!(upcoming_late_voice(&app, "beta", first).await, (2, 1));
    assert_eq!(upcoming_late_voice(&app, "gamma", first).await, (4, 0));
    let late = |words: &str, cents| {
        vec![(
            format!("Late usage for {first}: Voice Usage: {words} words (STT: {words}, TTS: 0)"),
            cents,
        )]
    };
    let dry = run(&app, earlier, true).await.expect(200).body;
    let r = run(&app, earlier, false).await.expect(200).body;
    for report in [&dry, &r] {
        assert_eq!(
            lines_of(billed(report, "acme")),
            vec![("Phone Calls: 1 call".to_owned(), 100)]
        );
        assert_eq!(lines_of(billed(report, "beta")), late("2", 1));
        assert_eq!(skip_reason(report, "gamma"), "no_usage");
    }

    // Gamma's 4 words billed nothing but count: 1 more word makes 1,005, which costs 101.
    stt(&app, "gamma-3", "gamma", 1, first).await;
    assert_eq!(upcoming_late_voice(&app, "gamma", first).await, (1, 1));
    let r = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&r, "gamma")), late("1", 1));

    // Each tenant's voice for `first` is its whole total rounded once, in Stripe and in the ledger.
    let runs = [first, earlier, p];
    for (tenant, cents) in [("acme", 101), ("beta", 101), ("gamma", 101)] {
        assert_eq!(
            voice_billed_in_stripe(&app, tenant, first, &runs).await,
            cents,
            "{tenant}"
        );
        let ledger = crate::helpers::scalar(
            &app.db,
            &format!(
                "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM billing_ledger_lines
                 WHERE tenant_id = '{tenant}' AND usage_period = '{first}' AND kind = 'voice'"
            ),
        )
        .await;
        assert_eq!(ledger, cents, "{tenant}");
    }
    // Nothing is left to bill for `first`.
    for tenant in ["acme", "beta", "gamma"] {
        let d = app
            .get("/api/billing/dashboard", Some(&token(tenant, "member")))
            .await
            .expect(200)
            .body;
        assert_eq!(d["upcoming_charges"]["late"], json!([]), "{tenant}: {d}");
    }
}

store_tests!(
    a_saved_server_error_is_not_replayed_forever,
    the_scheduler_never_runs_past_an_unfinished_period,
    a_runner_that_lost_its_lease_stops_writing,
);

/// Stripe saves a 5xx under its idempotency key and gives it back to every retry with that key for a
/// day. At each step, applied or not: the tenant fails once, and the re-run looks in Stripe and goes on
/// under fresh keys, ending with one paid invoice of two items.
async fn a_saved_server_error_is_not_replayed_forever(app: TestApp) {
    let (p, _) = closed_periods();
    for when in ["saved", "saved_after"] {
        for step in STEPS {
            let t = format!("{}-{step}", when.replace('_', "-"));
            paying_tenant_with_usage(&app, &t, p).await;
            reach(&app, &t, p, step).await;
            clear_faults(&app).await;
            let path = step_path(&app, &t, p, step).await;
            fault(&app, &path, "500", when, "1").await;
            let first = run(&app, p, false).await.expect(200).body;
            assert!(
                first["failed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["tenant_id"] == t.as_str()),
                "{when} {step}: {first}"
            );
            clear_faults(&app).await;
            let r = run(&app, p, false).await.expect(200).body;
            assert_eq!(lines_of(billed(&r, &t)), expected(), "{when} {step}: {r}");
            app.assert_one_paid_usage_invoice(&t, p, 2, &format!("{when} {step}"))
                .await;
        }
    }
    assert_eq!(app.stray_invoice_items().await, 0);
}

/// October unfinished (Stripe fails): November is not run, so October's usage never lands on
/// November's invoice as late usage. Once Stripe answers, both run, oldest first.
async fn the_scheduler_never_runs_past_an_unfinished_period(app: TestApp) {
    use thanotopolis_billing::billing::scheduler;
    let (p, earlier) = closed_periods();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    usage(&app, json!([
        {"event_id": "oct", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(earlier)},
        {"event_id": "nov", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": inside(p)},
    ]))
    .await;
    let state = app.state();
    fault(&app, "/v1/invoices", "500", "before", "50").await;
    let ran = scheduler::tick(&state).await.unwrap();
    assert_eq!(
        ran,
        vec![(earlier, false)],
        "stops at the unfinished period"
    );
    let runs = app
        .get("/api/admin/billing/runs", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["period"] != p.to_string()),
        "{runs}"
    );

    clear_faults(&app).await;
    let ran = scheduler::tick(&state).await.unwrap();
    assert_eq!(ran, vec![(earlier, true), (p, true)]);
    for (period, id) in [(earlier, "oct"), (p, "nov")] {
        let invs = app.usage_invoices("acme", period).await;
        assert_eq!(invs.len(), 1, "{id}");
        assert_eq!(
            stripe_lines(&invs[0]),
            vec![("Phone Calls: 1 call".to_owned(), 100)],
            "{id}: no late usage on the later invoice"
        );
    }
}

/// Another runner takes the period over while this one waits on Stripe: after that call this runner
/// makes no further Stripe write (the tenant fails with the reason), and a later run finishes the
/// invoice without a duplicate.
async fn a_runner_that_lost_its_lease_stops_writing(app: TestApp) {
    let (p, _) = closed_periods();
    let short = crate::helpers::spawn_replica_with(&app.database_url, &app.sim, |v| {
        v.insert("BILLING_LEASE_SECONDS".into(), "1".into());
    })
    .await;
    paying_tenant_with_usage(&app, "acme", p).await;
    app.sim_post(
        "/_sim/faults",
        &[
            ("path", "/v1/invoices"),
            ("method", "POST"),
            ("delay_ms", "1500"),
            ("count", "1"),
        ],
    )
    .await
    .expect(200);
    let db = app.db.clone();
    let period = p.to_string();
    let taker = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        thanotopolis_billing::with_pool!(&db, pool => {
            sqlx::query("UPDATE billing_period_leases SET holder = 'another-runner' WHERE period = $1")
                .bind(&period)
                .execute(pool)
                .await
                .unwrap();
        });
    });
    let r = run(&short, p, false).await.expect(200).body;
    taker.await.unwrap();
    let failed = r["failed"].as_array().unwrap();
    assert!(
        failed.iter().any(|f| f["tenant_id"] == "acme"
            && f["error"]
                .as_str()
                .unwrap()
                .contains("lost the period's lease")),
        "{r}"
    );
    // The invoice was created (the call in flight), but nothing was written after it.
    let invs = app.usage_invoices("acme", p).await;
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0]["lines"]["data"].as_array().unwrap().len(), 0);
    assert_eq!(invs[0]["status"], "draft");

    // The other runner's lease runs out; a run finishes the invoice.
    thanotopolis_billing::with_pool!(&app.db, pool => {
        sqlx::query("DELETE FROM billing_period_leases").execute(pool).await.unwrap();
    });
    let r = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&r, "acme")), expected(), "{r}");
    app.assert_one_paid_usage_invoice("acme", p, 2, "after the lease was lost")
        .await;
}

store_tests!(a_tenant_stripe_will_not_charge_is_billed_and_the_period_completes);

/// A customer made by hand in Stripe with a trial subscription and no payment method (as a deployment
/// moved over may have): Stripe refuses `/pay` for good (400 `resource_missing`). Its invoice is issued
/// and stays open, the tenant is billed with the charge `refused`, and the period completes, so the
/// scheduler goes on to later periods; a repeat bills nothing more.
async fn a_tenant_stripe_will_not_charge_is_billed_and_the_period_completes(app: TestApp) {
    let (p, _) = closed_periods();
    paying_tenant_with_usage(&app, "paying", p).await;
    app.add_tenant("cardless").await;
    let price = app.plan_price_id().await;
    let customer = app
        .sim_create(
            "/v1/customers",
            &[("name", "Cardless"), ("metadata[tenant_id]", "cardless")],
        )
        .await;
    app.sim_create(
        "/v1/subscriptions",
        &[
            ("customer", customer.as_str()),
            ("items[0][price]", price.as_str()),
            ("trial_period_days", "30"),
        ],
    )
    .await;
    thanotopolis_billing::ops::stripe_sync::run(&app.state(), None)
        .await
        .unwrap();
    standard_usage(&app, "cardless", p).await;

    let r = run(&app, p, false).await.expect(200).body;
    assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
    let cardless = billed(&r, "cardless");
    assert_eq!(cardless["payment"], "refused", "{r}");
    assert_eq!(lines_of(cardless), expected());
    assert_eq!(billed(&r, "paying")["payment"], "paid", "{r}");
    let total: i64 = expected().iter().map(|(_, c)| c).sum();
    assert_eq!(r["totals"]["unpaid_cents"], total, "{r}");
    assert_eq!(r["totals"]["paid_cents"], total, "{r}");
    let invs = app.usage_invoices("cardless", p).await;
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0]["status"], "open");

    let due = thanotopolis_billing::billing::scheduler::due_periods(&app.state())
        .await
        .unwrap();
    assert!(!due.contains(&p), "{p} still due: {due:?}");
    let again = run(&app, p, false).await.expect(200).body;
    assert_already_billed_among(&again, "cardless");
    assert_eq!(app.usage_invoices("cardless", p).await.len(), 1);
}
