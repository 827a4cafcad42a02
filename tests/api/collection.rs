//! Collecting a payment that fails once (issue: card changes, bank authentication, bank debits, our own
//! retries), against the simulator as strict as Stripe: one payment method every charge uses, the open
//! invoices paid at once after a change, `action_required`, ACH processing, SEPA refused with a USD price,
//! the usage invoices' retries on Stripe's clock, and invoice lines mirrored whole.

use crate::helpers::{billed_entry, spawn_app_with_background, super_admin, token, Store, TestApp};
use crate::pages::{get, sign_in};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::billing::attempts;
use thanotopolis_billing::domain::BillingPeriod;

store_tests!(
    a_portal_card_change_reaches_every_charge_and_pays_what_is_open,
    a_card_that_needs_authentication_waits_for_the_customers_confirmation,
    bank_debits_are_neither_paid_nor_failed_until_the_bank_answers,
    an_invoice_with_30_lines_is_mirrored_whole,
);

pub(crate) const GOOD: &str = "4242424242424242";
pub(crate) const DECLINING: &str = "4000000000000341";
pub(crate) const AUTHENTICATE: &str = "4000002760003184";
pub(crate) const DAY: i64 = 86_400;

pub(crate) fn closed() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev()
}

pub(crate) async fn usage_in(app: &TestApp, tenant: &str, p: BillingPeriod) {
    app.record_usage(json!([
        {"event_id": format!("{tenant}-words"), "tenant_id": tenant, "type": "stt_words",
         "quantity": 2_000, "occurred_at": format!("{p}-10T12:00:00Z")},
        {"event_id": format!("{tenant}-call"), "tenant_id": tenant, "type": "phone_calls",
         "quantity": 1, "occurred_at": format!("{p}-10T12:00:00Z")},
    ]))
    .await;
}

/// The usage above, rated: 2,000 words ($2.00) and a call ($1.00).
pub(crate) const USAGE_CENTS: i64 = 300;

pub(crate) async fn run(app: &TestApp, p: BillingPeriod) -> Value {
    app.post(
        "/api/admin/billing/runs",
        Some(&super_admin()),
        &json!({"period": p.to_string()}),
    )
    .await
    .expect(200)
    .body
}

pub(crate) async fn customer_of(app: &TestApp, tenant: &str) -> String {
    thanotopolis_billing::db::customers::customer_of(&app.db, tenant)
        .await
        .unwrap()
        .unwrap()
}

/// What the portal's card update does (written where `/_sim/portal/card_update_writes` says); the new
/// payment method's id.
pub(crate) async fn portal_card(app: &TestApp, customer: &str, card: &str) -> String {
    let pm = app
        .sim_post(
            "/_sim/portal/update_card",
            &[("customer", customer), ("card", card)],
        )
        .await
        .expect(200)
        .body;
    pm["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn stripe(app: &TestApp, path: &str) -> Value {
    app.sim_get(path).await.expect(200).body
}

pub(crate) async fn access(app: &TestApp, tenant: &str) -> Value {
    app.get("/api/billing/access", Some(&token(tenant, "member")))
        .await
        .expect(200)
        .body
}

/// Our copy of the tenant's invoices, by Stripe id: (status, lines).
pub(crate) async fn mirrored(app: &TestApp, tenant: &str) -> Vec<Value> {
    app.get(
        "/api/billing/invoices?limit=50",
        Some(&token(tenant, "member")),
    )
    .await
    .expect(200)
    .body["invoices"]
        .as_array()
        .unwrap()
        .clone()
}

/// The portal writes the customer's default only, the subscription's only, or both: in each case the
/// tenant's new card is what every charge uses (the service copies it onto the customer and the
/// subscription), the open invoices ($299 renewal and usage) are paid with it at once, each once under
/// its own key, access comes back, and the next renewal is charged to it.
async fn a_portal_card_change_reaches_every_charge_and_pays_what_is_open(app: TestApp) {
    let p = closed();
    for writes in ["customer", "subscription", "both"] {
        let tenant = format!("acme-{writes}");
        app.sim_post("/_sim/portal/card_update_writes", &[("writes", writes)])
            .await
            .expect(200);
        app.add_tenant(&tenant).await;
        app.subscribe(&tenant, None, GOOD).await;
        let customer = customer_of(&app, &tenant).await;
        let sub_id = app
            .live_subscription(&tenant)
            .await
            .unwrap()
            .stripe_subscription_id;
        let defaults = || async {
            let c = stripe(&app, &format!("/v1/customers/{customer}")).await;
            let s = stripe(&app, &format!("/v1/subscriptions/{sub_id}")).await;
            (
                c["invoice_settings"]["default_payment_method"].clone(),
                s["default_payment_method"].clone(),
            )
        };

        // The card goes bad: every charge now uses it, whichever default the portal wrote.
        let bad = portal_card(&app, &customer, DECLINING).await;
        app.settle().await;
        assert_eq!(defaults().await, (json!(bad), json!(bad)), "{writes}");
        usage_in(&app, &tenant, p).await;
        let report = run(&app, p).await;
        assert_eq!(
            billed_entry(&report, &tenant)["payment"],
            "declined",
            "{report}"
        );
        app.settle().await;
        // The renewal is declined too: both invoices are open and the subscription past due.
        app.advance_clock(31 * DAY).await;
        app.settle().await;
        assert_eq!(
            app.live_subscription(&tenant).await.unwrap().status,
            "past_due",
            "{writes}"
        );
        let open = stripe(
            &app,
            &format!("/v1/invoices?customer={customer}&status=open"),
        )
        .await["data"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(open.len(), 2, "{writes}: {open:?}");
        let attempts_before: Vec<i64> = open
            .iter()
            .map(|i| i["attempt_count"].as_i64().unwrap())
            .collect();

        // A good card in the portal: both are paid at once with it.
        let good = portal_card(&app, &customer, GOOD).await;
        app.settle().await;
        assert_eq!(defaults().await, (json!(good), json!(good)), "{writes}");
        let ids: Vec<String> = open
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        for (id, before) in ids.iter().zip(&attempts_before) {
            let inv = stripe(&app, &format!("/v1/invoices/{id}")).await;
            assert_eq!(inv["status"], "paid", "{writes}: {inv}");
            assert_eq!(
                inv["attempt_count"].as_i64().unwrap(),
                before + 1,
                "{writes}: charged once"
            );
        }
        let made = attempts::for_invoices(&app.db, &ids).await.unwrap();
        assert_eq!(made.len(), 2, "{writes}: {made:?}");
        for a in &made {
            assert_eq!(a.reason, "payment_method_changed");
            assert_eq!(a.outcome, "paid");
            assert!(a.idempotency_key.contains(&good), "{a:?}");
        }
        assert_ne!(made[0].idempotency_key, made[1].idempotency_key);
        let a = access(&app, &tenant).await;
        assert_eq!(
            (a["allowed"].clone(), a["reason"].clone()),
            (json!(true), json!("active"))
        );

        // The next renewal is charged to the new card.
        app.advance_clock(31 * DAY).await;
        app.settle().await;
        let s = stripe(&app, &format!("/v1/subscriptions/{sub_id}")).await;
        assert_eq!(s["status"], "active", "{writes}");
        let latest = stripe(
            &app,
            &format!("/v1/invoices/{}", s["latest_invoice"].as_str().unwrap()),
        )
        .await;
        assert_eq!(latest["status"], "paid", "{writes}: {latest}");
    }
}

/// The bank asks for authentication on every off-session charge: the usage invoice and the renewal
/// wait for the customer; access is `action_required` within the grace days; the page asks to confirm
/// on the hosted invoice page (not to change the card) and the admin page flags it; confirmed, both are
/// paid and access is back.
async fn a_card_that_needs_authentication_waits_for_the_customers_confirmation(app: TestApp) {
    let p = closed();
    app.add_tenant("acme").await;
    // Checkout authenticates the card on the page; the trial charges nothing.
    app.subscribe("acme", Some(1), AUTHENTICATE).await;
    usage_in(&app, "acme", p).await;
    let report = run(&app, p).await;
    let b = billed_entry(&report, "acme");
    assert_eq!(b["payment"], "action_required", "{report}");
    assert_eq!(report["totals"]["unpaid_cents"], USAGE_CENTS);
    assert_eq!(report["totals"]["paid_cents"], 0);
    // Stripe refuses `/pay` (invoice_payment_intent_requires_action): the tenant is billed, not
    // failed, and the period is done, so later months are billed too.
    assert_eq!(report["failed"], json!([]), "{report}");
    assert!(
        thanotopolis_billing::billing::lease::completed_at(&app.db, p)
            .await
            .unwrap()
            .is_some(),
        "the period is complete"
    );
    app.settle().await;
    // The trial ends: the renewal needs authentication too.
    app.advance_clock(2 * DAY).await;
    app.settle().await;
    let sub = app.live_subscription("acme").await.unwrap();
    assert_eq!(sub.status, "past_due");
    let a = access(&app, "acme").await;
    assert_eq!(a["allowed"], true, "{a}");
    assert_eq!(a["reason"], "action_required", "{a}");
    let failed = thanotopolis_billing::db::invoices::failed_payments(
        &app.db,
        &thanotopolis_billing::domain::TenantId::parse("acme").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|f| f.action_required), "{failed:?}");
    let first = failed.iter().map(|f| f.first_failed_at).min().unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(a["until"].as_str().unwrap()).unwrap();
    assert_eq!(
        until,
        first + chrono::Duration::days(7),
        "same grace as past_due"
    );

    let admin = sign_in(&app, &token("acme", "org_admin")).await;
    let page = get(&app, "/billing", &admin).await;
    assert!(
        page.text
            .contains("Your bank asks you to confirm this payment"),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"confirm-payment\""));
    let hosted = failed[0].hosted_invoice_url.clone().unwrap();
    assert!(
        page.text.contains(&format!("href=\"{hosted}\"")),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains("id=\"payment-failed\""),
        "not a decline"
    );
    assert!(!page.text.contains("update the card"), "{}", page.text);
    assert!(page.text.contains("confirm payment"), "the invoice's badge");
    let admin_page = get(&app, "/admin/billing", &sign_in(&app, &super_admin()).await).await;
    assert!(
        admin_page.text.contains("confirmation needed"),
        "{}",
        admin_page.text
    );

    // The customer confirms each on its hosted page.
    for f in &failed {
        let r = app
            .client
            .post(format!(
                "{}/confirm",
                f.hosted_invoice_url.as_deref().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status().is_redirection());
    }
    app.settle().await;
    let a = access(&app, "acme").await;
    assert_eq!(a["reason"], "active", "{a}");
    let page = get(&app, "/billing", &admin).await;
    assert!(!page.text.contains("id=\"payment-action-required\""));
    for inv in mirrored(&app, "acme").await {
        assert_eq!(inv["status"], "paid", "{inv}");
    }
}

/// Subscribes `tenant` through our Checkout session, paying by ACH Direct Debit from `account`.
pub(crate) async fn subscribe_by_bank(app: &TestApp, tenant: &str, account: &str) {
    let session = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token(tenant, "org_admin")),
            &json!({"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}),
        )
        .await
        .expect(200);
    let id = session.body["session_id"].as_str().unwrap();
    app.sim_post(
        &format!("/_sim/checkout/sessions/{id}/complete"),
        &[
            ("payment_method_type", "us_bank_account"),
            ("account_number", account),
        ],
    )
    .await
    .expect(200);
    app.settle().await;
}

/// ACH end to end: the first $299 and the usage invoice are processing for days, shown as such, counted
/// neither paid nor failed by the run and the overview; then the bank answers: paid, or failed.
async fn bank_debits_are_neither_paid_nor_failed_until_the_bank_answers(app: TestApp) {
    let p = closed();
    let accounts = [("bank-ok", "000123456789"), ("bank-short", "000222222227")];
    for (tenant, account) in accounts {
        app.add_tenant(tenant).await;
        subscribe_by_bank(&app, tenant, account).await;
        usage_in(&app, tenant, p).await;
    }
    let report = run(&app, p).await;
    for (tenant, _) in accounts {
        assert_eq!(
            billed_entry(&report, tenant)["payment"],
            "processing",
            "{report}"
        );
    }
    assert_eq!(report["totals"]["processing_cents"], 2 * USAGE_CENTS);
    assert_eq!(report["totals"]["paid_cents"], 0);
    assert_eq!(report["totals"]["unpaid_cents"], 0);
    app.settle().await;

    let overview = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    assert_eq!(overview["failed_payments_30d"], 0, "{overview}");
    for (tenant, _) in accounts {
        let a = access(&app, tenant).await;
        assert_eq!(a["reason"], "active", "{tenant}: {a}");
        let page = get(
            &app,
            "/billing",
            &sign_in(&app, &token(tenant, "member")).await,
        )
        .await;
        assert!(
            page.text.contains("Payment processing (bank debit)"),
            "{}",
            page.text
        );
        assert!(!page.text.contains("id=\"payment-failed\""));
        let invoices = mirrored(&app, tenant).await;
        assert_eq!(invoices.len(), 2, "{invoices:?}");
        assert!(
            invoices.iter().all(|i| i["status"] == "open"),
            "{invoices:?}"
        );
    }

    // Four days on, the bank answers.
    app.advance_clock(4 * DAY + 3600).await;
    app.settle().await;
    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("bank-ok", "member")).await,
    )
    .await;
    assert!(
        !page.text.contains("id=\"payment-processing\""),
        "{}",
        page.text
    );
    assert!(mirrored(&app, "bank-ok")
        .await
        .iter()
        .all(|i| i["status"] == "paid"));
    assert_eq!(access(&app, "bank-ok").await["reason"], "active");

    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("bank-short", "member")).await,
    )
    .await;
    assert!(page.text.contains("id=\"payment-failed\""), "{}", page.text);
    assert!(!page.text.contains("id=\"payment-processing\""));
    assert_eq!(access(&app, "bank-short").await["reason"], "past_due");
    let overview = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    assert_eq!(overview["failed_payments_30d"], 2, "{overview}");
}

/// Stripe embeds ten lines in an invoice; our copy has all thirty.
async fn an_invoice_with_30_lines_is_mirrored_whole(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD).await;
    let customer = customer_of(&app, "acme").await;
    for n in 1..=30 {
        let amount = (100 + n).to_string();
        let description = format!("Line {n}");
        app.sim_post(
            "/v1/invoiceitems",
            &[
                ("customer", customer.as_str()),
                ("amount", amount.as_str()),
                ("currency", "usd"),
                ("description", description.as_str()),
            ],
        )
        .await
        .expect(200);
    }
    let inv = app
        .sim_post(
            "/v1/invoices",
            &[
                ("customer", customer.as_str()),
                ("pending_invoice_items_behavior", "include"),
                ("metadata[tenant_id]", "acme"),
            ],
        )
        .await
        .expect(200)
        .body;
    assert_eq!(inv["lines"]["has_more"], true);
    let id = inv["id"].as_str().unwrap();
    app.sim_post(&format!("/v1/invoices/{id}/finalize"), &[])
        .await
        .expect(200);
    app.settle().await;
    let ours = mirrored(&app, "acme").await;
    let copy = ours
        .iter()
        .find(|i| i["stripe_invoice_id"] == id)
        .unwrap_or_else(|| panic!("{ours:?}"));
    let lines = copy["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 30, "{copy}");
    let total: i64 = lines
        .iter()
        .map(|l| l["amount_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(total, (1..=30).map(|n| 100 + n).sum::<i64>());
    assert_eq!(copy["amount_due_cents"], total);
}

/// Usage invoices are retried by the service on USAGE_RETRY_DAYS after the first failure, counted on
/// Stripe's clock (the simulator's, moved ahead of ours), each attempt recorded and shown; once paid
/// (here out of band) there is no further attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_usage_invoice_is_retried_on_schedule_and_stopped_when_paid_sqlite() {
    retried_on_schedule(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_usage_invoice_is_retried_on_schedule_and_stopped_when_paid_postgres() {
    retried_on_schedule(Store::Postgres).await;
}

/// How often the scheduler has read the invoice from Stripe: it reads it before every decision.
async fn reads_of(app: &TestApp) -> u64 {
    app.sim_get("/_sim/stats").await.body["by_route"]["GET /v1/invoices/{id}"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the scheduler has looked at the invoice at least twice more (so a decision due now has
/// been taken).
async fn two_more_looks(app: &TestApp) {
    let start = reads_of(app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reads_of(app).await < start + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler does not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn retries_of(app: &TestApp, invoice: &str) -> Vec<attempts::Attempt> {
    attempts::for_invoices(&app.db, &[invoice.to_owned()])
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.reason == "retry")
        .collect()
}

async fn retried_on_schedule(store: Store) {
    let app = spawn_app_with_background(store, |vars| {
        vars.insert("BILLING_SCHEDULER_INTERVAL_SECONDS".into(), "1".into());
        vars.insert("USAGE_RETRY_DAYS".into(), "3,5,7".into());
    })
    .await;
    let p = closed();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD).await;
    let customer = customer_of(&app, "acme").await;
    portal_card(&app, &customer, DECLINING).await;
    app.settle().await;
    usage_in(&app, "acme", p).await;
    // The scheduler runs the closed period by itself; the usage invoice is declined.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let invoice = loop {
        let invs = app.usage_invoices("acme", p).await;
        if let Some(i) = invs.first().filter(|i| i["attempt_count"] == 1) {
            break i["id"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "not billed: {invs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    app.settle().await;
    assert_eq!(
        stripe(&app, &format!("/v1/invoices/{invoice}")).await["next_payment_attempt"],
        Value::Null,
        "Stripe does not retry a one-off invoice"
    );

    // Day 2: nothing yet.
    app.advance_clock(2 * DAY).await;
    two_more_looks(&app).await;
    assert!(retries_of(&app, &invoice).await.is_empty());
    // Day 3 and day 5: a retry each, declined again.
    for (day, n) in [(3, 1), (5, 2)] {
        let clock = stripe(&app, "/_sim/clock").await["now"].as_i64().unwrap();
        let failed_at = attempts::retry_candidates(&app.db)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.stripe_invoice_id == invoice)
            .unwrap()
            .first_failed_at
            .timestamp();
        app.advance_clock(failed_at + day * DAY - clock + 60).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while retries_of(&app, &invoice).await.len() < n {
            assert!(std::time::Instant::now() < deadline, "retry {n} not made");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        two_more_looks(&app).await;
        let made = retries_of(&app, &invoice).await;
        assert_eq!(made.len(), n, "one retry on day {day}: {made:?}");
        assert_eq!(made[n - 1].attempt_no as usize, n);
        assert_eq!(made[n - 1].outcome, "declined");
        assert!(made[n - 1].stripe_time.timestamp() >= failed_at + day * DAY);
    }
    let inv = stripe(&app, &format!("/v1/invoices/{invoice}")).await;
    assert_eq!(inv["attempt_count"], 3, "the run's charge and two retries");

    // Shown on the admin page and on the run's page.
    let admin = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &admin).await;
    assert!(
        page.text.contains("retry 2 of the usage invoice"),
        "{}",
        page.text
    );
    let runs = app
        .get("/api/admin/billing/runs", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    let run_id = runs["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let run_page = get(&app, &format!("/admin/billing/runs/{run_id}"), &admin).await;
    assert!(
        run_page.text.contains("retry 1 of the usage invoice"),
        "{}",
        run_page.text
    );

    // Paid meanwhile (out of band): day 7 brings no attempt.
    app.sim_post(
        &format!("/v1/invoices/{invoice}/pay"),
        &[("paid_out_of_band", "true")],
    )
    .await
    .expect(200);
    app.settle().await;
    assert!(mirrored(&app, "acme")
        .await
        .iter()
        .any(|i| i["stripe_invoice_id"] == invoice.as_str() && i["status"] == "paid"));
    app.advance_clock(3 * DAY).await;
    // A paid invoice is no longer looked at: give the scheduler (every second) a few wake-ups.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(retries_of(&app, &invoice).await.len(), 2);
    let inv = stripe(&app, &format!("/v1/invoices/{invoice}")).await;
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["attempt_count"], 3, "never charged again");
}

/// `serve` and `stripe check` refuse `sepa_debit` with the US dollar price, saying why.
#[tokio::test]
async fn sepa_debit_with_a_usd_price_is_refused() {
    let dir = crate::helpers::TempDir::new();
    let db = format!("sqlite://{}/sepa.db", dir.path.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&dir.path)
        .env("DATABASE_URL", &db)
        .env("BIND", "127.0.0.1:0")
        .env("JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("STRIPE_PAYMENT_METHODS", "card,sepa_debit")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "SEPA Direct Debit only takes payments in euros and the monthly price is in US dollars"
        ),
        "{err}"
    );

    let app = crate::helpers::spawn_app(Store::Sqlite).await;
    let vars = std::collections::HashMap::from([
        ("DATABASE_URL".to_owned(), "sqlite::memory:".to_owned()),
        ("STRIPE_API_BASE".to_owned(), app.sim.clone()),
        ("STRIPE_SECRET_KEY".to_owned(), "sk_test_check".to_owned()),
        (
            "STRIPE_PAYMENT_METHODS".to_owned(),
            "card,sepa_debit".to_owned(),
        ),
    ]);
    let settings = thanotopolis_billing::config::Settings::from_vars(&vars).unwrap();
    let state = thanotopolis_billing::state::AppState::new(
        thanotopolis_billing::db::Db::connect("sqlite::memory:")
            .await
            .unwrap(),
        std::sync::Arc::new(settings),
        thanotopolis_billing::config::Secret::new("x"),
    );
    let report = thanotopolis_billing::ops::stripe_check::run(&state).await;
    assert!(!report.passed());
    let item = report
        .items
        .iter()
        .find(|i| i.name == "checkout payment methods")
        .unwrap_or_else(|| panic!("{}", report.render()));
    assert!(!item.ok);
    assert!(
        item.detail
            .contains("SEPA Direct Debit only takes payments in euros"),
        "{}",
        report.render()
    );
}
