//! The rules the service's own collection keeps, on both stores: one invoice that fails never stops
//! another's retry or payment at once; no retry where it cannot help or is forbidden (a card declined
//! as lost or stolen, a bank account returned closed, a bank debit presented as often as NACHA allows,
//! an invoice sent for the customer to pay); and a payment method Stripe has is replaced only by a
//! change event, never by a reading of an older record.

use crate::collection::{
    closed, customer_of, portal_card, run, stripe, subscribe_by_bank, usage_in, DAY, DECLINING,
    GOOD,
};
use crate::helpers::{billed_entry, spawn_app_with, super_admin, Store, TestApp};
use crate::pages::{get, sign_in};
use crate::store_tests;
use serde_json::Value;
use thanotopolis_billing::billing::{attempts, collect};

store_tests!(
    a_refused_invoice_stops_no_other_invoices_retry,
    a_refused_invoice_does_not_stop_the_others_being_paid_at_once,
    a_card_declined_as_lost_or_stolen_is_not_retried,
    bank_debits_are_presented_again_only_as_nacha_allows,
    a_payment_method_stripe_has_is_replaced_only_by_a_change,
    copying_writes_are_keyed_by_the_value_they_replace,
);

const LOST: &str = "4000000000009987";
const STOLEN: &str = "4000000000009979";
const NEW_CARD: &str = "5555555555554444";

/// Every row recorded for an invoice: its attempts and any stop of its retries.
async fn rows_of(app: &TestApp, invoice: &str) -> Vec<attempts::Attempt> {
    attempts::for_invoices(&app.db, &[invoice.to_owned()])
        .await
        .unwrap()
}

fn with_reason<'a>(rows: &'a [attempts::Attempt], reason: &str) -> Vec<&'a attempts::Attempt> {
    rows.iter().filter(|a| a.reason == reason).collect()
}

/// The tenant's entry in the super admin's overview.
async fn organization(app: &TestApp, tenant: &str) -> Value {
    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    o["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|org| org["tenant_id"] == tenant)
        .cloned()
        .unwrap_or_else(|| panic!("{tenant} not in {o}"))
}

/// Moves the simulator's clock, lets its events reach the service, and runs one wake-up of the
/// collection work.
async fn later(app: &TestApp, seconds: i64) {
    app.advance_clock(seconds).await;
    app.settle().await;
    collect::tick(&app.state()).await;
    app.settle().await;
}

/// A new card from Stripe's test token, attached to the customer (nothing set as a default); its id.
async fn attach(app: &TestApp, customer: &str, token: &str) -> String {
    app.sim_post(
        &format!("/v1/payment_methods/{token}/attach"),
        &[("customer", customer)],
    )
    .await
    .expect(200)
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A write in Stripe whose event the service does not take for the tenant's change (it carries a key
/// of the service's own copying writes), as when the endpoint is not subscribed to that event or its
/// delivery is still pending; then its events are let through.
async fn unseen_write(app: &TestApp, path: &str, field: (&str, &str)) {
    let key = format!("pm-follow:unseen:{path}:{}", field.1);
    let r = app
        .client
        .post(format!("{}{path}", app.sim))
        .bearer_auth("sk_test_api_tests")
        .header("Idempotency-Key", key)
        .form(&[field])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    app.settle().await;
}

/// A tenant paying by card whose usage invoice for the closed period `p` is declined by `card`.
async fn declined_usage(app: &TestApp, tenant: &str, card: &str) -> String {
    let p = closed();
    app.add_tenant(tenant).await;
    app.subscribe(tenant, None, GOOD).await;
    let customer = customer_of(app, tenant).await;
    portal_card(app, &customer, card).await;
    app.settle().await;
    usage_in(app, tenant, p).await;
    let report = run(app, p).await;
    assert_eq!(
        billed_entry(&report, tenant)["payment"],
        "declined",
        "{report}"
    );
    app.settle().await;
    app.usage_invoices(tenant, p).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Two declined usage invoices; Stripe refuses the first one looked at for good (as it refuses a
/// customer with no payment method left). The other is retried on its day all the same, and paid; the
/// refused one is recorded with its error, no longer retried, and flagged on the admin page.
async fn a_refused_invoice_stops_no_other_invoices_retry(app: TestApp) {
    declined_usage(&app, "acme", DECLINING).await;
    declined_usage(&app, "globex", DECLINING).await;
    let candidates = attempts::retry_candidates(&app.db).await.unwrap();
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    let (broken, other) = (&candidates[0], &candidates[1]);
    app.sim_post(
        "/_sim/faults",
        &[
            (
                "path",
                &format!("/v1/invoices/{}/pay", broken.stripe_invoice_id),
            ),
            ("status", "400"),
            ("count", "100"),
        ],
    )
    .await
    .expect(200);
    // The other's retry will be paid: a good card on the invoice itself, which Stripe charges first.
    let customer = customer_of(&app, &other.tenant_id).await;
    let good = attach(&app, &customer, "pm_card_visa").await;
    app.sim_post(
        &format!("/v1/invoices/{}", other.stripe_invoice_id),
        &[("default_payment_method", good.as_str())],
    )
    .await
    .expect(200);

    later(&app, 3 * DAY + 60).await;
    let rows = rows_of(&app, &other.stripe_invoice_id).await;
    let retried = with_reason(&rows, "retry");
    assert_eq!(retried.len(), 1, "{rows:?}");
    assert_eq!(retried[0].attempt_no, 1);
    assert_eq!(retried[0].outcome, "paid", "{rows:?}");
    let inv = stripe(&app, &format!("/v1/invoices/{}", other.stripe_invoice_id)).await;
    assert_eq!(inv["status"], "paid");

    let rows = rows_of(&app, &broken.stripe_invoice_id).await;
    let refused = with_reason(&rows, "retry");
    assert_eq!(refused.len(), 1, "{rows:?}");
    assert_eq!(refused[0].outcome, "refused");
    assert!(
        refused[0].detail.as_deref().unwrap_or("").contains("400"),
        "{rows:?}"
    );
    let stopped = with_reason(&rows, "retries_stopped");
    assert_eq!(stopped.len(), 1, "{rows:?}");
    assert_eq!(stopped[0].outcome, "stopped");
    let flag = &organization(&app, &broken.tenant_id).await["payment_flag"];
    assert_eq!(
        flag["retries_stopped"][0]["stripe_invoice_id"],
        broken.stripe_invoice_id.as_str(),
        "{flag}"
    );
    assert!(flag["retries_stopped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("Stripe refused"));
    let page = get(&app, "/admin/billing", &sign_in(&app, &super_admin()).await).await;
    assert!(page.text.contains("retries stopped"), "{}", page.text);
    assert!(page.text.contains("refused by Stripe"), "{}", page.text);

    // Its next day: the stopped invoice is not tried (nor even read) again.
    let pays = || async {
        app.sim_get("/_sim/stats").await.body["by_route"]["POST /v1/invoices/{id}/pay"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = pays().await;
    later(&app, 2 * DAY + 60).await;
    assert_eq!(pays().await, before);
    assert_eq!(rows_of(&app, &broken.stripe_invoice_id).await.len(), 2);
}

/// The tenant changes its card: of its two open invoices, the one Stripe refuses for good is recorded
/// as such, and the other is paid at once all the same.
async fn a_refused_invoice_does_not_stop_the_others_being_paid_at_once(app: TestApp) {
    let usage = declined_usage(&app, "acme", DECLINING).await;
    let customer = customer_of(&app, "acme").await;
    // A second open invoice, newer (the first one the payment at once comes to), refused for good.
    app.sim_post(
        "/v1/invoiceitems",
        &[
            ("customer", customer.as_str()),
            ("amount", "500"),
            ("currency", "usd"),
        ],
    )
    .await
    .expect(200);
    let extra = app
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
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim_post(
        &format!("/v1/invoices/{extra}/finalize"),
        &[("auto_advance", "false")],
    )
    .await
    .expect(200);
    app.sim_post(
        "/_sim/faults",
        &[
            ("path", &format!("/v1/invoices/{extra}/pay")),
            ("status", "400"),
            ("count", "100"),
        ],
    )
    .await
    .expect(200);
    app.settle().await;

    portal_card(&app, &customer, NEW_CARD).await;
    app.settle().await;
    let inv = stripe(&app, &format!("/v1/invoices/{usage}")).await;
    assert_eq!(inv["status"], "paid", "the usage invoice, paid at once");
    let at_once = with_reason(&rows_of(&app, &usage).await, "payment_method_changed")
        .into_iter()
        .map(|a| a.outcome.clone())
        .collect::<Vec<_>>();
    assert_eq!(at_once, ["paid"]);
    let refused = rows_of(&app, &extra).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].outcome, "refused");
    assert_eq!(
        stripe(&app, &format!("/v1/invoices/{extra}")).await["status"],
        "open"
    );
}

/// A card declined as lost or stolen is never retried (the card networks forbid it): the retries
/// stop on the first look, the admin page says why; a generic decline is retried as usual.
async fn a_card_declined_as_lost_or_stolen_is_not_retried(app: TestApp) {
    let lost = declined_usage(&app, "lost", LOST).await;
    let stolen = declined_usage(&app, "stolen", STOLEN).await;
    let generic = declined_usage(&app, "generic", DECLINING).await;
    later(&app, 60).await;
    later(&app, 3 * DAY).await;
    for (invoice, tenant, reason) in [
        (&lost, "lost", "lost_card"),
        (&stolen, "stolen", "stolen_card"),
    ] {
        let rows = rows_of(&app, invoice).await;
        assert!(with_reason(&rows, "retry").is_empty(), "{tenant}: {rows:?}");
        let stopped = with_reason(&rows, "retries_stopped");
        assert_eq!(stopped.len(), 1, "{tenant}: {rows:?}");
        assert!(
            stopped[0].detail.as_deref().unwrap_or("").contains(reason),
            "{rows:?}"
        );
        let inv = stripe(&app, &format!("/v1/invoices/{invoice}")).await;
        assert_eq!(
            inv["attempt_count"], 1,
            "{tenant}: charged once, by the run"
        );
        let flag = &organization(&app, tenant).await["payment_flag"];
        assert_eq!(
            flag["retries_stopped"][0]["stripe_invoice_id"],
            invoice.as_str()
        );
    }
    let generic_rows = rows_of(&app, &generic).await;
    let retried = with_reason(&generic_rows, "retry");
    assert_eq!(retried.len(), 1, "{generic_rows:?}");
    assert_eq!(retried[0].outcome, "declined");
    assert!(with_reason(&generic_rows, "retries_stopped").is_empty());

    later(&app, 4 * DAY).await;
    for invoice in [&lost, &stolen] {
        assert!(with_reason(&rows_of(&app, invoice).await, "retry").is_empty());
    }
}

/// ACH: a debit returned because the account is closed is never presented again (Stripe blocks the
/// account; NACHA forbids it); one returned for insufficient funds is presented again twice, no more.
async fn bank_debits_are_presented_again_only_as_nacha_allows(app: TestApp) {
    let p = closed();
    for (tenant, account) in [("closed", "000111111113"), ("short", "000222222227")] {
        app.add_tenant(tenant).await;
        subscribe_by_bank(&app, tenant, account).await;
        usage_in(&app, tenant, p).await;
    }
    let report = run(&app, p).await;
    assert_eq!(billed_entry(&report, "short")["payment"], "processing");
    app.settle().await;
    let shared = &app;
    let invoice = |tenant: &'static str| async move {
        shared.usage_invoices(tenant, p).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (closed_inv, short_inv) = (invoice("closed").await, invoice("short").await);
    // The bank answers four days on: both returned.
    later(&app, 4 * DAY + 3600).await;
    let rows = rows_of(&app, &closed_inv).await;
    let stopped = with_reason(&rows, "retries_stopped");
    assert_eq!(stopped.len(), 1, "{rows:?}");
    assert!(
        stopped[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("account_closed"),
        "{rows:?}"
    );
    let flag = &organization(&app, "closed").await["payment_flag"];
    assert_eq!(
        flag["retries_stopped"][0]["stripe_invoice_id"],
        closed_inv.as_str()
    );
    let admin = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/admin/billing", &admin).await;
    assert!(page.text.contains("retries stopped"), "{}", page.text);

    // Day 3: the first new presentment; four days later it is returned again; then the second.
    later(&app, 3 * DAY + 60).await;
    later(&app, 4 * DAY + 3600).await;
    later(&app, 60).await;
    later(&app, 4 * DAY + 3600).await;
    // All of USAGE_RETRY_DAYS are past: no third presentment.
    later(&app, 60).await;
    later(&app, 5 * DAY).await;
    let rows = rows_of(&app, &short_inv).await;
    let retried = with_reason(&rows, "retry");
    assert_eq!(retried.len(), 2, "{rows:?}");
    assert!(
        retried.iter().all(|r| r.outcome == "processing"),
        "{rows:?}"
    );
    let stopped = with_reason(&rows, "retries_stopped");
    assert_eq!(stopped.len(), 1, "{rows:?}");
    assert!(stopped[0].detail.as_deref().unwrap_or("").contains("NACHA"));
    let short = stripe(&app, &format!("/v1/invoices/{short_inv}")).await;
    assert_eq!(short["status"], "open");
    assert_eq!(short["attempt_count"], 3, "the run's debit and two more");

    assert!(with_reason(&rows_of(&app, &closed_inv).await, "retry").is_empty());
    let closed = stripe(&app, &format!("/v1/invoices/{closed_inv}")).await;
    assert_eq!(closed["attempt_count"], 1, "never debited again");
}

/// The tenant's new card is on its customer in Stripe, but the event saying so was never applied as
/// a change (an endpoint set up before `customer.updated` was handled, or a delivery still pending):
/// a subscription's update and the monthly run read the subscription, and neither writes the older
/// recorded card back over it; the usage invoice is charged on the new card. Once the change arrives,
/// it is copied onto the subscription.
async fn a_payment_method_stripe_has_is_replaced_only_by_a_change(app: TestApp) {
    let p = closed();
    let (customer, sub) = subscribed_acme(&app).await;
    let old = stripe(&app, &format!("/v1/customers/{customer}")).await["invoice_settings"]
        ["default_payment_method"]
        .as_str()
        .unwrap()
        .to_owned();
    let new = attach(&app, &customer, "pm_card_mastercard").await;
    unseen_write(
        &app,
        &format!("/v1/customers/{customer}"),
        ("invoice_settings[default_payment_method]", &new),
    )
    .await;
    let default = || async {
        stripe(&app, &format!("/v1/customers/{customer}")).await["invoice_settings"]
            ["default_payment_method"]
            .as_str()
            .map(str::to_owned)
    };

    // A subscription event (its update), then the monthly run: readings, not changes.
    app.sim_post(
        &format!("/v1/subscriptions/{sub}"),
        &[("metadata[note]", "renewed")],
    )
    .await
    .expect(200);
    app.settle().await;
    assert_eq!(default().await.as_deref(), Some(new.as_str()));
    usage_in(&app, "acme", p).await;
    let report = run(&app, p).await;
    assert_eq!(billed_entry(&report, "acme")["payment"], "paid", "{report}");
    assert_eq!(default().await.as_deref(), Some(new.as_str()));
    let usage = app.usage_invoices("acme", p).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = stripe(
        &app,
        &format!(
            "/v1/invoices/{usage}?expand[]=payments&expand[]=payments.data.payment.payment_intent"
        ),
    )
    .await;
    assert_eq!(
        paid["payments"]["data"][0]["payment"]["payment_intent"]["payment_method"],
        new.as_str(),
        "charged on the new card"
    );
    let s = stripe(&app, &format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(
        s["default_payment_method"],
        old.as_str(),
        "not a change yet"
    );

    // The change arrives: it replaces the subscription's card.
    let at = stripe(&app, "/_sim/clock").await["now"].as_i64().unwrap();
    thanotopolis_billing::subscriptions::payment_method::changed(&app.state(), "acme", &new, at)
        .await
        .unwrap();
    thanotopolis_billing::billing::collect::settle(&app.state(), "acme")
        .await
        .unwrap();
    let s = stripe(&app, &format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(s["default_payment_method"], new.as_str());
}

/// The writes copying the tenant's card are keyed by the value each replaces: a retry is the same
/// write, and the same correction needed again (the old card set back meanwhile, within Stripe's 24
/// hours) is made under the key's next generation rather than answered with the first one's reply.
async fn copying_writes_are_keyed_by_the_value_they_replace(app: TestApp) {
    let (customer, sub) = subscribed_acme(&app).await;
    let old = stripe(&app, &format!("/v1/subscriptions/{sub}")).await["default_payment_method"]
        .as_str()
        .unwrap()
        .to_owned();
    let new = portal_card(&app, &customer, NEW_CARD).await;
    app.settle().await;
    assert_eq!(
        stripe(&app, &format!("/v1/subscriptions/{sub}")).await["default_payment_method"],
        new.as_str()
    );
    // The old card set back on the subscription, unseen as a change.
    unseen_write(
        &app,
        &format!("/v1/subscriptions/{sub}"),
        ("default_payment_method", &old),
    )
    .await;
    thanotopolis_billing::billing::collect::settle(&app.state(), "acme")
        .await
        .unwrap();
    assert_eq!(
        stripe(&app, &format!("/v1/subscriptions/{sub}")).await["default_payment_method"],
        new.as_str()
    );
    let events = stripe(
        &app,
        "/v1/events?type=customer.subscription.updated&limit=100",
    )
    .await;
    let keys: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["request"]["idempotency_key"].as_str())
        .filter(|k| k.starts_with("pm-follow:acme:"))
        .collect();
    let first = format!(":{sub}:{old}");
    assert!(
        keys.iter().any(|k| k.ends_with(&first)),
        "a key naming the value replaced: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(&format!("{first}:g1"))),
        "the same correction again, under the next generation: {keys:?}"
    );
}

/// With `BILLING_COLLECTION_METHOD=send_invoice` the customer pays the usage invoice on its hosted
/// page; when that payment fails, the service's retries do not charge the invoice off-session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_sent_for_payment_is_never_charged_by_a_retry_sqlite() {
    sent_invoice_not_charged(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_sent_for_payment_is_never_charged_by_a_retry_postgres() {
    sent_invoice_not_charged(Store::Postgres).await;
}

async fn sent_invoice_not_charged(store: Store) {
    let app = spawn_app_with(store, |vars| {
        vars.insert("BILLING_COLLECTION_METHOD".into(), "send_invoice".into());
    })
    .await;
    let p = closed();
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD).await;
    usage_in(&app, "acme", p).await;
    let report = run(&app, p).await;
    assert_eq!(billed_entry(&report, "acme")["payment"], "sent", "{report}");
    app.settle().await;
    let inv = &app.usage_invoices("acme", p).await[0];
    let id = inv["id"].as_str().unwrap().to_owned();
    let hosted = inv["hosted_invoice_url"].as_str().unwrap().to_owned();
    // The customer tries a declining card on the hosted page.
    let page = app
        .client
        .post(format!("{hosted}/pay"))
        .form(&[("cardNumber", DECLINING)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("declined"), "{page}");
    app.settle().await;
    assert_eq!(
        stripe(&app, &format!("/v1/invoices/{id}")).await["attempt_count"],
        1
    );
    assert!(
        attempts::retry_candidates(&app.db)
            .await
            .unwrap()
            .iter()
            .any(|c| c.stripe_invoice_id == id),
        "a failed payment makes it a candidate"
    );
    later(&app, 3 * DAY + 60).await;
    later(&app, 4 * DAY).await;
    assert!(rows_of(&app, &id).await.is_empty());
    let after = stripe(&app, &format!("/v1/invoices/{id}")).await;
    assert_eq!(after["attempt_count"], 1, "never charged off-session");
    assert_eq!(after["status"], "open");
}

/// The tenant `acme`, subscribed with a good card: its Stripe customer and subscription.
async fn subscribed_acme(app: &TestApp) -> (String, String) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD).await;
    let customer = customer_of(app, "acme").await;
    let sub = app
        .live_subscription("acme")
        .await
        .unwrap()
        .stripe_subscription_id;
    (customer, sub)
}
