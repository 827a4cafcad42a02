//! `stripe setup` against the simulator: everything the guide clicks through, and nothing twice.

use thanotopolis_billing::ops::stripe_setup;
use thanotopolis_billing::stripe::{ClientOptions, StripeClient};

#[tokio::test]
async fn setup_creates_once_and_finds_on_the_second_run() {
    let sim = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let key = Some(thanotopolis_billing::config::Secret::new("sk_test_setup"));
    let client = StripeClient::new(&sim.base_url, key, ClientOptions::default());
    let methods = vec!["card".to_owned(), "us_bank_account".to_owned()];
    let first = stripe_setup::run(&client, "https://billing.example.com", &methods)
        .await
        .unwrap();
    assert!(first
        .webhook_secret
        .as_deref()
        .is_some_and(|s| s.starts_with("whsec_")));
    assert!(
        first
            .log
            .iter()
            .filter(|l| l.starts_with("created"))
            .count()
            >= 4,
        "{:?}",
        first.log
    );

    let second = stripe_setup::run(&client, "https://billing.example.com", &methods)
        .await
        .unwrap();
    assert_eq!(second.product_id, first.product_id);
    assert_eq!(second.price_id, first.price_id);
    assert_eq!(second.webhook_endpoint_id, first.webhook_endpoint_id);
    assert_eq!(
        second.portal_configuration_id,
        first.portal_configuration_id
    );
    assert!(second.webhook_secret.is_none());
    assert!(
        second.log.iter().all(|l| !l.starts_with("created")),
        "{:?}",
        second.log
    );
    assert!(second
        .env_lines()
        .contains(&format!("STRIPE_MONTHLY_PRICE_ID={}", first.price_id)));

    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", sim.base_url);
        async move {
            http.get(url)
                .bearer_auth("sk_test_setup")
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let product = get(format!("/v1/products/{}", first.product_id)).await;
    assert_eq!(product["name"], "Thanotopolis Platform Subscription");
    assert_eq!(
        product["description"],
        "Monthly subscription for Thanotopolis multi-agent platform with web and telephony access"
    );
    let price = get(format!("/v1/prices/{}", first.price_id)).await;
    assert_eq!(price["unit_amount"], 29_900);
    assert_eq!(price["currency"], "usd");
    assert_eq!(price["recurring"]["interval"], "month");
    assert_eq!(price["recurring"]["usage_type"], "licensed");
    assert_eq!(price["nickname"], "Monthly platform access fee");
    let endpoints = get("/v1/webhook_endpoints".into()).await;
    let endpoint = &endpoints["data"][0];
    assert_eq!(endpoints["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        endpoint["url"],
        "https://billing.example.com/api/billing/webhook"
    );
    for e in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "checkout.session.completed",
        // A card changed in the portal may only change the customer's default; the bank may ask the
        // customer to confirm a payment.
        "customer.updated",
        "invoice.payment_action_required",
    ] {
        assert!(
            endpoint["enabled_events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == e),
            "{e}"
        );
    }
    let configs = get("/v1/billing_portal/configurations".into()).await;
    let ours: Vec<&serde_json::Value> = configs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == first.portal_configuration_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1);
    let f = &ours[0]["features"];
    assert_eq!(f["subscription_cancel"]["mode"], "at_period_end");
    assert_eq!(f["invoice_history"]["enabled"], true);
    assert_eq!(f["payment_method_update"]["enabled"], true);
    assert_eq!(f["customer_update"]["enabled"], true);
}

/// `stripe check` against the simulator after `stripe setup`: every line passes, the throw-away
/// customer's usage invoice is paid from the card on its subscription, and nothing is left behind.
#[tokio::test]
async fn check_passes_after_setup_and_cleans_up() {
    use std::sync::Arc;
    use thanotopolis_billing::config::{Secret, Settings};
    use thanotopolis_billing::ops::stripe_check as check;
    use thanotopolis_billing::state::AppState;

    let sim = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let key = Some(Secret::new("sk_test_check"));
    let client = StripeClient::new(&sim.base_url, key, ClientOptions::default());
    let public = "https://billing.example.com";
    let vars = |price: &str, portal: &str| {
        std::collections::HashMap::from([
            ("DATABASE_URL".to_owned(), "sqlite::memory:".to_owned()),
            ("STRIPE_API_BASE".to_owned(), sim.base_url.clone()),
            ("STRIPE_SECRET_KEY".to_owned(), "sk_test_check".to_owned()),
            ("STRIPE_MONTHLY_PRICE_ID".to_owned(), price.to_owned()),
            (
                "STRIPE_PORTAL_CONFIGURATION_ID".to_owned(),
                portal.to_owned(),
            ),
            ("PUBLIC_BASE_URL".to_owned(), public.to_owned()),
            ("STRIPE_MAX_REQUESTS_PER_SECOND".to_owned(), "0".to_owned()),
        ])
    };
    let state_for = |vars: std::collections::HashMap<String, String>| async move {
        let settings = Settings::from_vars(&vars).unwrap();
        let db = thanotopolis_billing::db::Db::connect("sqlite::memory:")
            .await
            .unwrap();
        AppState::new(db, Arc::new(settings), Secret::new("x"))
    };

    // Before setup: the set-up lines fail and say what to run.
    let state = state_for(vars("price_missing", "bpc_missing")).await;
    let before = check::run(&state).await;
    assert!(!before.passed());
    let webhook = before
        .items
        .iter()
        .find(|i| i.name == "webhook endpoint")
        .unwrap();
    assert!(
        !webhook.ok && webhook.detail.contains("stripe setup"),
        "{}",
        before.render()
    );

    let setup = stripe_setup::run(&client, public, &["card".to_owned()])
        .await
        .unwrap();
    let state = state_for(vars(&setup.price_id, &setup.portal_configuration_id)).await;
    let report = check::run(&state).await;
    assert!(report.passed(), "{}", report.render());
    let names: Vec<&str> = report.items.iter().map(|i| i.name).collect();
    for expected in [
        "monthly price",
        "customer-portal configuration",
        "webhook endpoint",
        "throw-away customer",
        "subscription with a test card",
        "usage invoice billed and paid",
        "checkout payment methods",
        "bank asks to authenticate",
        "card changed after a decline",
        "checkout session",
        "customer-portal session",
        "clean-up",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    // Each line names Stripe's request, to find it in the dashboard's logs.
    for item in &report.items {
        assert!(
            item.request_id
                .as_deref()
                .is_some_and(|r| r.starts_with("req_")),
            "{}",
            report.render()
        );
    }
    // The throw-away customer is gone.
    let customer = &report
        .items
        .iter()
        .find(|i| i.name == "throw-away customer")
        .unwrap()
        .detail;
    let gone = reqwest::Client::new()
        .get(format!("{}/v1/customers/{customer}", sim.base_url))
        .bearer_auth("sk_test_check")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    // Stripe answers a deleted customer with `deleted: true`; a store that forgets it answers 404.
    assert!(
        gone["deleted"] == true || gone["error"]["code"] == "resource_missing",
        "{gone}"
    );
}

/// An invoice with more lines than one page of Stripe's list (100): the run's look for the items a
/// lost reply may have created finds every one.
#[tokio::test]
async fn the_items_of_a_long_invoice_are_read_page_by_page() {
    use thanotopolis_billing::domain::{BillingPeriod, Cents};
    use thanotopolis_billing::stripe::{Collection, UsageInvoice, UsageLine};
    let sim = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let key = Some(thanotopolis_billing::config::Secret::new("sk_test_pages"));
    let options = ClientOptions {
        max_requests_per_second: 0,
        ..ClientOptions::default()
    };
    let client = StripeClient::new(&sim.base_url, key, options);
    let customer = client
        .create_tenant_customer("acme", "Acme", "acme", None, "pages:customer")
        .await
        .unwrap();
    let period: BillingPeriod = "2026-10".parse().unwrap();
    let inv = client
        .create_usage_invoice(
            &UsageInvoice {
                customer: &customer.id,
                tenant: "acme",
                period,
                collection: Collection::ChargeAutomatically,
            },
            "pages:invoice",
        )
        .await
        .unwrap();
    for n in 1..=120 {
        client
            .add_usage_line(
                &UsageLine {
                    customer: &customer.id,
                    invoice: &inv.id,
                    tenant: "acme",
                    period,
                    usage_period: period,
                    line_no: n,
                    amount: Cents(100),
                    description: "Phone Calls: 1 call",
                },
                &format!("pages:line:{n}"),
            )
            .await
            .unwrap();
    }
    let mut found: Vec<i32> = client
        .usage_lines_on(&inv.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    found.sort();
    assert_eq!(found, (1..=120).collect::<Vec<i32>>());
}

/// An endpoint registered before an upgrade (here without `customer.updated` and
/// `invoice.payment_action_required`, which migration 0008's collection acts on): `serve` says at start
/// which events it lacks and to run `stripe setup` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_the_endpoint_lacks_events_it_acts_on() {
    let sim = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig::default(),
    )
    .await
    .unwrap();
    let public = "https://billing.example.com";
    let mut form = vec![
        ("url".to_owned(), format!("{public}/api/billing/webhook")),
        (
            "api_version".to_owned(),
            thanotopolis_billing::stripe::STRIPE_VERSION.to_owned(),
        ),
    ];
    for (i, e) in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "checkout.session.completed",
    ]
    .iter()
    .enumerate()
    {
        form.push((format!("enabled_events[{i}]"), (*e).to_owned()));
    }
    let created = reqwest::Client::new()
        .post(format!("{}/v1/webhook_endpoints", sim.base_url))
        .bearer_auth("sk_test_setup")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let base = sim.base_url.clone();
    let (_app, service) = crate::helpers::spawn_process_with(|vars| {
        vars.insert("STRIPE_API_BASE".into(), base);
        vars.insert("PUBLIC_BASE_URL".into(), public.into());
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&service.log)
        .unwrap_or_default()
        .contains("run `stripe setup` again")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning; the log: {}",
            std::fs::read_to_string(&service.log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = service.stop().await;
    let line = log
        .lines()
        .find(|l| l.contains("run `stripe setup` again"))
        .unwrap();
    assert!(line.contains("customer.updated"), "{line}");
    assert!(line.contains("invoice.payment_action_required"), "{line}");
    assert!(!line.contains("invoice.payment_failed"), "{line}");

    // `stripe setup` again: the same endpoint now lacks nothing.
    let key = Some(thanotopolis_billing::config::Secret::new("sk_test_setup"));
    let client = StripeClient::new(&sim.base_url, key, ClientOptions::default());
    let url = format!("{public}/api/billing/webhook");
    let before = stripe_setup::endpoint_for(&client, &url)
        .await
        .unwrap()
        .unwrap();
    let methods = vec!["card".to_owned()];
    stripe_setup::run(&client, public, &methods).await.unwrap();
    let after = stripe_setup::endpoint_for(&client, &url)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.id, before.id);
    assert!(stripe_setup::missing_events(&after).is_empty());
}
