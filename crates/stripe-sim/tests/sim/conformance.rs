//! Every object the simulator returns has at least the top-level keys of the same object in
//! Stripe's own fixtures (testdata/stripe/fixtures3.json).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{id, Sim};

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/stripe/fixtures3.json"
    );
    let text = std::fs::read_to_string(path).expect("read fixtures3.json");
    let v: Value = serde_json::from_str(&text).expect("parse fixtures3.json");
    v["resources"].clone()
}

fn missing(fixture: &Value, ours: &Value) -> Vec<String> {
    let Some(f) = fixture.as_object() else {
        return vec!["<fixture is not an object>".into()];
    };
    let Some(o) = ours.as_object() else {
        return vec!["<simulator object is not an object>".into()];
    };
    f.keys().filter(|k| !o.contains_key(*k)).cloned().collect()
}

#[tokio::test]
async fn objects_cover_fixture_keys() {
    let fx = fixtures();
    let sim = Sim::start().await;
    let price_id = sim.monthly_price(29900).await;
    let price = sim.get(&format!("/v1/prices/{price_id}")).await.ok();
    let product = sim
        .get(&format!(
            "/v1/products/{}",
            price["product"].as_str().unwrap()
        ))
        .await
        .ok();
    let cs = sim.checkout(&price_id, 0, None).await;
    let cs_id = id(&cs);
    let items = sim
        .get(&format!("/v1/checkout/sessions/{cs_id}/line_items"))
        .await
        .ok();
    let done = sim
        .ctl(&format!("/_sim/checkout/sessions/{cs_id}/complete"), &[])
        .await;
    let cid = done["customer"].as_str().unwrap().to_string();
    let customer = sim.get(&format!("/v1/customers/{cid}")).await.ok();
    let sub = sim
        .get(&format!(
            "/v1/subscriptions/{}",
            done["subscription"].as_str().unwrap()
        ))
        .await
        .ok();
    let ii = sim.invoice_item(cid.as_str(), "100").await;
    let inv = sim.invoice_with_pending(cid.as_str()).await;
    let inv = sim
        .post(&format!("/v1/invoices/{}/finalize", id(&inv)), &[])
        .await
        .ok();
    let sub_invoice = sim
        .get(&format!(
            "/v1/invoices/{}",
            sub["latest_invoice"].as_str().unwrap()
        ))
        .await
        .ok();
    let with_payment = sim
        .get(&format!(
            "/v1/invoices/{}?expand[]=payments&expand[]=payments.data.payment.payment_intent",
            sub["latest_invoice"].as_str().unwrap()
        ))
        .await
        .ok();
    let invoice_payment = with_payment["payments"]["data"][0].clone();
    let payment_intent = invoice_payment["payment"]["payment_intent"].clone();
    let cfg = sim
        .post(
            "/v1/billing_portal/configurations",
            &[("features[invoice_history][enabled]", "true")],
        )
        .await
        .ok();
    let portal = sim
        .post(
            "/v1/billing_portal/sessions",
            &[
                ("customer", cid.as_str()),
                ("return_url", "https://x.example"),
            ],
        )
        .await
        .ok();
    let we = sim
        .post(
            "/v1/webhook_endpoints",
            &[("url", "http://127.0.0.1:9/h"), ("enabled_events[]", "*")],
        )
        .await
        .ok();
    let event = sim.get("/v1/events?limit=1").await.ok()["data"][0].clone();
    let pm = sim
        .get(&format!(
            "/v1/payment_methods/{}",
            sub["default_payment_method"].as_str().unwrap()
        ))
        .await
        .ok();
    let del_ii_src = sim.invoice_item(cid.as_str(), "1").await;
    let del_ii = sim
        .delete(&format!("/v1/invoiceitems/{}", id(&del_ii_src)))
        .await
        .ok();
    let spare = sim.customer("spare@example.com").await;
    let del_cus = sim.delete(&format!("/v1/customers/{spare}")).await.ok();

    let ours: Vec<(&str, Value)> = vec![
        ("customer", customer),
        ("product", product),
        ("price", price),
        ("plan", sub["items"]["data"][0]["plan"].clone()),
        ("subscription", sub.clone()),
        ("subscription_item", sub["items"]["data"][0].clone()),
        ("invoiceitem", ii),
        ("invoice", inv.clone()),
        ("invoice", sub_invoice.clone()),
        ("line_item", inv["lines"]["data"][0].clone()),
        ("line_item", sub_invoice["lines"]["data"][0].clone()),
        ("invoice_payment", invoice_payment),
        ("payment_intent", payment_intent),
        ("checkout.session", cs),
        ("item", items["data"][0].clone()),
        ("billing_portal.session", portal),
        ("billing_portal.configuration", cfg),
        ("webhook_endpoint", we),
        ("event", event),
        ("payment_method", pm),
        ("deleted_invoiceitem", del_ii),
        ("deleted_customer", del_cus),
    ];
    let mut report: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, obj) in &ours {
        let fixture = &fx[*kind];
        assert!(fixture.is_object(), "fixtures3.json has no {kind}");
        let m = missing(fixture, obj);
        if !m.is_empty() {
            report.entry(kind.to_string()).or_default().extend(m);
        }
    }
    assert!(report.is_empty(), "objects lack fixture keys: {report:#?}");
}
