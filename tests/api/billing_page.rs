//! What `/billing` tells a tenant: which month a usage invoice bills, a failed payment and what to do,
//! the card on file and the next charge, why a charge is $0, whose page a super admin is on, and the
//! trial field's errors. The dashboard's `billing_period` on its invoices is checked here too.

use crate::helpers::{super_admin, token, TestApp};
use crate::pages::{csrf_of, get, location, post, sign_in};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::domain::BillingPeriod;
use thanotopolis_billing::http::web::html::date;

store_tests!(
    usage_invoices_name_their_month,
    a_failed_payment_says_what_failed_and_leads_to_the_portal,
    the_card_and_the_next_charge_are_shown,
    zero_charges_say_why,
    a_super_admin_sees_whose_page_it_is,
    trial_errors_stand_by_the_field_with_the_value_kept,
);

const GOOD_CARD: &str = "4242424242424242";
const DECLINING_CARD: &str = "4000000000000341";

fn last_month() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev()
}

async fn usage(app: &TestApp, events: Value) {
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &json!({ "events": events }),
    )
    .await
    .expect(200);
}

/// The subscription's period end as the page prints it (`Dec 16, 2026`), from our copy.
async fn period_end_text(app: &TestApp, tenant: &str) -> String {
    let sub = app
        .live_subscription(tenant)
        .await
        .expect("a live subscription");
    date(sub.current_period_end.unwrap(), chrono_tz::UTC)
}

async fn usage_invoices_name_their_month(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    let p = last_month();
    usage(
        &app,
        json!([{"event_id": "acme-call", "tenant_id": "acme", "type": "phone_calls", "quantity": 1,
                "occurred_at": format!("{p}-10T12:00:00Z")}]),
    )
    .await;
    let report = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": p.to_string()}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(report["totals"]["tenants_billed"], 1, "{report}");
    app.settle().await;

    // The dashboard's invoices carry `billing_period`, as the invoices route does: the month on a usage
    // invoice, null on the subscription's.
    let d = app
        .get("/api/billing/dashboard", Some(&token("acme", "member")))
        .await
        .expect(200)
        .body;
    let invoices = d["recent_invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{d}");
    let usage_invoice = invoices
        .iter()
        .find(|i| i["billing_period"] == p.to_string())
        .unwrap_or_else(|| panic!("no usage invoice for {p}: {d}"));
    assert_eq!(usage_invoice["amount_due_cents"], 100);
    let subscription_invoice = invoices
        .iter()
        .find(|i| i["billing_period"].is_null())
        .unwrap_or_else(|| panic!("no subscription invoice: {d}"));
    assert_eq!(subscription_invoice["amount_due_cents"], 29_900);

    // The page names the month, not the day the invoice was created.
    let cookie = sign_in(&app, &token("acme", "member")).await;
    let page = get(&app, "/billing", &cookie).await;
    let id = usage_invoice["stripe_invoice_id"].as_str().unwrap();
    let row = row_of(&page.text, id);
    assert!(
        row.contains(&format!(
            "<td class=\"invoice-for\">{} usage</td>",
            p.long_name()
        )),
        "{row}"
    );
    // The subscription's invoice by the day it was issued (its period_end at Stripe).
    let issued: chrono::DateTime<chrono::Utc> = subscription_invoice["period_end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let row = row_of(
        &page.text,
        subscription_invoice["stripe_invoice_id"].as_str().unwrap(),
    );
    assert!(
        row.contains(&format!(
            "<td class=\"invoice-for\">Subscription, {}</td>",
            date(issued, chrono_tz::UTC)
        )),
        "{row}"
    );
}

/// The `<tr>` of an invoice on the page.
fn row_of<'a>(html: &'a str, invoice: &str) -> &'a str {
    let at = html
        .find(&format!("<tr id=\"invoice-{invoice}\">"))
        .unwrap_or_else(|| panic!("no row for {invoice}: {html}"));
    let end = html[at..].find("</tr>").unwrap();
    &html[at..at + end]
}

async fn a_failed_payment_says_what_failed_and_leads_to_the_portal(app: TestApp) {
    app.add_tenant("acme").await;
    // A one-day trial with a card that attaches but never pays: the first charge fails at trial end.
    app.subscribe("acme", Some(1), DECLINING_CARD).await;
    let admin = sign_in(&app, &token("acme", "org_admin")).await;
    let before = get(&app, "/billing", &admin).await;
    assert!(!before.text.contains("id=\"payment-failed\""));

    app.advance_clock(2 * 86_400).await;
    app.settle().await;
    let failed = thanotopolis_billing::db::invoices::failed_payments(
        &app.db,
        &thanotopolis_billing::domain::TenantId::parse("acme").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let invoice = &failed[0];
    assert_eq!(invoice.amount_remaining_cents, 29_900);
    assert_eq!(invoice.billing_period, None);

    let page = get(&app, "/billing", &admin).await;
    assert_eq!(page.status, 200);
    let banner = section(&page.text, "id=\"payment-failed\"");
    assert!(banner.contains("Payment failed."), "{banner}");
    assert!(
        banner.contains(&format!(
            "Stripe could not charge $299.00 for invoice {} (subscription) on {}",
            invoice.number.as_deref().unwrap(),
            thanotopolis_billing::http::web::html::date_time(
                invoice.last_failed_at,
                chrono_tz::UTC
            )
        )),
        "{banner}"
    );
    assert!(banner.contains("id=\"access-until\""), "{banner}");
    assert!(banner.contains("id=\"update-card\""), "{banner}");
    let row = row_of(&page.text, &invoice.stripe_invoice_id);
    assert!(row.contains("payment failed"), "{row}");
    // The status badge of the subscription says it too.
    assert!(page.text.contains("past due"));

    // The button opens the customer portal, to update the card.
    let csrf = csrf_of(&page.text);
    let portal = post(&app, "/billing/portal", &admin, &[("csrf", &csrf)]).await;
    assert_eq!(portal.status, 303, "{}", portal.text);
    assert!(
        location(&portal).starts_with(&format!("{}/portal/", app.sim)),
        "{}",
        location(&portal)
    );

    // A member sees what failed and who can fix it, without the button.
    let member = sign_in(&app, &token("acme", "member")).await;
    let page = get(&app, "/billing", &member).await;
    let banner = section(&page.text, "id=\"payment-failed\"");
    assert!(
        banner.contains("Stripe could not charge $299.00"),
        "{banner}"
    );
    assert!(banner.contains("Ask an organization admin"), "{banner}");
    assert!(!banner.contains("id=\"update-card\""), "{banner}");

    // A good card in the portal: the open invoice is paid at once with it, and the banner goes.
    let customer = app
        .live_subscription("acme")
        .await
        .unwrap()
        .stripe_customer_id;
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", GOOD_CARD)],
    )
    .await
    .expect(200);
    app.settle().await;
    let paid = app
        .sim_get(&format!("/v1/invoices/{}", invoice.stripe_invoice_id))
        .await
        .body;
    assert_eq!(paid["status"], "paid", "{paid}");
    let page = get(&app, "/billing", &admin).await;
    assert!(
        !page.text.contains("id=\"payment-failed\""),
        "{}",
        page.text
    );
}

/// The element that starts with `marker` up to the end of its `div`, enough to search in.
fn section<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} on the page: {html}"));
    let rest = &html[at..];
    let end = rest
        .find("</form>")
        .or_else(|| rest.find("</div>"))
        .unwrap();
    &rest[..end]
}

/// The text of the element with `id` (up to its first closing tag's end, tags stripped).
fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} on the page: {html}"));
    let open_end = at + html[at..].find('>').unwrap() + 1;
    let close = html[open_end..]
        .find("</dd>")
        .or_else(|| html[open_end..].find("</p>"));
    let inner = &html[open_end..open_end + close.unwrap()];
    let mut out = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

async fn the_card_and_the_next_charge_are_shown(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    let admin = sign_in(&app, &token("acme", "org_admin")).await;
    let page = get(&app, "/billing", &admin).await;
    let end = period_end_text(&app, "acme").await;
    assert_eq!(
        text_of(&page.text, "next-charge"),
        format!("$299.00 on {end}")
    );
    let card = text_of(&page.text, "payment-method");
    assert!(card.starts_with("Visa •••• 4242, expires "), "{card}");

    // Set to cancel: no next charge, and the day it ends instead.
    let confirm = get(&app, "/billing/cancel", &admin).await;
    let csrf = csrf_of(&confirm.text);
    assert_eq!(
        post(&app, "/billing/cancel", &admin, &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    let page = get(&app, "/billing", &admin).await;
    assert_eq!(
        text_of(&page.text, "next-charge"),
        format!("None: the subscription ends on {end}")
    );

    // In a trial: the first charge, at the trial's end.
    app.add_tenant("beta").await;
    app.subscribe("beta", Some(14), GOOD_CARD).await;
    let sub = app.live_subscription("beta").await.unwrap();
    let trial_end = date(sub.trial_end.unwrap(), chrono_tz::UTC);
    let cookie = sign_in(&app, &token("beta", "member")).await;
    let page = get(&app, "/billing", &cookie).await;
    assert_eq!(
        text_of(&page.text, "next-charge"),
        format!("$299.00 on {trial_end}, when the trial ends")
    );
}

async fn zero_charges_say_why(app: TestApp) {
    for t in ["trial", "solo", "demo"] {
        app.add_tenant(t).await;
    }
    app.subscribe("trial", Some(14), GOOD_CARD).await;
    app.post(
        "/api/billing/set-demo-status/demo?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    // Usage now: inside the trial for "trial", waiting for a subscription for "solo", exempt for "demo".
    for t in ["trial", "solo", "demo"] {
        usage(
            &app,
            json!([{"event_id": format!("{t}-call"), "tenant_id": t, "type": "phone_calls", "quantity": 1}]),
        )
        .await;
    }

    let trial_end = date(
        app.live_subscription("trial")
            .await
            .unwrap()
            .trial_end
            .unwrap(),
        chrono_tz::UTC,
    );
    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("trial", "member")).await,
    )
    .await;
    assert!(
        page.text.contains("id=\"upcoming-total\">$0.00<"),
        "{}",
        page.text
    );
    assert!(
        text_of(&page.text, "upcoming-when")
            .starts_with(&format!("Free during your trial until {trial_end}.")),
        "{}",
        text_of(&page.text, "upcoming-when")
    );

    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("solo", "member")).await,
    )
    .await;
    let why = text_of(&page.text, "upcoming-when");
    assert!(
        why.starts_with("Nothing is charged now: your organization has no subscription"),
        "{why}"
    );
    assert!(why.contains("billed once you subscribe"), "{why}");

    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("demo", "member")).await,
    )
    .await;
    assert!(page.text.contains("id=\"upcoming-total\">$0.00<"));
    let why = text_of(&page.text, "upcoming-when");
    assert!(
        why.starts_with("Nothing is charged: demo accounts are exempt from billing charges"),
        "{why}"
    );
}

async fn a_super_admin_sees_whose_page_it_is(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    let sa = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/billing?tenant_id=acme", &sa).await;
    assert_eq!(page.status, 200);
    let banner = section(&page.text, "id=\"acting-as\"");
    assert!(
        banner.contains("You are viewing Org acme's billing as super admin."),
        "{banner}"
    );
    assert!(page.text.contains("Org acme's subscription</h2>"));
    assert!(
        page.text.contains(">Cancel Org acme's subscription</a>"),
        "{}",
        page.text
    );
    let confirm = get(&app, "/billing/cancel?tenant_id=acme", &sa).await;
    assert!(confirm
        .text
        .contains("<h1>Cancel Org acme's subscription?</h1>"));
    assert!(confirm
        .text
        .contains("Yes, cancel Org acme's subscription at period end"));
    let csrf = csrf_of(&confirm.text);
    let done = post(
        &app,
        "/billing/cancel?tenant_id=acme",
        &sa,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(location(&done), "/billing?tenant_id=acme&done=canceled");
    let page = get(&app, "/billing?tenant_id=acme&done=canceled", &sa).await;
    assert!(
        page.text
            .contains(">Reactivate Org acme's subscription</button>"),
        "{}",
        page.text
    );

    // The organization's own admin sees its own page, without the banner.
    let own = get(
        &app,
        "/billing",
        &sign_in(&app, &token("acme", "org_admin")).await,
    )
    .await;
    assert!(!own.text.contains("id=\"acting-as\""));
    assert!(own.text.contains("Your subscription</h2>"));
    assert!(own.text.contains(">Reactivate subscription</button>"));
}

async fn trial_errors_stand_by_the_field_with_the_value_kept(app: TestApp) {
    app.add_tenant("acme").await;
    let admin = sign_in(&app, &token("acme", "org_admin")).await;
    let page = get(&app, "/billing", &admin).await;
    let csrf = csrf_of(&page.text);
    // Not a number, and over the organization admin's 30 days: one wording, by the field.
    for typed in ["soon", "45", "-1"] {
        let bad = post(
            &app,
            "/billing/checkout",
            &admin,
            &[("trial_days", typed), ("csrf", &csrf)],
        )
        .await;
        assert_eq!(bad.status, 422, "{typed}");
        assert!(!bad.text.contains("id=\"action-error\""), "{typed}");
        assert!(
            bad.text.contains(
                "<div class=\"field-error\" id=\"trial-days-error\">Enter a whole number of days from 0 to 30, or leave it empty for no trial.</div>"
            ),
            "{typed}: {}",
            bad.text
        );
        assert!(
            bad.text.contains(&format!("value=\"{typed}\"")),
            "{typed}: the value is kept"
        );
        assert!(bad.text.contains("aria-invalid=\"true\""));
    }
    // A super admin may grant up to 730 days: 45 goes to Checkout.
    let sa = sign_in(&app, &super_admin()).await;
    let page = get(&app, "/billing?tenant_id=acme", &sa).await;
    let ok = post(
        &app,
        "/billing/checkout?tenant_id=acme",
        &sa,
        &[("trial_days", "45"), ("csrf", &csrf_of(&page.text))],
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert!(location(&ok).starts_with(&app.sim));

    // An organization that subscribed before gets no trial field, and says why.
    app.add_tenant("beta").await;
    app.subscribe("beta", None, GOOD_CARD).await;
    let id = app
        .live_subscription("beta")
        .await
        .unwrap()
        .stripe_subscription_id;
    let cancel = app
        .client
        .delete(format!("{}/v1/subscriptions/{id}", app.sim))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success());
    app.settle().await;
    let page = get(
        &app,
        "/billing",
        &sign_in(&app, &token("beta", "org_admin")).await,
    )
    .await;
    assert!(page.text.contains("id=\"subscribe\""), "{}", page.text);
    assert!(page.text.contains("id=\"no-trial\""));
    assert!(!page.text.contains("id=\"trial-days\""));
}
