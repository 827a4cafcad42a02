//! Billing health on `/admin/billing` and in `/metrics`: usage claimed without a ledger entry, and closed
//! periods left unfinished, each shown until the period is run.

use crate::admin_pages::run_token_of;
use crate::helpers::{super_admin, token, TestApp};
use crate::pages::{csrf_of, get, location, post, sign_in};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::domain::{BillingPeriod, TenantId};

store_tests!(
    a_claim_without_a_ledger_entry_shows_until_its_period_is_run,
    a_run_with_a_failed_tenant_leaves_its_period_unfinished_until_a_rerun,
    a_period_nobody_ran_is_unfinished_while_subscribed_usage_waits,
    a_demo_tenants_claim_shows_after_its_period_completed,
);

fn last_closed() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev()
}

async fn usage_in(app: &TestApp, tenant: &str, p: BillingPeriod) {
    let at = format!("{p}-10T12:00:00Z");
    let events = json!({"events": [
        {"event_id": format!("{tenant}-{p}-stt"), "tenant_id": tenant, "type": "stt_words", "quantity": 2_000, "occurred_at": at},
        {"event_id": format!("{tenant}-{p}-call"), "tenant_id": tenant, "type": "phone_calls", "quantity": 1, "occurred_at": at},
    ]});
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &events,
    )
    .await
    .expect(200);
}

async fn run(app: &TestApp, p: BillingPeriod) -> Value {
    app.post(
        "/api/admin/billing/runs",
        Some(&super_admin()),
        &json!({"period": p.to_string()}),
    )
    .await
    .expect(200)
    .body
}

async fn set_demo(app: &TestApp, tenant: &str, on: bool) {
    app.post(
        &format!("/api/billing/set-demo-status/{tenant}?is_demo={on}"),
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
}

/// The value of an unlabelled gauge in `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", None).await.expect(200).text;
    assert!(text.contains(&format!("# TYPE {name} gauge")), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no sample of {name}: {text}"))
        .parse()
        .unwrap()
}

async fn admin_page(app: &TestApp) -> String {
    let cookie = sign_in(app, &super_admin()).await;
    let p = get(app, "/admin/billing", &cookie).await;
    assert_eq!(p.status, 200, "{}", p.text);
    p.text
}

/// Nothing is shown, and both gauges are 0.
async fn assert_healthy(app: &TestApp, label: &str) {
    assert_eq!(gauge(app, "billing_orphan_claims").await, 0.0, "{label}");
    assert_eq!(
        gauge(app, "billing_unfinished_periods").await,
        0.0,
        "{label}"
    );
    let page = admin_page(app).await;
    assert!(!page.contains("id=\"billing-health\""), "{label}: {page}");
    assert!(
        !page.contains("thanotopolis-billing bill --period"),
        "{label}"
    );
}

async fn a_claim_without_a_ledger_entry_shows_until_its_period_is_run(app: TestApp) {
    let p = last_closed();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    assert_healthy(&app, "nothing yet").await;
    usage_in(&app, "acme", p).await;

    // The run's claim, and then a crash before the ledger entry.
    let tz = chrono_tz::UTC;
    let claimed = thanotopolis_billing::usage::billable::claim_unbilled(
        &app.db,
        &TenantId::parse("acme").unwrap(),
        p.bounds(tz).1,
        tz,
        &format!("invoice:acme:{p}"),
    )
    .await
    .unwrap();
    assert!(!claimed.is_empty(), "usage was claimed");

    assert_eq!(gauge(&app, "billing_orphan_claims").await, 1.0);
    // The usage is claimed, so nothing waits in the period itself: the claim is what to act on.
    assert_eq!(gauge(&app, "billing_unfinished_periods").await, 0.0);
    let page = admin_page(&app).await;
    assert!(page.contains("id=\"billing-health\""), "{page}");
    assert!(page.contains("role=\"alert\""));
    let table = &page[page.find("id=\"orphan-claims\"").expect("the claims table")..];
    let row = &table[..table.find("</tr></tbody>").unwrap()];
    assert!(row.contains("<td>acme</td>"), "{row}");
    assert!(row.contains(&format!("<td>{p}</td>")), "{row}");
    assert!(
        row.contains(&format!(
            "<code>thanotopolis-billing bill --period {p}</code>"
        )),
        "{row}"
    );
    // When it was claimed, as the page prints times.
    let day = chrono::Utc::now().format("%b %-d, %Y").to_string();
    assert!(row.contains(&day), "{row}");

    // The run of the period continues the claim: invoiced, and nothing left to show.
    let report = run(&app, p).await;
    assert_eq!(report["billed"][0]["tenant_id"], "acme", "{report}");
    app.assert_one_paid_usage_invoice("acme", p, 2, "after the run")
        .await;
    assert_healthy(&app, "after the run").await;
}

async fn a_run_with_a_failed_tenant_leaves_its_period_unfinished_until_a_rerun(app: TestApp) {
    let p = last_closed();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    usage_in(&app, "acme", p).await;

    // Stripe refuses every invoice item: the invoice stops part-way and the tenant fails.
    app.sim_post(
        "/_sim/faults",
        &[
            ("path", "/v1/invoiceitems"),
            ("status", "500"),
            ("count", "50"),
        ],
    )
    .await
    .expect(200);
    let report = run(&app, p).await;
    assert_eq!(report["failed"][0]["tenant_id"], "acme", "{report}");

    assert_eq!(gauge(&app, "billing_unfinished_periods").await, 1.0);
    assert_eq!(gauge(&app, "billing_orphan_claims").await, 0.0);
    let page = admin_page(&app).await;
    assert!(page.contains("id=\"billing-health\""), "{page}");
    assert!(!page.contains("id=\"orphan-claims\""));
    let table = &page[page
        .find("id=\"unfinished-periods\"")
        .expect("the periods table")..];
    let row = &table[..table.find("</tr></tbody>").unwrap()];
    assert!(row.contains(&format!("<td>{p} ")), "{row}");
    assert!(
        row.contains("<td class=\"num\">1</td>"),
        "one tenant: {row}"
    );
    assert!(
        row.contains("The last run could not bill 1 tenant"),
        "{row}"
    );
    assert!(row.contains("invoice stopped part-way"), "{row}");
    assert!(
        row.contains(&format!(
            "<code>thanotopolis-billing bill --period {p}</code>"
        )),
        "{row}"
    );

    app.client
        .delete(format!("{}/_sim/faults", app.sim))
        .send()
        .await
        .unwrap();
    // The row's button starts the live run of that period, as the command would, once confirmed (a
    // form of this session's page: each sign-in is a session of its own, with its own CSRF token).
    let cookie = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    let form = [
        ("period", p.to_string()),
        ("csrf", csrf_of(&page)),
        ("run_token", run_token_of(&page)),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confirm = post(&app, "/admin/billing/runs", &cookie, &form).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    assert!(
        confirm.text.contains("Confirm the live run"),
        "{}",
        confirm.text
    );
    let started = post(
        &app,
        "/admin/billing/runs",
        &cookie,
        &[form.as_slice(), &[("confirm", "yes")]].concat(),
    )
    .await;
    assert_eq!(started.status, 303, "{}", started.text);
    assert!(location(&started).starts_with("/admin/billing/runs/run_"));
    // It runs in the background: wait for the newest run to end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list = app
            .get("/api/admin/billing/runs", Some(&super_admin()))
            .await
            .expect(200)
            .body;
        let newest = &list["runs"][0];
        assert_eq!(newest["period"], p.to_string(), "{list}");
        if newest["status"] != "running" {
            assert_eq!(newest["status"], "completed", "{list}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the re-run did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.assert_one_paid_usage_invoice("acme", p, 2, "after the re-run")
        .await;
    assert_healthy(&app, "after the re-run").await;
}

async fn a_period_nobody_ran_is_unfinished_while_subscribed_usage_waits(app: TestApp) {
    // Two months back: over by more than a day whatever today is.
    let p = last_closed().prev();
    app.add_tenant("acme").await;
    app.add_tenant("solo").await;
    app.subscribe("acme", None, "4242424242424242").await;
    usage_in(&app, "acme", p).await;
    // Without a subscription the run would skip it: its usage waits and is no reason to run.
    usage_in(&app, "solo", p).await;

    assert_eq!(gauge(&app, "billing_unfinished_periods").await, 1.0);
    assert_eq!(gauge(&app, "billing_orphan_claims").await, 0.0);
    let page = admin_page(&app).await;
    let table = &page[page
        .find("id=\"unfinished-periods\"")
        .expect("the periods table")..];
    let row = &table[..table.find("</tr></tbody>").unwrap()];
    assert!(row.contains(&format!("<td>{p} ")), "{row}");
    assert!(row.contains("<td class=\"num\">1</td>"), "{row}");
    assert!(
        row.contains("Never run; 1 tenant with a subscription has usage waiting in it"),
        "{row}"
    );

    let report = run(&app, p).await;
    assert_eq!(report["billed"][0]["tenant_id"], "acme", "{report}");
    assert_healthy(&app, "after the run").await;
}

/// A run skips a demo tenant before it looks at its claims, so a claim left without a ledger entry stays
/// shown when its period completes, until a run after the demo ends invoices it.
async fn a_demo_tenants_claim_shows_after_its_period_completed(app: TestApp) {
    let p = last_closed();
    for t in ["acme", "beta"] {
        app.add_tenant(t).await;
        app.subscribe(t, None, "4242424242424242").await;
        usage_in(&app, t, p).await;
    }
    let tz = chrono_tz::UTC;
    thanotopolis_billing::usage::billable::claim_unbilled(
        &app.db,
        &TenantId::parse("acme").unwrap(),
        p.bounds(tz).1,
        tz,
        &format!("invoice:acme:{p}"),
    )
    .await
    .unwrap();
    set_demo(&app, "acme", true).await;

    let report = run(&app, p).await;
    assert_eq!(report["billed"][0]["tenant_id"], "beta", "{report}");
    assert_eq!(report["skipped"][0]["reason"], "demo", "{report}");
    assert_eq!(gauge(&app, "billing_orphan_claims").await, 1.0);
    assert_eq!(gauge(&app, "billing_unfinished_periods").await, 0.0);
    let page = admin_page(&app).await;
    let table = &page[page.find("id=\"orphan-claims\"").expect("the claims table")..];
    assert!(table.contains("<td>acme</td>"), "{table}");

    set_demo(&app, "acme", false).await;
    let report = run(&app, p).await;
    assert_eq!(report["billed"][0]["tenant_id"], "acme", "{report}");
    assert_healthy(&app, "after the demo ended and the period ran").await;
}
