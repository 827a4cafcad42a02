//! `stripe sync`: our copy rebuilt from Stripe for tenants whose webhooks were lost and for accounts made in
//! Stripe before this service; safe to repeat.

use crate::helpers::{
    base_vars, spawn_app_with, super_admin, token, TempDir, TestApp, JWT_SECRET, WEBHOOK_SECRET,
};
use crate::store_tests;
use serde_json::{json, Value};
use std::sync::Arc;
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::db::{customers, invoices, subscriptions};
use thanotopolis_billing::domain::TenantId;
use thanotopolis_billing::ops::stripe_sync::{self, CustomerSource, StripeSyncError};
use thanotopolis_billing::state::AppState;

const GOOD_CARD: &str = "4242424242424242";
const DAY: i64 = 86_400;

store_tests!(
    lost_webhooks_are_rebuilt_as_stripe_has_them,
    a_customer_made_before_this_service_is_found_and_linked,
    one_tenant_at_a_time_and_a_second_run_changes_nothing,
    a_copy_kept_by_webhooks_is_left_as_it_is,
    syncing_while_webhooks_arrive_ends_as_stripe_says,
    the_command_syncs_the_tenant_named,
);

/// The same store as `app`, but every webhook delivery fails verification: Stripe's events never reach
/// our copy.
async fn without_webhooks(app: TestApp) -> TestApp {
    let store = app.store;
    drop(app);
    spawn_app_with(store, |vars| {
        vars.insert("STRIPE_WEBHOOK_SECRET".into(), "whsec_wrong".into());
    })
    .await
}

/// The service's state as a command run beside it builds it: the same database and Stripe.
fn sync_state(app: &TestApp) -> AppState {
    let mut vars = base_vars(&app.database_url);
    vars.insert("STRIPE_API_BASE".into(), app.sim.clone());
    vars.insert("STRIPE_SECRET_KEY".into(), "sk_test_api_tests".into());
    vars.insert("STRIPE_MAX_REQUESTS_PER_SECOND".into(), "0".into());
    vars.insert("STRIPE_RETRY_BASE_MS".into(), "5".into());
    let settings = Settings::from_vars(&vars).expect("settings");
    AppState::new(app.db.clone(), Arc::new(settings), Secret::new(JWT_SECRET))
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

/// Checkout as `subscribe` does it, without waiting for webhooks (none arrive). Returns the subscription.
async fn checkout(app: &TestApp, tenant: &str, trial_days: Option<u32>) -> String {
    let mut body = json!({
        "success_url": "https://app.example.com/billing/success",
        "cancel_url": "https://app.example.com/billing/cancel",
    });
    if let Some(d) = trial_days {
        body["trial_days"] = d.into();
    }
    let session = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token(tenant, "org_admin")),
            &body,
        )
        .await
        .expect(200);
    let id = session.body["session_id"].as_str().unwrap();
    app.sim_post(
        &format!("/_sim/checkout/sessions/{id}/complete"),
        &[("card", GOOD_CARD)],
    )
    .await
    .expect(200);
    let s = app
        .sim_get(&format!("/v1/checkout/sessions/{id}"))
        .await
        .expect(200)
        .body;
    s["subscription"]
        .as_str()
        .expect("a subscription")
        .to_owned()
}

/// Waits for the simulator to try delivering, and asserts no delivery was accepted.
async fn assert_webhooks_dropped(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let deliveries = app.sim_get("/_sim/webhooks/deliveries").await.body;
        let all = deliveries["data"].as_array().cloned().unwrap_or_default();
        assert!(
            all.iter().all(|d| d["status"]
                .as_u64()
                .is_none_or(|s| !(200..300).contains(&s))),
            "a delivery was accepted: {deliveries}"
        );
        if !all.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery attempted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn secs(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map_or(Value::Null, |t| t.timestamp().into())
}

/// Our copy of the subscription and of the customer's invoices equal what Stripe has.
async fn assert_copy_matches_stripe(app: &TestApp, tenant: &str, sub_id: &str) {
    let remote = app
        .sim_get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .expect(200)
        .body;
    let ours = subscriptions::get(&app.db, sub_id)
        .await
        .unwrap()
        .expect("the subscription is in our copy");
    let item = &remote["items"]["data"][0];
    assert_eq!(ours.tenant_id, tenant);
    assert_eq!(
        ours.stripe_customer_id,
        remote["customer"].as_str().unwrap()
    );
    assert_eq!(ours.status, remote["status"].as_str().unwrap());
    assert_eq!(
        secs(ours.current_period_start),
        item["current_period_start"]
    );
    assert_eq!(secs(ours.current_period_end), item["current_period_end"]);
    assert_eq!(secs(ours.trial_start), remote["trial_start"]);
    assert_eq!(secs(ours.trial_end), remote["trial_end"]);
    assert_eq!(
        ours.cancel_at_period_end,
        remote["cancel_at_period_end"].as_bool().unwrap()
    );
    assert_eq!(ours.amount_cents, 29_900);
    assert_eq!(
        ours.price_id.as_deref(),
        item["price"]["id"].as_str(),
        "price"
    );

    let customer = remote["customer"].as_str().unwrap();
    let listed = app
        .sim_get(&format!("/v1/invoices?customer={customer}&limit=100"))
        .await
        .expect(200)
        .body;
    let remote_invoices = listed["data"].as_array().unwrap();
    let ours = invoices::for_tenant(&app.db, tenant, 100).await.unwrap();
    assert_eq!(ours.len(), remote_invoices.len(), "every invoice, no other");
    for r in remote_invoices {
        let id = r["id"].as_str().unwrap();
        let o = ours
            .iter()
            .find(|o| o.stripe_invoice_id == id)
            .unwrap_or_else(|| panic!("invoice {id} is missing from our copy"));
        assert_eq!(o.status, r["status"].as_str().unwrap(), "{id}");
        assert_eq!(
            o.amount_due_cents,
            r["amount_due"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(
            o.amount_paid_cents,
            r["amount_paid"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(o.currency, r["currency"].as_str().unwrap(), "{id}");
        assert_eq!(o.number.as_deref(), r["number"].as_str(), "{id}");
        assert_eq!(secs(o.period_start), r["period_start"], "{id}");
        assert_eq!(secs(o.period_end), r["period_end"], "{id}");
        assert_eq!(secs(o.paid_at), r["status_transitions"]["paid_at"], "{id}");
        assert_eq!(
            o.stripe_subscription_id.as_deref(),
            Some(sub_id),
            "{id} belongs to the subscription"
        );
        assert_eq!(
            o.hosted_invoice_url.as_deref(),
            r["hosted_invoice_url"].as_str(),
            "{id}"
        );
        let lines: Vec<(String, i64)> = o
            .lines
            .iter()
            .map(|l| (l.description.clone(), l.amount_cents))
            .collect();
        assert_eq!(lines, crate::helpers::stripe_lines(r), "{id} lines");
    }
}

async fn lost_webhooks_are_rebuilt_as_stripe_has_them(app: TestApp) {
    let app = without_webhooks(app).await;
    app.add_tenant("acme").await;
    let sub_id = checkout(&app, "acme", Some(14)).await;
    // The trial ends: Stripe charges the card and the subscription turns active, with a paid invoice.
    app.advance_clock(15 * DAY).await;
    assert_webhooks_dropped(&app).await;
    assert!(app.live_subscription("acme").await.is_none());
    assert!(invoices::for_tenant(&app.db, "acme", 100)
        .await
        .unwrap()
        .is_empty());
    let member = token("acme", "member");
    let before = app
        .get("/api/billing/dashboard", Some(&member))
        .await
        .expect(200);
    assert_eq!(before.body["current_subscription"], Value::Null);

    let report = stripe_sync::run(&sync_state(&app), Some(&tenant("acme")))
        .await
        .unwrap();
    let acme = report.tenant("acme").unwrap();
    assert_eq!(acme.error, None);
    // Checkout linked the customer; only the subscription and invoices were lost.
    assert_eq!(acme.customer_source, CustomerSource::Linked);
    assert_eq!(
        (acme.subscriptions.found, acme.subscriptions.created),
        (1, 1)
    );
    assert!(acme.invoices.found >= 2, "{:?}", acme.invoices);
    assert_eq!(acme.invoices.created, acme.invoices.found);

    assert_copy_matches_stripe(&app, "acme", &sub_id).await;
    let ours = subscriptions::get(&app.db, &sub_id).await.unwrap().unwrap();
    assert_eq!(ours.status, "active");
    assert!(ours.trial_start.is_some() && ours.trial_end.is_some());

    let dash = app
        .get("/api/billing/dashboard", Some(&member))
        .await
        .expect(200);
    let current = &dash.body["current_subscription"];
    assert_eq!(current["subscription_id"], sub_id.as_str());
    assert_eq!(current["status"], "active");
    assert_eq!(current["amount_cents"], 29_900);
    assert_eq!(
        dash.body["recent_invoices"].as_array().unwrap().len(),
        acme.invoices.found
    );
}

async fn a_customer_made_before_this_service_is_found_and_linked(app: TestApp) {
    app.add_tenant("legacy").await;
    app.add_tenant("newcomer").await;
    let price = app.plan_price_id().await;
    // Made by hand in Stripe's dashboard: a customer carrying the tenant id, a subscription without it.
    let customer = app
        .sim_create(
            "/v1/customers",
            &[("name", "Legacy Org"), ("metadata[tenant_id]", "legacy")],
        )
        .await;
    let sub_id = app
        .sim_create(
            "/v1/subscriptions",
            &[
                ("customer", customer.as_str()),
                ("items[0][price]", price.as_str()),
                ("trial_period_days", "30"),
            ],
        )
        .await;
    // A later duplicate with nothing on it: the customer with the live subscription is the one.
    let duplicate = app
        .sim_create(
            "/v1/customers",
            &[
                ("name", "Legacy Org (dup)"),
                ("metadata[tenant_id]", "legacy"),
            ],
        )
        .await;
    // The webhooks arrive, but name no customer of ours: nothing is stored.
    app.settle().await;
    assert_eq!(
        customers::customer_of(&app.db, "legacy").await.unwrap(),
        None
    );
    assert!(subscriptions::for_tenant(&app.db, "legacy")
        .await
        .unwrap()
        .is_empty());

    let report = stripe_sync::run(&sync_state(&app), None).await.unwrap();
    assert_eq!(report.tenants.len(), 2);
    let legacy = report.tenant("legacy").unwrap();
    assert_eq!(legacy.error, None);
    assert_eq!(legacy.customer.as_deref(), Some(customer.as_str()));
    assert_eq!(legacy.customer_source, CustomerSource::Found);
    assert_eq!(legacy.other_customers, vec![duplicate.clone()]);
    assert_eq!(
        (legacy.subscriptions.found, legacy.subscriptions.created),
        (1, 1)
    );
    assert!(report.to_table().contains(&duplicate));
    let newcomer = report.tenant("newcomer").unwrap();
    assert_eq!(newcomer.customer_source, CustomerSource::None);
    assert_eq!(newcomer.customer, None);
    assert_eq!(newcomer.subscriptions.found + newcomer.invoices.found, 0);

    assert_eq!(
        customers::customer_of(&app.db, "legacy").await.unwrap(),
        Some(customer.clone())
    );
    assert_eq!(
        customers::customer_of(&app.db, "newcomer").await.unwrap(),
        None
    );
    assert_copy_matches_stripe(&app, "legacy", &sub_id).await;
    let ours = app.live_subscription("legacy").await.expect("live");
    assert_eq!(ours.status, "trialing");

    // From now on the webhooks find the link: a change in Stripe reaches our copy.
    app.sim_post(
        &format!("/v1/subscriptions/{sub_id}"),
        &[("cancel_at_period_end", "true")],
    )
    .await
    .expect(200);
    app.settle().await;
    assert!(
        app.live_subscription("legacy")
            .await
            .unwrap()
            .cancel_at_period_end
    );
}

/// Every row of our copy, without the reading times (which a repeat refreshes).
async fn snapshot(app: &TestApp) -> Value {
    let subs: Vec<Value> = subscriptions::all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|mut s| {
            s.stripe_updated_at = chrono::DateTime::UNIX_EPOCH;
            serde_json::to_value(s).unwrap()
        })
        .collect();
    let mut invs = Vec::new();
    for t in ["acme", "beta"] {
        for mut i in invoices::for_tenant(&app.db, t, 100).await.unwrap() {
            i.stripe_updated_at = chrono::DateTime::UNIX_EPOCH;
            invs.push(format!("{i:?}"));
        }
    }
    json!({
        "customers": customers::all(&app.db).await.unwrap(),
        "subscriptions": subs,
        "invoices": invs,
    })
}

async fn one_tenant_at_a_time_and_a_second_run_changes_nothing(app: TestApp) {
    let app = without_webhooks(app).await;
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    let acme_sub = checkout(&app, "acme", Some(7)).await;
    let beta_sub = checkout(&app, "beta", None).await;
    // Demo tenants are synced too: syncing bills nothing.
    app.post(
        "/api/billing/set-demo-status/beta?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    assert_webhooks_dropped(&app).await;
    let state = sync_state(&app);
    let invoices_before =
        app.sim_get("/_sim/stats").await.body["by_route"]["POST /v1/invoices"].clone();

    match stripe_sync::run(&state, Some(&tenant("nobody"))).await {
        Err(StripeSyncError::UnknownTenant(t)) => assert_eq!(t, "nobody"),
        other => panic!("an unknown tenant is an error, got {other:?}"),
    }

    let only_acme = stripe_sync::run(&state, Some(&tenant("acme")))
        .await
        .unwrap();
    assert_eq!(only_acme.tenants.len(), 1);
    assert_eq!(only_acme.tenants[0].tenant_id, "acme");
    assert!(subscriptions::get(&app.db, &acme_sub)
        .await
        .unwrap()
        .is_some());
    assert!(subscriptions::for_tenant(&app.db, "beta")
        .await
        .unwrap()
        .is_empty());
    assert!(invoices::for_tenant(&app.db, "beta", 100)
        .await
        .unwrap()
        .is_empty());

    let all = stripe_sync::run(&state, None).await.unwrap();
    assert_eq!(all.failed().count(), 0, "{}", all.to_table());
    let acme = all.tenant("acme").unwrap();
    assert_eq!(acme.subscriptions.created + acme.subscriptions.updated, 0);
    assert_eq!(acme.invoices.created + acme.invoices.updated, 0);
    let beta = all.tenant("beta").unwrap();
    assert!(beta.is_demo);
    assert_eq!(beta.subscriptions.created, 1);
    assert!(beta.invoices.created >= 1);
    assert_copy_matches_stripe(&app, "acme", &acme_sub).await;
    assert_copy_matches_stripe(&app, "beta", &beta_sub).await;

    let first = snapshot(&app).await;
    let again = stripe_sync::run(&state, None).await.unwrap();
    assert!(!again.changed(), "{}", again.to_table());
    for t in &again.tenants {
        assert_eq!(t.subscriptions.unchanged, t.subscriptions.found);
        assert_eq!(t.invoices.unchanged, t.invoices.found);
    }
    assert_eq!(snapshot(&app).await, first, "a second run changes nothing");
    // Syncing only reads: no invoice was made in Stripe.
    assert_eq!(
        app.sim_get("/_sim/stats").await.body["by_route"]["POST /v1/invoices"],
        invoices_before
    );
}

async fn a_copy_kept_by_webhooks_is_left_as_it_is(app: TestApp) {
    app.add_tenant("acme").await;
    let session = app.subscribe("acme", Some(3), GOOD_CARD).await;
    app.advance_clock(4 * DAY).await;
    app.settle().await;
    let sub_id = app
        .sim_get(&format!("/v1/checkout/sessions/{session}"))
        .await
        .body["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_copy_matches_stripe(&app, "acme", &sub_id).await;
    let report = stripe_sync::run(&sync_state(&app), None).await.unwrap();
    let acme = report.tenant("acme").unwrap();
    assert_eq!(acme.error, None);
    assert!(!report.changed(), "{}", report.to_table());
    assert_eq!(acme.subscriptions.unchanged, 1);
    assert_eq!(acme.invoices.unchanged, acme.invoices.found);
    assert_copy_matches_stripe(&app, "acme", &sub_id).await;
}

async fn syncing_while_webhooks_arrive_ends_as_stripe_says(app: TestApp) {
    app.add_tenant("acme").await;
    let session = app.subscribe("acme", Some(2), GOOD_CARD).await;
    let sub_id = app
        .sim_get(&format!("/v1/checkout/sessions/{session}"))
        .await
        .body["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = sync_state(&app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncing = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let report = stripe_sync::run(&state, None).await.unwrap();
                assert_eq!(report.failed().count(), 0, "{}", report.to_table());
                runs += 1;
            }
            runs
        })
    };
    // Trial end, two renewals and a cancellation, each with its webhooks, while syncs run.
    app.advance_clock(3 * DAY).await;
    app.advance_clock(31 * DAY).await;
    app.post(
        "/api/billing/cancel-subscription",
        Some(&token("acme", "admin")),
        &json!({}),
    )
    .await
    .expect(200);
    app.advance_clock(31 * DAY).await;
    app.settle().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(syncing.await.unwrap() > 0);
    assert_copy_matches_stripe(&app, "acme", &sub_id).await;
    let ours = subscriptions::get(&app.db, &sub_id).await.unwrap().unwrap();
    assert_eq!(ours.status, "canceled");
}

/// The built binary, `stripe sync` with `args`, against the app's database and simulator, from a folder
/// without a `.env`. Returns (success, stdout, stderr).
async fn sync_command(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let dir = TempDir::new();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .args(["stripe", "sync"])
        .args(args)
        .current_dir(&dir.path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env("STRIPE_API_BASE", &app.sim)
        .env("STRIPE_SECRET_KEY", "sk_test_api_tests")
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run the binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_command_syncs_the_tenant_named(app: TestApp) {
    let app = without_webhooks(app).await;
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    let sub_id = checkout(&app, "acme", None).await;
    checkout(&app, "beta", None).await;
    assert_webhooks_dropped(&app).await;

    let (ok, stdout, stderr) = sync_command(&app, &["--tenant", "acme"]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let database = match app.store {
        crate::helpers::Store::Sqlite => app.database_url.trim_start_matches("sqlite://"),
        crate::helpers::Store::Postgres => "billing_test",
    };
    assert!(stdout.contains(database), "names the database: {stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("acme "))
        .unwrap_or_else(|| panic!("a row for acme: {stdout}"));
    assert!(row.contains("1/1/0"), "{row}");
    assert!(!stdout.lines().any(|l| l.starts_with("beta ")), "{stdout}");
    assert_copy_matches_stripe(&app, "acme", &sub_id).await;
    assert!(subscriptions::for_tenant(&app.db, "beta")
        .await
        .unwrap()
        .is_empty());

    let (ok, stdout, _) = sync_command(&app, &["--tenant", "acme"]).await;
    assert!(ok);
    let row = stdout.lines().find(|l| l.starts_with("acme ")).unwrap();
    assert!(row.contains("1/0/0"), "nothing new the second time: {row}");

    let (ok, _, stderr) = sync_command(&app, &["--tenant", "nobody"]).await;
    assert!(!ok);
    assert!(stderr.contains("\"nobody\""), "{stderr}");
}
