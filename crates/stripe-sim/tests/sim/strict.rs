//! Rules where the simulator is as strict as Stripe (README, "Rules where the simulator is as
//! strict as Stripe"): each test names the rule it holds.

use std::time::Duration;

use serde_json::Value;

use crate::common::{id, Sim, KEY};

const OK: &str = "4242424242424242";
const FAILS: &str = "4000000000000341";

fn header<'a>(r: &'a crate::common::Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A customer with a card as the customer's invoice default.
async fn customer_with_card(sim: &Sim, card: &str) -> String {
    let cid = sim.customer("strict@example.com").await;
    sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", card)])
        .await;
    cid
}

// ---- 1. Checkout saves the card on the subscription only --------------------------------------

#[tokio::test]
async fn checkout_sets_the_subscription_default_not_the_customer_invoice_default() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let cid = sub["customer"].as_str().unwrap().to_string();
    let pm = sub["default_payment_method"].as_str().expect("sub default");
    assert!(pm.starts_with("pm_"));
    let cus = sim.get(&format!("/v1/customers/{cid}")).await.ok();
    assert_eq!(
        cus["invoice_settings"]["default_payment_method"],
        Value::Null
    );
    // Attached to the customer all the same.
    let pms = sim
        .get(&format!("/v1/customers/{cid}/payment_methods"))
        .await
        .ok();
    assert_eq!(pms["data"][0]["id"], pm);
    assert_eq!(pms["data"][0]["customer"], cid.as_str());
    let types = sim.event_types().await;
    assert!(!types.iter().any(|t| t == "customer.updated"));
    // The subscription's invoices are charged with it; a one-off invoice has nothing to charge.
    sim.invoice_item(&cid, "500").await;
    let inv = id(&sim.invoice_with_pending(&cid).await);
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["code"], "resource_missing");
}

// ---- 2. The payment method chain, read at each attempt -------------------------------------------

#[tokio::test]
async fn invoice_default_wins_then_subscription_then_customer() {
    let sim = Sim::start().await;
    let cid = customer_with_card(&sim, FAILS).await;
    // The customer's invoice default declines; the invoice's own default succeeds.
    let good = sim
        .post(
            "/v1/payment_methods/pm_card_visa/attach",
            &[("customer", cid.as_str())],
        )
        .await
        .ok();
    sim.invoice_item(&cid, "700").await;
    let inv = sim
        .post(
            "/v1/invoices",
            &[
                ("customer", cid.as_str()),
                ("pending_invoice_items_behavior", "include"),
                ("default_payment_method", good["id"].as_str().unwrap()),
            ],
        )
        .await
        .ok();
    let paid = sim
        .post(&format!("/v1/invoices/{}/pay", id(&inv)), &[])
        .await
        .ok();
    assert_eq!(paid["status"], "paid");
    // Without one, the customer's declining default is used.
    sim.invoice_item(&cid, "700").await;
    let inv = id(&sim.invoice_with_pending(&cid).await);
    let declined = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(declined.status, 402);
}

#[tokio::test]
async fn paying_with_no_payment_method_fails_like_stripe_and_changes_nothing() {
    let sim = Sim::start().await;
    let cid = sim.customer("nopm@example.com").await;
    sim.invoice_item(&cid, "900").await;
    let inv = id(&sim.invoice_with_pending(&cid).await);
    let before = sim.event_types().await.len();
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["type"], "invalid_request_error");
    assert_eq!(r.err()["code"], "resource_missing");
    assert_eq!(
        r.err()["message"],
        "This customer has no attached payment source or default payment method. Please consider adding a default payment method. For more information, visit https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority."
    );
    assert!(r.err().get("param").is_none());
    let got = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
    assert_eq!(got["status"], "draft", "refused before finalizing");
    assert_eq!(got["attempt_count"], 0);
    assert_eq!(sim.event_types().await.len(), before, "no event");
    // Finalized, it stays open with no attempt counted.
    sim.post(&format!("/v1/invoices/{inv}/finalize"), &[])
        .await
        .ok();
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.status, 400);
    let got = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
    assert_eq!(got["status"], "open");
    assert_eq!(got["attempt_count"], 0);
    assert_eq!(got["attempted"], false);
}

#[tokio::test]
async fn the_portal_card_update_writes_the_customer_default_only_unless_told_otherwise() {
    for (writes, collected) in [("customer", false), ("subscription", true), ("both", true)] {
        let sim = Sim::start().await;
        if writes != "customer" {
            let set = sim
                .ctl("/_sim/portal/card_update_writes", &[("writes", writes)])
                .await;
            assert_eq!(set["portal_card_update_writes"], writes);
        }
        let price = sim.monthly_price(29900).await;
        let sub = sim.subscribe(&price, 3, FAILS).await;
        let sid = id(&sub);
        let cid = sub["customer"].as_str().unwrap().to_string();
        let old_pm = sub["default_payment_method"].as_str().unwrap().to_string();
        sim.advance_days(4).await;
        let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
        assert_eq!(s["status"], "past_due");
        let inv = s["latest_invoice"].as_str().unwrap().to_string();
        let open = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(open["attempt_count"], 1);
        assert!(open["next_payment_attempt"].is_i64());
        let pm = sim
            .ctl(
                "/_sim/portal/update_card",
                &[("customer", cid.as_str()), ("card", OK)],
            )
            .await;
        let pm = id(&pm);
        let cus = sim.get(&format!("/v1/customers/{cid}")).await.ok();
        let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
        let (customer_pm, sub_pm) = match writes {
            "customer" => (Value::from(pm.as_str()), Value::from(old_pm.as_str())),
            "subscription" => (Value::Null, Value::from(pm.as_str())),
            _ => (Value::from(pm.as_str()), Value::from(pm.as_str())),
        };
        assert_eq!(
            cus["invoice_settings"]["default_payment_method"], customer_pm,
            "{writes}"
        );
        assert_eq!(s["default_payment_method"], sub_pm, "{writes}");
        assert_eq!(
            s["status"], "past_due",
            "{writes}: nothing is charged at the update"
        );
        // The retry 3 days after the failure charges the subscription's payment method first: with
        // the customer's default alone updated, it is the old card again.
        sim.advance_days(3).await;
        let after = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(after["attempt_count"], 2, "{writes}");
        let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
        if collected {
            assert_eq!(after["status"], "paid", "{writes}");
            assert_eq!(s["status"], "active", "{writes}");
        } else {
            assert_eq!(after["status"], "open", "{writes}");
            assert_eq!(s["status"], "past_due", "{writes}");
        }
    }
}

#[tokio::test]
async fn an_automatic_attempt_without_any_payment_method_fails_and_is_retried() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(1000).await;
    let cid = sim.customer("trial-nopm@example.com").await;
    let sub = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("trial_period_days", "2"),
            ],
        )
        .await
        .ok();
    assert_eq!(sub["status"], "trialing");
    let sid = id(&sub);
    sim.advance_days(2).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["status"], "past_due");
    let inv = &s["latest_invoice"];
    assert_eq!(inv["status"], "open");
    assert_eq!(inv["attempt_count"], 1);
    assert_eq!(inv["attempted"], true);
    let failed = sim.get("/v1/events?type=invoice.payment_failed").await.ok();
    assert_eq!(failed["data"].as_array().map(Vec::len), Some(1));
    // A card through the portal; the retry collects.
    let ps = sim
        .post("/v1/billing_portal/sessions", &[("customer", cid.as_str())])
        .await
        .ok();
    let r = sim
        .http
        .post(format!("{}/card", ps["url"].as_str().unwrap()))
        .form(&[("cardNumber", OK)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.advance_days(3).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["latest_invoice"]["status"], "paid");
    assert_eq!(s["status"], "active");
}

// ---- 3. Idempotency-Key is 1-255 characters --------------------------------------------------------

#[tokio::test]
async fn idempotency_keys_must_be_1_to_255_characters() {
    let sim = Sim::start().await;
    let long = "k".repeat(256);
    let r = sim
        .post_idem("/v1/customers", &long, &[("email", "long@example.com")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["type"], "invalid_request_error");
    assert_eq!(
        r.err()["message"],
        "Idempotent key length is 256, which is outside accepted lengths. Idempotent Keys must be 1-255 characters long. If you're looking for a decent generator, try using a UUID defined by IETF RFC 4122."
    );
    let empty = sim
        .post_idem("/v1/customers", "", &[("email", "empty@example.com")])
        .await;
    assert_eq!(empty.status, 400);
    assert!(empty.err()["message"]
        .as_str()
        .unwrap()
        .starts_with("Idempotent key length is 0,"));
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(0),
        "nothing created"
    );
    let fits = "k".repeat(255);
    sim.post_idem("/v1/customers", &fits, &[("email", "fits@example.com")])
        .await
        .ok();
}

// ---- 4. A 500 is saved and replayed under its key --------------------------------------------------

#[tokio::test]
async fn a_saved_500_is_replayed_under_its_key() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[
            ("path", "/v1/customers"),
            ("method", "POST"),
            ("status", "500"),
            ("when", "saved"),
        ],
    )
    .await;
    let first = sim
        .post_idem("/v1/customers", "saved-1", &[("email", "s@example.com")])
        .await;
    assert_eq!(first.status, 500);
    assert_eq!(first.err()["type"], "api_error");
    assert_eq!(header(&first, "stripe-should-retry"), Some("false"));
    assert!(header(&first, "idempotent-replayed").is_none());
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(0),
        "nothing applied"
    );
    // The fault is spent, yet the same key gets the same 500 back.
    for _ in 0..2 {
        let again = sim
            .post_idem("/v1/customers", "saved-1", &[("email", "s@example.com")])
            .await;
        assert_eq!(again.status, 500);
        assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
        assert_eq!(header(&again, "stripe-should-retry"), Some("false"));
        assert_eq!(again.err()["message"], first.err()["message"]);
    }
    // A fresh key runs the request.
    sim.post_idem("/v1/customers", "saved-2", &[("email", "s@example.com")])
        .await
        .ok();

    // `saved_after`: applied, but the 500 is what the key keeps.
    sim.ctl(
        "/_sim/faults",
        &[
            ("path", "/v1/invoiceitems"),
            ("status", "503"),
            ("when", "saved_after"),
        ],
    )
    .await;
    let cid = sim.customer("sa@example.com").await;
    let form = [
        ("customer", cid.as_str()),
        ("amount", "100"),
        ("currency", "usd"),
    ];
    let r = sim.post_idem("/v1/invoiceitems", "saved-3", &form).await;
    assert_eq!(r.status, 503);
    let items = sim
        .get(&format!("/v1/invoiceitems?customer={cid}"))
        .await
        .ok();
    assert_eq!(items["data"].as_array().map(Vec::len), Some(1), "applied");
    let again = sim.post_idem("/v1/invoiceitems", "saved-3", &form).await;
    assert_eq!(again.status, 503);
    assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
    let items = sim
        .get(&format!("/v1/invoiceitems?customer={cid}"))
        .await
        .ok();
    assert_eq!(items["data"].as_array().map(Vec::len), Some(1), "once");
    // A saved fault needs a 5xx.
    let bad = sim
        .send(
            sim.http
                .post(sim.url("/_sim/faults"))
                .form(&[("status", "402"), ("when", "saved")]),
        )
        .await;
    assert_eq!(bad.status, 400);
}

// ---- 5. Lock timeouts carry Stripe-Should-Retry; a concurrent key is 409 --------------------------

#[tokio::test]
async fn lock_timeouts_advise_a_retry() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[("path", "/v1/invoices"), ("status", "409")],
    )
    .await;
    let r = sim.get("/v1/invoices").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.err()["code"], "lock_timeout");
    assert_eq!(header(&r, "stripe-should-retry"), Some("true"));
    sim.ctl(
        "/_sim/faults",
        &[
            ("path", "/v1/invoices"),
            ("status", "429"),
            ("code", "lock_timeout"),
        ],
    )
    .await;
    let r = sim.get("/v1/invoices").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.err()["code"], "lock_timeout");
    assert_eq!(header(&r, "stripe-should-retry"), Some("true"));
}

#[tokio::test]
async fn a_concurrent_request_with_the_same_key_is_409_in_use() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[
            ("path", "/v1/customers"),
            ("method", "POST"),
            ("delay_ms", "600"),
        ],
    )
    .await;
    let slow = {
        let http = sim.http.clone();
        let url = sim.url("/v1/customers");
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", "busy-1")
                .form(&[("email", "busy@example.com")])
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dup = sim
        .post_idem("/v1/customers", "busy-1", &[("email", "busy@example.com")])
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.err()["code"], "idempotency_key_in_use");
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    // Once done, the same key replays the result.
    let replay = sim
        .post_idem("/v1/customers", "busy-1", &[("email", "busy@example.com")])
        .await;
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));
}

// ---- 6. A $0 invoice is paid at finalization; paying it again fails ------------------------------

#[tokio::test]
async fn a_zero_invoice_is_paid_at_finalization_and_cannot_be_paid_again() {
    let sim = Sim::start().await;
    let cid = sim.customer("zero@example.com").await;
    let inv = sim
        .post(
            "/v1/invoices",
            &[("customer", cid.as_str()), ("auto_advance", "false")],
        )
        .await
        .ok();
    let fin = sim
        .post(&format!("/v1/invoices/{}/finalize", id(&inv)), &[])
        .await
        .ok();
    assert_eq!(fin["status"], "paid");
    assert_eq!(fin["amount_due"], 0);
    assert!(fin["status_transitions"]["paid_at"].is_i64());
    let again = sim
        .post(&format!("/v1/invoices/{}/pay", id(&inv)), &[])
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.err()["type"], "invalid_request_error");
    assert_eq!(again.err()["message"], "Invoice is already paid");
}

// ---- 8. payment_method_types are Stripe's type names ---------------------------------------------

#[tokio::test]
async fn unknown_payment_method_types_are_refused() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(1000).await;
    let base = [
        ("mode", "subscription"),
        ("line_items[0][price]", price.as_str()),
        ("success_url", "https://app.example/ok"),
    ];
    let mut form = base.to_vec();
    for t in [
        "card",
        "us_bank_account",
        "link",
        "acss_debit",
        "bacs_debit",
        "au_becs_debit",
    ] {
        form.push(("payment_method_types[]", t));
    }
    let ok = sim.post("/v1/checkout/sessions", &form).await.ok();
    assert_eq!(ok["payment_method_types"].as_array().map(Vec::len), Some(6));
    let mut form = base.to_vec();
    form.push(("payment_method_types[]", "card"));
    form.push(("payment_method_types[]", "bitcoin"));
    let r = sim.post("/v1/checkout/sessions", &form).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["type"], "invalid_request_error");
    assert_eq!(r.err()["param"], "payment_method_types[1]");
    let msg = r.err()["message"].as_str().unwrap();
    assert!(msg.starts_with("Invalid payment_method_types[1]: must be one of card, acss_debit,"));
    assert!(msg.ends_with(", or zip."));
    let list = sim.get("/v1/checkout/sessions").await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

// ---- 9. Per-endpoint rate limits -------------------------------------------------------------------

async fn count_limited(sim: &Sim, path: &str, n: usize) -> usize {
    let mut limited = 0;
    for _ in 0..n {
        let r = sim.get(path).await;
        match r.status {
            200 => {}
            429 => {
                assert_eq!(r.err()["code"], "rate_limit");
                limited += 1;
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    limited
}

#[tokio::test]
async fn search_and_single_endpoints_have_stripes_own_limits() {
    let sim = Sim::start().await;
    let cid = sim.customer("rl@example.com").await;
    // A global limit far above the per-endpoint ones.
    let on = sim
        .ctl("/_sim/rate_limit", &[("per_second", "100000")])
        .await;
    assert_eq!(on["limits"]["search_per_second"], 20);
    assert_eq!(on["limits"]["endpoint_per_second"], 25);
    let search = "/v1/customers/search?query=email%3A%27rl%40example.com%27";
    // 70 searches span at most a few one-second windows: at least one holds more than 20.
    assert!(count_limited(&sim, search, 70).await > 0);
    assert!(count_limited(&sim, &format!("/v1/customers/{cid}"), 90).await > 0);
    // Off: only the global limit.
    sim.ctl(
        "/_sim/rate_limit",
        &[("per_second", "100000"), ("per_endpoint", "false")],
    )
    .await;
    assert_eq!(count_limited(&sim, search, 70).await, 0);
    sim.ctl("/_sim/rate_limit", &[("per_second", "0")]).await;
    assert_eq!(count_limited(&sim, search, 70).await, 0);
}

#[tokio::test]
async fn a_subscription_gets_at_most_10_new_invoices_a_minute() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(1000).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let (sid, cid) = (id(&sub), sub["customer"].as_str().unwrap().to_string());
    sim.ctl("/_sim/rate_limit", &[("per_second", "100000")])
        .await;
    let form = [("customer", cid.as_str()), ("subscription", sid.as_str())];
    for _ in 0..10 {
        sim.post("/v1/invoices", &form).await.ok();
    }
    let r = sim.post("/v1/invoices", &form).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.err()["code"], "rate_limit");
    // Other subscriptions' and one-off invoices are not counted.
    sim.post("/v1/invoices", &[("customer", cid.as_str())])
        .await
        .ok();
}

// ---- 10. pause_collection --------------------------------------------------------------------------

async fn pause(sim: &Sim, sid: &str, form: &[(&str, &str)]) -> Value {
    sim.post(&format!("/v1/subscriptions/{sid}"), form)
        .await
        .ok()
}

#[tokio::test]
async fn pause_collection_void_voids_renewals_and_keeps_the_subscription_active() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let sid = id(&sub);
    assert_eq!(sub["pause_collection"], Value::Null);
    let paused = pause(&sim, &sid, &[("pause_collection[behavior]", "void")]).await;
    assert_eq!(paused["pause_collection"]["behavior"], "void");
    assert_eq!(paused["pause_collection"]["resumes_at"], Value::Null);
    assert_eq!(paused["status"], "active");
    let upd = sim
        .get("/v1/events?type=customer.subscription.updated&limit=1")
        .await
        .ok();
    let prev = &upd["data"][0]["data"]["previous_attributes"];
    assert!(prev.as_object().unwrap().contains_key("pause_collection"));
    assert_eq!(prev["pause_collection"], Value::Null);

    let n_succeeded = sim
        .get("/v1/events?type=invoice.payment_succeeded")
        .await
        .ok()["data"]
        .as_array()
        .unwrap()
        .len();
    sim.advance_days(32).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["status"], "active");
    let inv = &s["latest_invoice"];
    assert_eq!(inv["billing_reason"], "subscription_cycle");
    assert_eq!(inv["status"], "void");
    assert_eq!(inv["amount_paid"], 0);
    let voided = sim.get("/v1/events?type=invoice.voided").await.ok();
    assert_eq!(voided["data"][0]["data"]["object"]["id"], inv["id"]);
    let succeeded = sim
        .get("/v1/events?type=invoice.payment_succeeded")
        .await
        .ok();
    assert_eq!(
        succeeded["data"].as_array().unwrap().len(),
        n_succeeded,
        "nothing charged"
    );
    // `pause_collection=` clears it; the next renewal is charged.
    let resumed = pause(&sim, &sid, &[("pause_collection", "")]).await;
    assert_eq!(resumed["pause_collection"], Value::Null);
    sim.advance_days(31).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["latest_invoice"]["status"], "paid");
}

#[tokio::test]
async fn pause_collection_keep_as_draft_and_mark_uncollectible() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let a = id(&sim.subscribe(&price, 0, OK).await);
    let b = id(&sim.subscribe(&price, 0, OK).await);
    pause(&sim, &a, &[("pause_collection[behavior]", "keep_as_draft")]).await;
    pause(
        &sim,
        &b,
        &[("pause_collection[behavior]", "mark_uncollectible")],
    )
    .await;
    sim.advance_days(32).await;
    let sa = sim
        .get(&format!("/v1/subscriptions/{a}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(sa["status"], "active");
    assert_eq!(sa["latest_invoice"]["status"], "draft");
    assert_eq!(sa["latest_invoice"]["auto_advance"], false);
    let sb = sim
        .get(&format!("/v1/subscriptions/{b}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(sb["status"], "active");
    assert_eq!(sb["latest_invoice"]["status"], "uncollectible");
    assert!(sb["latest_invoice"]["number"].is_string(), "finalized");
    // Drafts kept while paused stay drafts: nothing finalizes or charges them later.
    sim.advance_days(3).await;
    let draft = sim
        .get(&format!(
            "/v1/invoices/{}",
            sa["latest_invoice"]["id"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(draft["status"], "draft");
}

#[tokio::test]
async fn pause_collection_resumes_at_and_validation() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let sid = id(&sub);
    let now = sim.ctl_get("/_sim/clock").await["now"].as_i64().unwrap();
    let resumes = (now + 10 * 86_400).to_string();
    let paused = pause(
        &sim,
        &sid,
        &[
            ("pause_collection[behavior]", "void"),
            ("pause_collection[resumes_at]", resumes.as_str()),
        ],
    )
    .await;
    assert_eq!(
        paused["pause_collection"]["resumes_at"],
        resumes.parse::<i64>().unwrap()
    );
    sim.advance_days(11).await;
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["pause_collection"], Value::Null, "resumed at resumes_at");
    let upd = sim
        .get("/v1/events?type=customer.subscription.updated&limit=1")
        .await
        .ok();
    assert_eq!(
        upd["data"][0]["data"]["previous_attributes"]["pause_collection"]["behavior"],
        "void"
    );
    // The renewal after resuming is charged.
    sim.advance_days(25).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["latest_invoice"]["status"], "paid");

    let missing = sim
        .post(
            &format!("/v1/subscriptions/{sid}"),
            &[("pause_collection[resumes_at]", resumes.as_str())],
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.err()["code"], "parameter_missing");
    assert_eq!(missing.err()["param"], "pause_collection[behavior]");
    let bad = sim
        .post(
            &format!("/v1/subscriptions/{sid}"),
            &[("pause_collection[behavior]", "skip")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.err()["param"], "pause_collection[behavior]");
}

// ---- 11. Other money-path rules ----------------------------------------------------------------------

#[tokio::test]
async fn payment_methods_must_belong_to_the_customer() {
    let sim = Sim::start().await;
    let a = customer_with_card(&sim, OK).await;
    let b = sim.customer("other@example.com").await;
    let a_pm = sim.get(&format!("/v1/customers/{a}")).await.ok()["invoice_settings"]
        ["default_payment_method"]
        .as_str()
        .unwrap()
        .to_string();
    let r = sim
        .post(
            &format!("/v1/customers/{b}"),
            &[("invoice_settings[default_payment_method]", a_pm.as_str())],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["param"], "invoice_settings[default_payment_method]");
    assert_eq!(
        r.err()["message"],
        format!("The customer does not have a payment method with the ID {a_pm}. The payment method must be attached to the customer.")
    );
    let inv = sim
        .post(
            "/v1/invoices",
            &[
                ("customer", b.as_str()),
                ("default_payment_method", a_pm.as_str()),
            ],
        )
        .await;
    assert_eq!(inv.status, 400);
    let attach = sim
        .post(
            &format!("/v1/payment_methods/{a_pm}/attach"),
            &[("customer", b.as_str())],
        )
        .await;
    assert_eq!(attach.status, 400);
}

#[tokio::test]
async fn invoice_items_match_the_invoice_and_stay_under_250() {
    let sim = Sim::start().await;
    let cid = sim.customer("items@example.com").await;
    let inv = id(&sim
        .post("/v1/invoices", &[("customer", cid.as_str())])
        .await
        .ok());
    let eur = sim
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("invoice", inv.as_str()),
                ("amount", "100"),
                ("currency", "eur"),
            ],
        )
        .await;
    assert_eq!(eur.status, 400);
    assert_eq!(eur.err()["param"], "currency");
    for _ in 0..250 {
        sim.post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("invoice", inv.as_str()),
                ("amount", "1"),
                ("currency", "usd"),
            ],
        )
        .await
        .ok();
    }
    let over = sim
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("invoice", inv.as_str()),
                ("amount", "1"),
                ("currency", "usd"),
            ],
        )
        .await;
    assert_eq!(over.status, 400);
    assert_eq!(over.err()["param"], "invoice");
    let got = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
    assert_eq!(got["total"], 250);
}

#[tokio::test]
async fn metadata_has_at_most_50_keys() {
    let sim = Sim::start().await;
    let keys: Vec<String> = (0..51).map(|i| format!("metadata[k{i}]")).collect();
    let form: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    let r = sim.post("/v1/customers", &form).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["param"], "metadata");
    sim.post("/v1/customers", &form[..50]).await.ok();
}

// ---- 12. Indexes stay right as objects change ----------------------------------------------------

#[tokio::test]
async fn indexed_lookups_follow_updates() {
    let sim = Sim::start().await;
    let a = sim.customer("a@example.com").await;
    let b = sim.customer("b@example.com").await;
    sim.post(
        &format!("/v1/customers/{a}"),
        &[("metadata[tenant_id]", "t-1")],
    )
    .await
    .ok();
    let q =
        |v: &str| format!("/v1/customers/search?query=metadata%5B%27tenant_id%27%5D%3A%27{v}%27");
    let found = sim.get(&q("t-1")).await.ok();
    assert_eq!(found["total_count"], 1);
    assert_eq!(found["data"][0]["id"], a.as_str());
    sim.post(
        &format!("/v1/customers/{a}"),
        &[("metadata[tenant_id]", "t-2")],
    )
    .await
    .ok();
    sim.post(
        &format!("/v1/customers/{b}"),
        &[("metadata[tenant_id]", "t-2")],
    )
    .await
    .ok();
    assert_eq!(sim.get(&q("t-1")).await.ok()["total_count"], 0);
    let both = sim.get(&q("t-2")).await.ok();
    assert_eq!(both["total_count"], 2);
    assert_eq!(both["data"][0]["id"], b.as_str(), "newest first");
    // AND with another clause narrows; OR and negation read everything.
    let and = sim
        .get("/v1/customers/search?query=metadata%5B%27tenant_id%27%5D%3A%27t-2%27%20AND%20email%3A%27A%40EXAMPLE.COM%27")
        .await
        .ok();
    assert_eq!(and["total_count"], 1);
    let not = sim
        .get("/v1/customers/search?query=-metadata%5B%27tenant_id%27%5D%3A%27t-2%27")
        .await
        .ok();
    assert_eq!(not["total_count"], 0);
    let by_email = sim.get("/v1/customers?email=b@example.com").await.ok();
    assert_eq!(by_email["data"][0]["id"], b.as_str());
    sim.post(&format!("/v1/customers/{b}"), &[("email", "c@example.com")])
        .await
        .ok();
    let gone = sim.get("/v1/customers?email=b@example.com").await.ok();
    assert_eq!(gone["data"].as_array().map(Vec::len), Some(0));

    // Pending items move under their invoice; deleting the draft puts them back.
    sim.invoice_item(&a, "100").await;
    sim.invoice_item(&a, "200").await;
    let pending = format!("/v1/invoiceitems?customer={a}&pending=true");
    assert_eq!(
        sim.get(&pending).await.ok()["data"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let inv = id(&sim.invoice_with_pending(&a).await);
    assert_eq!(
        sim.get(&pending).await.ok()["data"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let on_inv = sim
        .get(&format!("/v1/invoiceitems?invoice={inv}"))
        .await
        .ok();
    assert_eq!(on_inv["data"].as_array().map(Vec::len), Some(2));
    sim.delete(&format!("/v1/invoices/{inv}")).await.ok();
    assert_eq!(
        sim.get(&pending).await.ok()["data"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Pagination through an index.
    for _ in 0..3 {
        sim.post("/v1/invoices", &[("customer", b.as_str())])
            .await
            .ok();
    }
    let page = sim
        .get(&format!("/v1/invoices?customer={b}&limit=2"))
        .await
        .ok();
    assert_eq!(page["has_more"], true);
    let last = page["data"][1]["id"].as_str().unwrap();
    let next = sim
        .get(&format!(
            "/v1/invoices?customer={b}&limit=2&starting_after={last}"
        ))
        .await
        .ok();
    assert_eq!(next["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(next["has_more"], false);
    let first = next["data"][0]["id"].as_str().unwrap();
    let back = sim
        .get(&format!(
            "/v1/invoices?customer={b}&limit=5&ending_before={first}"
        ))
        .await
        .ok();
    assert_eq!(back["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(back["has_more"], false);
}
