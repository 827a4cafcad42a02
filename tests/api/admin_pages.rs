//! The super admin's pages over HTTP: a live run confirmed before it starts and started once per form,
//! run reports, the run form's errors, failed payments behind the KPI, the demo toggle's confirmation.

use crate::helpers::{super_admin, token, TestApp};
use crate::pages::{csrf_of, get, location, post, sign_in};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::domain::BillingPeriod;

store_tests!(
    a_live_run_is_confirmed_first_and_each_form_starts_one_run,
    run_form_errors_say_what_to_fix_and_lead_back,
    failed_payments_are_listed_behind_the_kpi_and_flag_the_organization,
    the_demo_toggle_asks_first,
    pages_reload_themselves_while_a_run_runs,
);

/// The one-time token of the first run form on a page.
pub(crate) fn run_token_of(html: &str) -> String {
    let at = html
        .find("name=\"run_token\" value=\"")
        .expect("a run form")
        + 24;
    html[at..].split('"').next().unwrap().to_owned()
}

fn last_closed() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev()
}

async fn runs(app: &TestApp) -> Vec<Value> {
    app.get("/api/admin/billing/runs", Some(&super_admin()))
        .await
        .expect(200)
        .body["runs"]
        .as_array()
        .unwrap()
        .clone()
}

async fn ended(app: &TestApp, run_id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run = app
            .get(
                &format!("/api/admin/billing/runs/{run_id}"),
                Some(&super_admin()),
            )
            .await
            .expect(200)
            .body;
        if run["status"] != "running" {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "{run_id} did not end");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A live run of `p` through the page: the form, then its confirmation; returns the run's id.
async fn confirmed_run(app: &TestApp, cookie: &str, p: BillingPeriod) -> (String, String) {
    let page = get(app, "/admin/billing", cookie).await.text;
    let form = [
        ("period", p.to_string()),
        ("csrf", csrf_of(&page)),
        ("run_token", run_token_of(&page)),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confirm = post(app, "/admin/billing/runs", cookie, &form).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let started = post(
        app,
        "/admin/billing/runs",
        cookie,
        &[form.as_slice(), &[("confirm", "yes")]].concat(),
    )
    .await;
    assert_eq!(started.status, 303, "{}", started.text);
    let run_id = location(&started)
        .strip_prefix("/admin/billing/runs/")
        .unwrap()
        .to_owned();
    (run_id, confirm.text)
}

async fn a_live_run_is_confirmed_first_and_each_form_starts_one_run(app: TestApp) {
    let p = last_closed();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    // 12,345 words ($12.35) and 2 calls ($2.00).
    let at = format!("{p}-10T12:00:00Z");
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &json!({"events": [
            {"event_id": "w", "tenant_id": "acme", "type": "stt_words", "quantity": 12_345, "occurred_at": at},
            {"event_id": "c1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": at},
            {"event_id": "c2", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": at},
        ]}),
    )
    .await
    .expect(200);
    let cookie = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    let form = [
        ("period", p.to_string()),
        ("csrf", csrf_of(&page)),
        ("run_token", run_token_of(&page)),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The live run's form shows what a dry run says, and starts nothing.
    let confirm = post(&app, "/admin/billing/runs", &cookie, &form).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    assert!(
        confirm
            .text
            .contains(&format!("Bill 1 organization $14.35 for {}", p.long_name())),
        "{}",
        confirm.text
    );
    assert!(confirm.text.contains("id=\"run-confirm\""));
    assert!(runs(&app).await.is_empty(), "nothing started yet");

    // Confirmed: started, and its page is where the browser goes.
    let confirmed = [form.as_slice(), &[("confirm", "yes")]].concat();
    let started = post(&app, "/admin/billing/runs", &cookie, &confirmed).await;
    assert_eq!(started.status, 303, "{}", started.text);
    let run_id = location(&started)
        .strip_prefix("/admin/billing/runs/")
        .unwrap()
        .to_owned();
    // The same confirmation again (a double click), and the first form again (back, resubmit): refused.
    for again in [&confirmed, &form] {
        let refused = post(&app, "/admin/billing/runs", &cookie, again).await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert!(refused.text.contains("This run was already started"));
        assert!(refused
            .text
            .contains(&format!("/admin/billing/runs/{run_id}")));
    }
    // A token this service did not sign starts nothing either.
    let forged = [
        &form[..2],
        &[("run_token", "run_0123.abcd"), ("confirm", "yes")],
    ]
    .concat();
    assert_eq!(
        post(&app, "/admin/billing/runs", &cookie, &forged)
            .await
            .status,
        400
    );
    let run = ended(&app, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(runs(&app).await.len(), 1, "one run");

    let detail = get(&app, &format!("/admin/billing/runs/{run_id}"), &cookie).await;
    assert_eq!(detail.status, 200);
    assert!(detail.text.contains("run-completed"), "{}", detail.text);
    assert!(detail.text.contains("Voice Usage: 12,345 words"));
    assert!(
        !detail.text.contains("http-equiv=\"refresh\""),
        "ended: no reload"
    );

    // A second run of the period (a new form): nothing new, so "already billed", not billed again.
    let (second, confirm) = confirmed_run(&app, &cookie, p).await;
    assert!(
        confirm.contains("Nothing to bill for") && confirm.contains("1 already billed"),
        "{confirm}"
    );
    ended(&app, &second).await;
    let detail = get(&app, &format!("/admin/billing/runs/{second}"), &cookie).await;
    assert!(detail.text.contains("already billed"), "{}", detail.text);
    let page = get(&app, "/admin/billing", &cookie).await.text;
    let row = &page[page.find(&format!("id=\"run-{second}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("<td class=\"num run-already-billed\">1</td>"),
        "{row}"
    );
    assert!(
        row.contains("run-billed\"><span class=\"muted\">0</span>"),
        "{row}"
    );
    assert_eq!(
        get(&app, "/admin/billing/runs/run_nope", &cookie)
            .await
            .status,
        404
    );
}

async fn run_form_errors_say_what_to_fix_and_lead_back(app: TestApp) {
    let cookie = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    let current = last_closed().next().to_string();
    for (period, why) in [
        ("2026-13", "write it as YYYY-MM"),
        (current.as_str(), "has not ended yet"),
    ] {
        let p = post(
            &app,
            "/admin/billing/runs",
            &cookie,
            &[
                ("period", period),
                ("csrf", &csrf_of(&page)),
                ("run_token", &run_token_of(&page)),
            ],
        )
        .await;
        assert_eq!(p.status, 422);
        assert!(!p.text.contains("Unprocessable Entity"), "{}", p.text);
        assert!(p.text.contains("<h1>The run was not started</h1>"));
        assert!(p.text.contains(why), "{}", p.text);
        assert!(p.text.contains("href=\"/admin/billing\""));
        assert!(!p.text.contains("Back to billing"));
    }
}

async fn failed_payments_are_listed_behind_the_kpi_and_flag_the_organization(app: TestApp) {
    app.add_tenant("pastdue").await;
    app.add_tenant("fine").await;
    app.subscribe("pastdue", Some(3), "4000000000000341").await;
    app.subscribe("fine", None, "4242424242424242").await;
    app.advance_clock(4 * 86_400).await;
    app.settle().await;
    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    let failed = o["failed_payments_30d"].as_i64().unwrap();
    assert!(failed >= 1, "{o}");
    let cookie = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    assert!(page.contains("href=\"/admin/billing/failed-payments\" id=\"kpi-failed-link\""));
    let row = &page[page.find("id=\"org-pastdue\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("payment failed") && row.contains("renewal unpaid"),
        "{row}"
    );
    let row = &page[page.find("id=\"org-fine\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(!row.contains("payment-flag"), "{row}");

    let list = get(&app, "/admin/billing/failed-payments", &cookie).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.text.matches("class=\"failed-payment\"").count() as i64,
        failed,
        "the list is what the KPI counts: {}",
        list.text
    );
    assert!(list.text.contains("Org pastdue"), "{}", list.text);
    assert!(list.text.contains("$299.00"));
    // Not for tenants.
    let member = sign_in(&app, &token("pastdue", "org_admin")).await;
    assert_eq!(
        get(&app, "/admin/billing/failed-payments", &member)
            .await
            .status,
        403
    );
}

async fn the_demo_toggle_asks_first(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let cookie = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    assert!(page.contains("href=\"/admin/billing/tenants/acme/demo?is_demo=true\""));
    let confirm = get(
        &app,
        "/admin/billing/tenants/acme/demo?is_demo=true",
        &cookie,
    )
    .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text.contains("Make Org acme a demo account?"));
    assert!(confirm
        .text
        .contains("Stripe stops collecting its subscription"));
    assert!(confirm.text.contains("id=\"demo-confirm\""));
    // Looking changes nothing.
    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    assert_eq!(o["mrr_cents"], 29_900, "{o}");
    assert_eq!(
        get(
            &app,
            "/admin/billing/tenants/nobody/demo?is_demo=true",
            &cookie
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(
            &app,
            "/admin/billing/tenants/acme/demo?is_demo=maybe",
            &cookie
        )
        .await
        .status,
        422
    );
}

async fn pages_reload_themselves_while_a_run_runs(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    // The run reads the subscription from Stripe first: slowly, so that it is seen running.
    app.sim_post(
        "/_sim/faults",
        &[
            ("path", "/v1/subscriptions"),
            ("method", "GET"),
            ("delay_ms", "1500"),
        ],
    )
    .await
    .expect(200);
    let started = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": last_closed().to_string(), "wait": false}),
        )
        .await
        .expect(202)
        .body;
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let cookie = sign_in(&app, &super_admin()).await;
    let refresh = "<meta http-equiv=\"refresh\" content=\"3\">";
    let page = get(&app, "/admin/billing", &cookie).await.text;
    assert!(page.contains(refresh), "{page}");
    assert!(page.contains("id=\"runs-refreshing\""));
    assert!(page.contains("run-running"));
    let detail = get(&app, &format!("/admin/billing/runs/{run_id}"), &cookie)
        .await
        .text;
    assert!(detail.contains(refresh), "{detail}");
    ended(&app, &run_id).await;
    let page = get(&app, "/admin/billing", &cookie).await.text;
    assert!(!page.contains("http-equiv"), "{page}");
    let detail = get(&app, &format!("/admin/billing/runs/{run_id}"), &cookie)
        .await
        .text;
    assert!(!detail.contains("http-equiv"), "{detail}");
}
