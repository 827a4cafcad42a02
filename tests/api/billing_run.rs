//! The monthly run against the Stripe simulator: exact lines, exactly one invoice per tenant and period,
//! whatever fails and however often it runs.

use crate::helpers::{spawn_app_with, stripe_lines, super_admin, token, Reply, Store, TestApp};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::domain::BillingPeriod;

store_tests!(
    bills_usage_exactly_and_a_rerun_changes_nothing,
    trial_demo_and_unsubscribed_tenants_are_skipped_and_usage_waits,
    late_usage_is_billed_by_the_next_run,
    dry_run_writes_nothing_to_stripe,
    server_errors_at_every_step_then_a_rerun_finishes,
    lost_replies_at_every_step_never_duplicate,
    runs_are_listed_and_async_runs_report,
    bad_run_requests_are_clear,
);

/// The last closed period and the one before it.
fn closed_periods() -> (BillingPeriod, BillingPeriod) {
    let current = BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC);
    (current.prev(), current.prev().prev())
}

/// Noon on the 10th of the period, UTC.
fn inside(p: BillingPeriod) -> String {
    format!("{p}-10T12:00:00Z")
}

async fn usage(app: &TestApp, events: Value) {
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &json!({"events": events}),
    )
    .await
    .expect(200);
}

async fn run(app: &TestApp, period: BillingPeriod, dry_run: bool) -> Reply {
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

fn billed<'a>(report: &'a Value, tenant: &str) -> &'a Value {
    report["billed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} not billed: {report}"))
}

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
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    standard_usage(&app, "acme", p).await;

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

    // Again, and again concurrently: the same report, no new invoice or line.
    let again = run(&app, p, false).await.expect(200).body;
    assert_eq!(again["billed"], first["billed"]);
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
    app.subscribe("trial", Some(60), "4242424242424242").await;
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
    assert_eq!(skip_reason(&report, "trial"), "trial_only");
    assert_eq!(skip_reason(&report, "demo"), "demo");
    assert_eq!(skip_reason(&report, "later"), "no_subscription");
    assert_eq!(skip_reason(&report, "quiet"), "no_usage");
    assert_eq!(report["totals"]["tenants_billed"], 0);

    // The unsubscribed tenant's usage waited: once it subscribes, a re-run bills it.
    app.subscribe("later", None, "4242424242424242").await;
    let report = run(&app, p, false).await.expect(200).body;
    assert_eq!(lines_of(billed(&report, "later")), expected());
    assert_eq!(skip_reason(&report, "trial"), "trial_only");
    assert_eq!(app.usage_invoices("trial", p).await.len(), 0);
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
    assert_eq!(
        lines_of(billed(&r, "acme")),
        vec![("Phone Calls: 1 call".to_owned(), 100)]
    );
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
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    standard_usage(&app, "acme", p).await;
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
    app.add_tenant("bystander").await;
    app.subscribe("bystander", None, "4242424242424242").await;
    standard_usage(&app, "bystander", p).await;
    assert_eq!(
        lines_of(billed(
            &run(&app, p, false).await.expect(200).body,
            "bystander"
        )),
        expected()
    );
    for step in STEPS {
        let t = format!("t-{step}");
        app.add_tenant(&t).await;
        app.subscribe(&t, None, "4242424242424242").await;
        standard_usage(&app, &t, p).await;
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
        // The failure of one tenant never stops the others.
        assert_eq!(lines_of(billed(&r, "bystander")), expected(), "{step}");
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
        app.add_tenant(&t).await;
        app.subscribe(&t, None, "4242424242424242").await;
        standard_usage(&app, &t, p).await;
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
        assert_eq!(lines_of(billed(&r, &t)), expected(), "{step}: {r}");
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
    assert_eq!(again["totals"]["tenants_billed"], 6, "{again}");
    for i in 0..6 {
        assert_eq!(a.usage_invoices(&format!("r{i}"), p).await.len(), 1);
    }
    assert_eq!(item_count(&a).await, 12);
}

store_tests!(rate_limits_and_timeouts_at_every_step);

/// 429s at each step are retried within the run; a call that times out (its work still done by Stripe
/// later) is retried with the same key or finished by the re-run. Either way: one invoice, one item per line.
async fn rate_limits_and_timeouts_at_every_step(app: TestApp) {
    let (p, _) = closed_periods();
    let slow = crate::helpers::spawn_replica_with(&app.database_url, &app.sim, |v| {
        v.insert("STRIPE_TIMEOUT_MS".into(), "250".into());
    })
    .await;
    for kind in ["429", "timeout"] {
        for step in STEPS {
            let t = format!("{kind}-{step}");
            app.add_tenant(&t).await;
            app.subscribe(&t, None, "4242424242424242").await;
            standard_usage(&app, &t, p).await;
            reach(&app, &t, p, step).await;
            clear_faults(&app).await;
            let path = step_path(&app, &t, p, step).await;
            if kind == "429" {
                // Two 429s in a row: within the client's two retries.
                fault(&app, &path, "429", "before", "2").await;
            } else {
                app.sim_post(
                    "/_sim/faults",
                    &[("path", &path), ("delay_ms", "700"), ("count", "1")],
                )
                .await
                .expect(200);
            }
            let first = run(&slow, p, false).await.expect(200).body;
            if kind == "429" {
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
            assert_eq!(lines_of(billed(&r, &t)), expected(), "{kind} {step}: {r}");
            app.assert_one_paid_usage_invoice(&t, p, 2, &format!("{kind} {step}"))
                .await;
        }
    }
    assert_eq!(app.stray_invoice_items().await, 0);
}

store_tests!(a_declined_charge_leaves_the_invoice_to_stripes_retries);

/// The card on file is declined: the invoice stays open (billed once, not failed), the failure is
/// recorded from the webhook, and once the customer fixes the card Stripe's retries collect it.
async fn a_declined_charge_leaves_the_invoice_to_stripes_retries(app: TestApp) {
    let (p, _) = closed_periods();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    standard_usage(&app, "acme", p).await;
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
    assert_eq!(again["billed"], r["billed"]);

    // The customer fixes the card; Stripe's next retry collects.
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", "4242424242424242")],
    )
    .await
    .expect(200);
    app.advance_clock(4 * 86_400).await;
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
