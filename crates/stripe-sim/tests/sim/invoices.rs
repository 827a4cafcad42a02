use serde_json::Value;

use crate::common::{id, Sim};

async fn customer_with_card(sim: &Sim, card: &str) -> String {
    let cid = sim.customer("inv@example.com").await;
    sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", card)])
        .await;
    cid
}

#[tokio::test]
async fn invoice_lifecycle_totals_and_events() {
    let sim = Sim::start().await;
    let cid = customer_with_card(&sim, "4242424242424242").await;
    // A pending item that an `exclude` invoice must not pick up.
    sim.invoice_item(cid.as_str(), "999").await;
    let inv = sim
        .post(
            "/v1/invoices",
            &[
                ("customer", cid.as_str()),
                ("pending_invoice_items_behavior", "exclude"),
                ("collection_method", "send_invoice"),
                ("days_until_due", "14"),
                ("metadata[tenant_id]", "t-1"),
                ("metadata[billing_period]", "2026-09"),
                (
                    "description",
                    "Voice usage and phone calls for September 2026",
                ),
            ],
        )
        .await
        .ok();
    let iid = id(&inv);
    assert_eq!(inv["status"], "draft");
    assert_eq!(inv["total"], 0);
    assert_eq!(inv["hosted_invoice_url"], Value::Null);
    for (amount, desc) in [
        (
            "12345",
            "Voice Usage: 123,450 words (STT: 100,000, TTS: 23,450)",
        ),
        ("1700", "Phone Calls: 17 calls"),
    ] {
        let ii = sim
            .post(
                "/v1/invoiceitems",
                &[
                    ("customer", cid.as_str()),
                    ("invoice", iid.as_str()),
                    ("amount", amount),
                    ("currency", "usd"),
                    ("description", desc),
                ],
            )
            .await
            .ok();
        assert_eq!(ii["invoice"], iid.as_str());
    }
    let inv = sim.get(&format!("/v1/invoices/{iid}")).await.ok();
    for k in ["subtotal", "total", "amount_due", "amount_remaining"] {
        assert_eq!(inv[k], 14045, "{k}");
    }
    assert_eq!(inv["lines"]["data"].as_array().map(Vec::len), Some(2));
    let line = &inv["lines"]["data"][0];
    assert_eq!(line["parent"]["type"], "invoice_item_details");
    assert!(line["parent"]["invoice_item_details"]["invoice_item"]
        .as_str()
        .unwrap()
        .starts_with("ii_"));
    let lines = sim
        .get(&format!("/v1/invoices/{iid}/lines?limit=1"))
        .await
        .ok();
    assert_eq!(lines["has_more"], true);

    let upd = sim
        .post(&format!("/v1/invoices/{iid}"), &[("footer", "Thanks")])
        .await
        .ok();
    assert_eq!(upd["footer"], "Thanks");

    let fin = sim
        .post(&format!("/v1/invoices/{iid}/finalize"), &[])
        .await
        .ok();
    assert_eq!(fin["status"], "open");
    assert!(fin["number"].as_str().unwrap().ends_with("-0001"));
    assert!(fin["status_transitions"]["finalized_at"].is_i64());
    assert!(fin["due_date"].is_i64());
    let hosted = fin["hosted_invoice_url"].as_str().unwrap().to_string();
    let page = sim
        .http
        .get(&hosted)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("$140.45") && page.contains("Phone Calls: 17 calls"));
    // The invoice's description (what it is for, here the month) is on the page a customer opens.
    assert!(
        page.contains(
            "<p id=\"invoice-description\">Voice usage and phone calls for September 2026</p>"
        ),
        "{page}"
    );

    let late = sim
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("invoice", iid.as_str()),
                ("amount", "1"),
                ("currency", "usd"),
            ],
        )
        .await;
    assert_eq!(late.status, 400, "finalized invoices take no more items");
    let refinal = sim.post(&format!("/v1/invoices/{iid}/finalize"), &[]).await;
    assert_eq!(refinal.status, 400);

    let sent = sim
        .post(&format!("/v1/invoices/{iid}/send"), &[])
        .await
        .ok();
    assert_eq!(sent["status"], "open");
    let paid = sim.post(&format!("/v1/invoices/{iid}/pay"), &[]).await.ok();
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], 14045);
    assert_eq!(paid["amount_remaining"], 0);
    assert!(paid["status_transitions"]["paid_at"].is_i64());
    let twice = sim.post(&format!("/v1/invoices/{iid}/pay"), &[]).await;
    assert_eq!(twice.status, 400);

    let events = sim.event_types().await;
    let tail: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("invoice."))
        .collect();
    assert_eq!(
        tail,
        [
            "invoice.created",
            "invoice.updated",
            "invoice.finalized",
            "invoice.sent",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );

    let found = sim
        .get("/v1/invoices/search?query=metadata%5B%27tenant_id%27%5D%3A%27t-1%27%20AND%20metadata%5B%27billing_period%27%5D%3A%272026-09%27")
        .await
        .ok();
    assert_eq!(found["data"][0]["id"], iid.as_str());
    let by_status = sim
        .get(&format!("/v1/invoices?customer={cid}&status=paid"))
        .await
        .ok();
    assert_eq!(by_status["data"].as_array().map(Vec::len), Some(1));
    let open = sim
        .get(&format!("/v1/invoices?customer={cid}&status=open"))
        .await
        .ok();
    assert_eq!(open["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn include_pending_items_void_and_delete() {
    let sim = Sim::start().await;
    let cid = customer_with_card(&sim, "4242424242424242").await;
    for amount in ["100", "250"] {
        sim.invoice_item(cid.as_str(), amount).await;
    }
    let inv = sim.invoice_with_pending(cid.as_str()).await;
    assert_eq!(inv["total"], 350);
    let iid = id(&inv);
    let items = sim
        .get(&format!("/v1/invoiceitems?invoice={iid}"))
        .await
        .ok();
    assert_eq!(items["data"].as_array().map(Vec::len), Some(2));
    let del = sim.delete(&format!("/v1/invoices/{iid}")).await.ok();
    assert_eq!(del["deleted"], true);
    let pending = sim
        .get(&format!("/v1/invoiceitems?customer={cid}&pending=true"))
        .await
        .ok();
    assert_eq!(
        pending["data"].as_array().map(Vec::len),
        Some(2),
        "items return to pending"
    );

    let inv = sim.invoice_with_pending(cid.as_str()).await;
    let iid = id(&inv);
    let void_draft = sim.post(&format!("/v1/invoices/{iid}/void"), &[]).await;
    assert_eq!(void_draft.status, 400);
    sim.post(&format!("/v1/invoices/{iid}/finalize"), &[])
        .await
        .ok();
    let voided = sim
        .post(&format!("/v1/invoices/{iid}/void"), &[])
        .await
        .ok();
    assert_eq!(voided["status"], "void");
    assert_eq!(voided["amount_remaining"], 0);
    assert!(voided["status_transitions"]["voided_at"].is_i64());
    let list = sim
        .get(&format!("/v1/invoices?status=void&customer={cid}"))
        .await
        .ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn failing_card_keeps_invoice_open() {
    let sim = Sim::start().await;
    let cid = customer_with_card(&sim, "4000000000000341").await;
    sim.invoice_item(cid.as_str(), "500").await;
    let iid = id(&sim.invoice_with_pending(cid.as_str()).await);
    let r = sim.post(&format!("/v1/invoices/{iid}/pay"), &[]).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.err()["code"], "card_declined");
    let inv = sim.get(&format!("/v1/invoices/{iid}")).await.ok();
    assert_eq!(inv["status"], "open", "pay finalizes the draft first");
    assert_eq!(inv["attempt_count"], 1);
    assert_eq!(inv["amount_paid"], 0);
    let failed = sim.get("/v1/events?type=invoice.payment_failed").await.ok();
    assert_eq!(failed["data"].as_array().map(Vec::len), Some(1));
    let oob = sim
        .post(
            &format!("/v1/invoices/{iid}/pay"),
            &[("paid_out_of_band", "true")],
        )
        .await
        .ok();
    assert_eq!(oob["status"], "paid");
}

#[tokio::test]
async fn create_preview_and_auto_advance() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let cid = sub["customer"].as_str().unwrap().to_string();
    sim.invoice_item(cid.as_str(), "700").await;
    let preview = sim
        .post(
            "/v1/invoices/create_preview",
            &[("customer", cid.as_str()), ("subscription", &id(&sub))],
        )
        .await
        .ok();
    assert_eq!(preview["total"], 30600);
    assert_eq!(preview["id"], Value::Null);
    let n = sim.get("/v1/invoices?limit=100").await.ok()["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 1, "a preview saves nothing");

    let cid2 = customer_with_card(&sim, "4242424242424242").await;
    sim.invoice_item(cid2.as_str(), "800").await;
    let draft = sim
        .post(
            "/v1/invoices",
            &[
                ("customer", cid2.as_str()),
                ("pending_invoice_items_behavior", "include"),
                ("auto_advance", "true"),
            ],
        )
        .await
        .ok();
    assert!(draft["automatically_finalizes_at"].is_i64());
    sim.ctl("/_sim/clock/advance", &[("seconds", "7300")]).await;
    let inv = sim.get(&format!("/v1/invoices/{}", id(&draft))).await.ok();
    assert_eq!(
        inv["status"], "paid",
        "auto-advance finalizes after an hour, then charges"
    );
}
