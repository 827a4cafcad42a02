//! `stripe setup` against the simulator: everything the guide clicks through, and nothing twice.

use thanotopolis_billing::stripe::{ClientOptions, StripeClient};
use thanotopolis_billing::stripe_setup;

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
