//! How a payment that does not go through at once is collected, as strictly as Stripe: a card that
//! needs authentication, bank debits that are processing for days, SEPA's currency, which invoices
//! Stripe retries, and how much of an invoice it embeds (README, "Rules where the simulator is as
//! strict as Stripe").

use serde_json::Value;

use crate::common::{id, Sim};

const OK: &str = "4242424242424242";
const AUTH: &str = "4000002760003184";
const BANK_OK: &str = "000123456789";
const BANK_NO_FUNDS: &str = "000222222227";
const BANK_CLOSED: &str = "000111111113";

/// The invoice with its default payment's PaymentIntent expanded (`payments` is includable: asked
/// for by name, then expanded inside).
async fn invoice_with_payment(sim: &Sim, inv: &str) -> Value {
    sim.get(&format!(
        "/v1/invoices/{inv}?expand[]=payments&expand[]=payments.data.payment.payment_intent"
    ))
    .await
    .ok()
}

fn intent(inv: &Value) -> &Value {
    &inv["payments"]["data"][0]["payment"]["payment_intent"]
}

async fn events_of(sim: &Sim, kind: &str) -> Vec<Value> {
    sim.get(&format!("/v1/events?type={kind}&limit=100"))
        .await
        .ok()["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// An open subscription Checkout session for `price` offering `types`.
async fn session(sim: &Sim, price: &str, types: &[&str]) -> String {
    let mut form = vec![
        ("mode", "subscription"),
        ("line_items[0][price]", price),
        ("success_url", "https://app.example/ok"),
    ];
    form.extend(types.iter().map(|t| ("payment_method_types[]", *t)));
    id(&sim.post("/v1/checkout/sessions", &form).await.ok())
}

/// Completes a session with a bank account, as the hosted page's bank form does.
async fn pay_by_bank(sim: &Sim, session: &str, account: &str) -> Value {
    sim.ctl(
        &format!("/_sim/checkout/sessions/{session}/complete"),
        &[
            ("payment_method_type", "us_bank_account"),
            ("account_number", account),
        ],
    )
    .await
}

/// A one-off invoice of `amount` cents for `customer`, finalized (not yet charged).
async fn one_off_invoice(sim: &Sim, customer: &str, amount: &str, auto_advance: bool) -> String {
    sim.invoice_item(customer, amount).await;
    let inv = id(&sim.invoice_with_pending(customer).await);
    let advance = if auto_advance { "true" } else { "false" };
    sim.post(
        &format!("/v1/invoices/{inv}/finalize"),
        &[("auto_advance", advance)],
    )
    .await
    .ok();
    inv
}

#[tokio::test]
async fn a_card_that_needs_authentication_fails_off_session_until_the_customer_confirms() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    // Checkout is on-session: the customer authenticates there (a trial charges nothing anyway).
    let sub = sim.subscribe(&price, 3, AUTH).await;
    let sid = id(&sub);
    assert_eq!(sub["status"], "trialing");
    // The renewal at the trial's end is off-session: the bank asks for authentication.
    sim.advance_days(4).await;
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "past_due", "awaiting the customer's action");
    let inv = s["latest_invoice"].as_str().unwrap().to_string();
    let open = invoice_with_payment(&sim, &inv).await;
    assert_eq!(open["status"], "open");
    assert_eq!(open["attempt_count"], 1);
    assert_eq!(intent(&open)["object"], "payment_intent");
    assert_eq!(intent(&open)["status"], "requires_action");
    assert_eq!(
        intent(&open)["last_payment_error"]["code"],
        "authentication_required"
    );
    let action = events_of(&sim, "invoice.payment_action_required").await;
    assert_eq!(action.len(), 1);
    assert_eq!(action[0]["data"]["object"]["id"], inv.as_str());
    // `/pay` is off-session too: refused with the invoice's own code (the PaymentIntent keeps the
    // card's), one more attempt, one more event.
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.err()["type"], "card_error");
    assert_eq!(r.err()["code"], "invoice_payment_intent_requires_action");
    assert_eq!(r.err()["decline_code"], Value::Null);
    assert!(r.err()["message"]
        .as_str()
        .unwrap()
        .starts_with("This payment requires additional user action"));
    let after = invoice_with_payment(&sim, &inv).await;
    assert_eq!(after["attempt_count"], 2);
    assert_eq!(
        intent(&after)["last_payment_error"]["code"],
        "authentication_required"
    );
    assert_eq!(
        events_of(&sim, "invoice.payment_action_required")
            .await
            .len(),
        2
    );
    // Retries cannot authenticate either.
    sim.advance_days(3).await;
    let retried = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
    assert_eq!(retried["status"], "open");
    assert_eq!(retried["attempt_count"], 3);
    // The hosted invoice page asks the customer to confirm, and its button pays.
    let page_url = retried["hosted_invoice_url"].as_str().unwrap().to_string();
    let html = sim.page(&page_url).await;
    assert!(html.contains("id=\"confirm-payment\""), "{html}");
    assert!(html.contains("Your bank asks you to confirm this payment"));
    let r = sim
        .http
        .post(format!("{page_url}/confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let paid = invoice_with_payment(&sim, &inv).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(intent(&paid)["status"], "succeeded");
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "active");
}

#[tokio::test]
async fn the_confirm_control_route_pays_what_requires_action_and_nothing_else() {
    let sim = Sim::start().await;
    let cid = sim.customer("auth@example.com").await;
    sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", AUTH)])
        .await;
    let inv = one_off_invoice(&sim, &cid, "1500", false).await;
    // Nothing required action yet: the route refuses.
    let r = sim
        .send(
            sim.http
                .post(sim.url(&format!("/_sim/invoices/{inv}/confirm"))),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.err()["code"], "invoice_payment_intent_requires_action");
    let paid = sim.ctl(&format!("/_sim/invoices/{inv}/confirm"), &[]).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], 1500);
}

#[tokio::test]
async fn an_ach_debit_is_processing_for_four_days_then_succeeds() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cs = session(&sim, &price, &["card", "us_bank_account"]).await;
    let done = pay_by_bank(&sim, &cs, BANK_OK).await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["payment_status"], "unpaid", "a debit is not paid yet");
    let sub = sim
        .get(&format!(
            "/v1/subscriptions/{}?expand[]=default_payment_method",
            done["subscription"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(sub["default_payment_method"]["type"], "us_bank_account");
    assert_eq!(
        sub["default_payment_method"]["us_bank_account"]["last4"],
        "6789"
    );
    assert_eq!(sub["status"], "active");
    let inv = sub["latest_invoice"].as_str().unwrap().to_string();
    let processing = invoice_with_payment(&sim, &inv).await;
    assert_eq!(processing["status"], "open");
    assert_eq!(intent(&processing)["status"], "processing");
    assert_eq!(processing["next_payment_attempt"], Value::Null);
    // Paying again while the debit is in flight is refused.
    let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(r.status, 400);
    sim.advance_days(3).await;
    let still = invoice_with_payment(&sim, &inv).await;
    assert_eq!(intent(&still)["status"], "processing", "after 3 days");
    sim.advance_days(1).await;
    let paid = invoice_with_payment(&sim, &inv).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(intent(&paid)["status"], "succeeded");
    let cs = sim.get(&format!("/v1/checkout/sessions/{cs}")).await.ok();
    assert_eq!(cs["payment_status"], "paid");
    assert_eq!(
        events_of(&sim, "checkout.session.async_payment_succeeded")
            .await
            .len(),
        1
    );
    assert!(events_of(&sim, "invoice.payment_failed").await.is_empty());
}

#[tokio::test]
async fn an_ach_debit_from_a_failing_test_account_fails_after_four_days() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cs = session(&sim, &price, &["us_bank_account"]).await;
    // A card is not what this session offers.
    let r = sim
        .send(
            sim.http
                .post(sim.url(&format!("/_sim/checkout/sessions/{cs}/complete")))
                .form(&[("card", OK)]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let done = pay_by_bank(&sim, &cs, BANK_NO_FUNDS).await;
    let sid = done["subscription"].as_str().unwrap().to_string();
    let inv = done["invoice"].as_str().unwrap().to_string();
    sim.advance_days(4).await;
    let failed = invoice_with_payment(&sim, &inv).await;
    assert_eq!(failed["status"], "open");
    assert_eq!(intent(&failed)["status"], "requires_payment_method");
    assert_eq!(
        intent(&failed)["last_payment_error"]["code"],
        "insufficient_funds"
    );
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "past_due");
    assert_eq!(events_of(&sim, "invoice.payment_failed").await.len(), 1);
    assert_eq!(
        events_of(&sim, "checkout.session.async_payment_failed")
            .await
            .len(),
        1
    );
}

/// Stripe blocks a bank account whose debit came back for a reason other than insufficient funds:
/// the next debit of it fails at once (no days of processing), with its own code; an account that was
/// short of funds is debited again as usual.
#[tokio::test]
async fn a_bank_account_returned_closed_is_not_debited_again() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let mut invoices = Vec::new();
    for account in [BANK_CLOSED, BANK_NO_FUNDS] {
        let cs = session(&sim, &price, &["us_bank_account"]).await;
        let done = pay_by_bank(&sim, &cs, account).await;
        invoices.push(done["invoice"].as_str().unwrap().to_string());
    }
    sim.advance_days(4).await;
    let closed = invoice_with_payment(&sim, &invoices[0]).await;
    let error = &intent(&closed)["last_payment_error"];
    assert_eq!(error["code"], "account_closed", "{error}");
    assert_eq!(error["decline_code"], "bank_account_closed", "{error}");
    assert_eq!(error["payment_method"]["type"], "us_bank_account");
    let failures = events_of(&sim, "invoice.payment_failed").await.len();

    let r = sim
        .post(&format!("/v1/invoices/{}/pay", invoices[0]), &[])
        .await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.err()["code"], "payment_method_bank_account_blocked");
    let refused = invoice_with_payment(&sim, &invoices[0]).await;
    assert_eq!(refused["status"], "open");
    assert_eq!(refused["attempt_count"], 2, "the attempt is counted");
    assert_eq!(intent(&refused)["status"], "requires_payment_method");
    assert_eq!(
        intent(&refused)["last_payment_error"]["code"],
        "payment_method_bank_account_blocked"
    );
    assert_eq!(
        events_of(&sim, "invoice.payment_failed").await.len(),
        failures + 1
    );

    // Short of funds: not blocked, the debit starts again.
    let short = sim
        .post(&format!("/v1/invoices/{}/pay", invoices[1]), &[])
        .await
        .ok();
    assert_eq!(short["status"], "open");
    let short = invoice_with_payment(&sim, &invoices[1]).await;
    assert_eq!(intent(&short)["status"], "processing");
}

/// Stripe's declining test cards give their issuer's reason (`decline_code`) in the answer and on the
/// invoice's PaymentIntent.
#[tokio::test]
async fn a_declined_card_says_why() {
    let sim = Sim::start().await;
    for (card, reason) in [
        ("4000000000000341", "generic_decline"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000009987", "lost_card"),
        ("4000000000009979", "stolen_card"),
    ] {
        let cid = sim.customer("declines@example.com").await;
        sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", card)])
            .await;
        let inv = one_off_invoice(&sim, &cid, "900", false).await;
        let r = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
        assert_eq!(r.status, 402, "{card}");
        assert_eq!(r.err()["code"], "card_declined", "{card}");
        assert_eq!(r.err()["decline_code"], reason, "{card}");
        let after = invoice_with_payment(&sim, &inv).await;
        let error = &intent(&after)["last_payment_error"];
        assert_eq!(error["code"], "card_declined", "{card}");
        assert_eq!(error["decline_code"], reason, "{card}");
        assert_eq!(error["payment_method"]["type"], "card", "{card}");
    }
}

/// An invoice's `payments` is includable: it is there only when asked for by name; a path inside it
/// expands it further but does not include it by itself.
#[tokio::test]
async fn an_invoices_payments_are_included_only_when_asked_for() {
    let sim = Sim::start().await;
    let cid = sim.customer("payments@example.com").await;
    sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", OK)])
        .await;
    let inv = one_off_invoice(&sim, &cid, "800", false).await;
    let plain = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
    assert!(plain.get("payments").is_none(), "{plain}");
    let nested = sim
        .get(&format!(
            "/v1/invoices/{inv}?expand[]=payments.data.payment.payment_intent"
        ))
        .await
        .ok();
    assert!(nested.get("payments").is_none(), "{nested}");
    let named = sim
        .get(&format!("/v1/invoices/{inv}?expand[]=payments"))
        .await
        .ok();
    assert!(named["payments"]["data"][0]["payment"]["payment_intent"].is_string());
    // Both, in either order: included, then expanded inside.
    let both = sim
        .get(&format!(
            "/v1/invoices/{inv}?expand[]=payments.data.payment.payment_intent&expand[]=payments"
        ))
        .await
        .ok();
    assert_eq!(intent(&both)["object"], "payment_intent");
}

#[tokio::test]
async fn sepa_debit_is_refused_for_a_price_that_is_not_in_euros() {
    let sim = Sim::start().await;
    let usd = sim.monthly_price(29900).await;
    let form = |price: &str| {
        vec![
            ("mode".to_owned(), "subscription".to_owned()),
            ("line_items[0][price]".to_owned(), price.to_owned()),
            (
                "success_url".to_owned(),
                "https://app.example/ok".to_owned(),
            ),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
            ("payment_method_types[]".to_owned(), "sepa_debit".to_owned()),
        ]
    };
    let r = sim
        .send(
            sim.http
                .post(sim.url("/v1/checkout/sessions"))
                .bearer_auth(crate::common::KEY)
                .form(&form(&usd)),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["param"], "payment_method_types");
    assert_eq!(
        r.err()["message"],
        "Invalid currency options `usd`. The payment method `sepa_debit` only supports the following currencies: `eur`."
    );
    let product = sim.get(&format!("/v1/prices/{usd}")).await.ok()["product"]
        .as_str()
        .unwrap()
        .to_string();
    let eur = id(&sim
        .post(
            "/v1/prices",
            &[
                ("product", product.as_str()),
                ("unit_amount", "27900"),
                ("currency", "eur"),
                ("recurring[interval]", "month"),
            ],
        )
        .await
        .ok());
    let ok = sim
        .send(
            sim.http
                .post(sim.url("/v1/checkout/sessions"))
                .bearer_auth(crate::common::KEY)
                .form(&form(&eur)),
        )
        .await
        .ok();
    assert_eq!(ok["currency"], "eur");
}

#[tokio::test]
async fn one_off_invoices_are_retried_only_when_the_account_says_so() {
    for retried in [false, true] {
        let sim = Sim::start().await;
        if retried {
            let set = sim
                .ctl("/_sim/settings", &[("retry_one_off_invoices", "true")])
                .await;
            assert_eq!(set["retry_one_off_invoices"], true);
        }
        let cid = sim.customer("oneoff@example.com").await;
        sim.ctl(
            &format!("/_sim/customers/{cid}/card"),
            &[("card", "4000000000000341")],
        )
        .await;
        let inv = one_off_invoice(&sim, &cid, "700", true).await;
        assert_eq!(
            sim.post(&format!("/v1/invoices/{inv}/pay"), &[])
                .await
                .status,
            402
        );
        let after = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
        assert_eq!(after["next_payment_attempt"].is_i64(), retried);
        sim.ctl(&format!("/_sim/customers/{cid}/card"), &[("card", OK)])
            .await;
        sim.advance_days(4).await;
        let later = sim.get(&format!("/v1/invoices/{inv}")).await.ok();
        let expected = if retried { "paid" } else { "open" };
        assert_eq!(
            later["status"], expected,
            "retry_one_off_invoices={retried}"
        );
    }
}

#[tokio::test]
async fn an_invoice_embeds_ten_lines_and_pages_the_rest() {
    let sim = Sim::start().await;
    let cid = sim.customer("lines@example.com").await;
    for i in 1..=30 {
        sim.invoice_item(&cid, &i.to_string()).await;
    }
    let inv = sim.invoice_with_pending(&cid).await;
    assert_eq!(inv["lines"]["data"].as_array().unwrap().len(), 10);
    assert_eq!(inv["lines"]["has_more"], true);
    assert_eq!(inv["total"], 465);
    let inv_id = id(&inv);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/invoices/{inv_id}/lines?limit=7&starting_after={a}"),
            None => format!("/v1/invoices/{inv_id}/lines?limit=7"),
        };
        let page = sim.get(&path).await.ok();
        let data = page["data"].as_array().unwrap().clone();
        seen.extend(data.iter().map(|l| l["amount"].as_i64().unwrap()));
        after = data.last().map(id);
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(seen.iter().sum::<i64>(), 465);
}

#[tokio::test]
async fn invoices_and_lines_keep_the_subscription_under_parent() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let inv = sim
        .get(&format!(
            "/v1/invoices/{}",
            sub["latest_invoice"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(inv["subscription"], Value::Null);
    assert_eq!(
        inv["parent"]["subscription_details"]["subscription"],
        sub["id"]
    );
    let line = &inv["lines"]["data"][0];
    assert_eq!(line["subscription"], Value::Null);
    assert_eq!(
        line["parent"]["subscription_item_details"]["subscription"],
        sub["id"]
    );
}

#[tokio::test]
async fn every_answer_is_dated_by_the_simulators_clock() {
    let sim = Sim::start().await;
    sim.advance_days(10).await;
    let clock = sim.ctl_get("/_sim/clock").await["now"].as_i64().unwrap();
    let r = sim.get("/v1/customers").await;
    let date = r.headers["date"].to_str().unwrap().to_owned();
    let at = chrono::DateTime::parse_from_rfc2822(&date)
        .expect("an HTTP date")
        .timestamp();
    assert!(
        (at - clock).abs() <= 2,
        "Date {date} is not the clock {clock}"
    );
    assert!(at > chrono::Utc::now().timestamp() + 9 * 86_400);
}
