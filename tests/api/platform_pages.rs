//! The platform's own billing pages against this service, as the platform calls it: its tokens (HS256,
//! claims `sub`, `tenant_id`, `email`, `role`, `exp`; backend/app/auth/auth.py:199-209), its
//! `X-Tenant-ID` header (the organization's subdomain), the routes and fields its pages use.
//!
//! Each test builds the state its page shows (a subscribed organization with a paid and a failed
//! invoice, one in a trial, a demo, one without a subscription, and a super admin over all of them) and
//! checks every field the page reads, by name and JSON type. The lists below name the page's file and
//! line (techwiz42/thanotopolis at 23d725c, under `frontend/src/`) so a reader can check them.

use crate::auth::hs256;
use crate::billing_run::{closed_periods, inside, run, usage};
use crate::helpers::{Reply, TestApp};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::billing::run::{run_period, RunOptions};
use thanotopolis_billing::domain::BillingPeriod;
use Ty::*;

store_tests!(
    billing_dashboard_page_gets_every_field_it_reads,
    subscription_plans_page_lists_and_subscribes,
    super_admin_billing_page_gets_every_field_it_reads,
    organization_billing_page_gets_every_field_it_reads,
    super_admin_figures_are_the_overviews_and_the_runs,
    a_super_admins_token_need_not_name_a_tenant,
);

const GOOD_CARD: &str = "4242424242424242";
const FAILING_CARD: &str = "4000000000000341";

/// An organization as the platform knows it: its UUID, name and subdomain.
#[derive(Clone, Copy)]
struct Org {
    id: &'static str,
    name: &'static str,
    subdomain: &'static str,
}

/// Subscribed, with a paid subscription invoice and a usage invoice whose payment failed.
const ACME: Org = Org {
    id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e01",
    name: "Acme Funeral Home",
    subdomain: "acme",
};
/// In a 14-day trial.
const EVERGREEN: Org = Org {
    id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e02",
    name: "Evergreen Memorial Chapel",
    subdomain: "evergreen",
};
/// A demo account.
const DEMO: Org = Org {
    id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e03",
    name: "Demo Organization",
    subdomain: "demo-org",
};
/// Never subscribed; has usage.
const RIVERSIDE: Org = Org {
    id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e04",
    name: "Riverside Chapel",
    subdomain: "riverside",
};
/// The platform's own organization, where its super admin belongs: not registered here.
const PLATFORM: Org = Org {
    id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e00",
    name: "Thanotopolis",
    subdomain: "admin",
};

/// A token as the platform's backend mints it (AuthService.create_access_token: python-jose, HS256,
/// `exp` an integer).
fn platform_token(org: Org, role: &str) -> String {
    hs256(&json!({
        "sub": format!("7c1e0000-0000-4000-8000-{:012}", role.len()),
        "tenant_id": org.id,
        "email": format!("{role}@{}.example", org.subdomain),
        "role": role,
        "exp": chrono::Utc::now().timestamp() + 15 * 60,
    }))
}

/// A request as the pages send it: the bearer token and, when the page sends one, `X-Tenant-ID` with
/// the organization's subdomain (contexts/AuthContext.tsx:156 keeps the subdomain as `organization`).
async fn page_request(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    tenant_header: Option<Org>,
    body: Option<&Value>,
) -> Reply {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(org) = tenant_header {
        req = req.header("x-tenant-id", org.subdomain);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    Reply::from(req.send().await.expect("request")).await
}

async fn page_get(app: &TestApp, path: &str, token: &str, tenant_header: Option<Org>) -> Reply {
    page_request(
        app,
        reqwest::Method::GET,
        path,
        Some(token),
        tenant_header,
        None,
    )
    .await
}

async fn page_post(app: &TestApp, path: &str, token: &str, org: Org, body: &Value) -> Reply {
    page_request(
        app,
        reqwest::Method::POST,
        path,
        Some(token),
        Some(org),
        Some(body),
    )
    .await
}

/// The JSON type a page relies on.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// A string (rendered, compared, `.toLowerCase()`d).
    Str,
    /// A whole number (`formatCurrency`, `.toLocaleString()`, arithmetic).
    Int,
    Bool,
    /// An array (`.length`, `.map`).
    Arr,
    Obj,
    /// An RFC 3339 string (`new Date(x)`).
    Date,
    /// A date, or null where the page tests it first (`invoice.paid_at && ...`).
    DateOrNull,
    /// An object, or null where the page tests it first (`dashboard.current_subscription ? ...`).
    ObjOrNull,
}

/// Every value at `path`: `a.b` is a field of a field; `list[].c` is `c` of each element of `list`,
/// which must not be empty (a check over no elements would prove nothing).
fn values_at<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    for segment in path.split('.') {
        let (name, each) = match segment.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (segment, false),
        };
        let mut next = Vec::new();
        for v in current {
            let field = v
                .get(name)
                .unwrap_or_else(|| panic!("{path}: no field {name:?} in {v}"));
            if each {
                let items = field
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: {name} is not an array: {field}"));
                assert!(!items.is_empty(), "{path}: {name} is empty");
                next.extend(items);
            } else {
                next.push(field);
            }
        }
        current = next;
    }
    current
}

fn is_date(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn has_type(v: &Value, ty: Ty) -> bool {
    match ty {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Bool => v.is_boolean(),
        Ty::Arr => v.is_array(),
        Ty::Obj => v.is_object(),
        Ty::Date => is_date(v),
        Ty::DateOrNull => v.is_null() || is_date(v),
        Ty::ObjOrNull => v.is_null() || v.is_object(),
    }
}

/// Each field a page reads: (path, type, the page's file, the lines where it reads it).
type Reads = [(&'static str, Ty, &'static str, &'static str)];

const DASHBOARD_TSX: &str = "components/BillingDashboard.tsx";
const PLANS_TSX: &str = "components/SubscriptionPlans.tsx";
const SUPER_ADMIN_TSX: &str = "components/SuperAdminBilling.tsx";
const ORGANIZATION_PAGE: &str = "app/billing/organization/page.tsx";
const SIGNUP_PAGE: &str = "app/billing/signup/page.tsx";

#[track_caller]
fn assert_reads(body: &Value, reads: &Reads) {
    for (path, ty, file, lines) in reads {
        for v in values_at(body, path) {
            assert!(
                has_type(v, *ty),
                "{path} ({file}:{lines}) should be {ty:?}, is {v}; body: {body}"
            );
        }
    }
}

// --- components/BillingDashboard.tsx: GET /api/billing/dashboard (line 84), tenant view -------------

/// What the page reads of every tenant's dashboard.
#[rustfmt::skip]
const DASHBOARD_READS: &Reads = &[
    ("is_demo", Bool, DASHBOARD_TSX, "223"),
    ("current_subscription", ObjOrNull, DASHBOARD_TSX, "273"),
    ("current_period_usage.start_date", Date, DASHBOARD_TSX, "350"),
    ("current_period_usage.end_date", Date, DASHBOARD_TSX, "351"),
    ("current_period_usage.total_stt_words", Int, DASHBOARD_TSX, "358"),
    ("current_period_usage.total_tts_words", Int, DASHBOARD_TSX, "364"),
    ("upcoming_charges.call_count", Int, DASHBOARD_TSX, "370,393"),
    ("upcoming_charges.total_charges_cents", Int, DASHBOARD_TSX, "376"),
    ("upcoming_charges.voice_words_count", Int, DASHBOARD_TSX, "386"),
    ("upcoming_charges.voice_usage_cents", Int, DASHBOARD_TSX, "387"),
    ("upcoming_charges.call_charges_cents", Int, DASHBOARD_TSX, "394"),
    ("recent_invoices", Arr, DASHBOARD_TSX, "408,410"),
    // Declared in its UsageStats (lines 40-48), not rendered by this page.
    ("current_period_usage.period", Str, DASHBOARD_TSX, "41"),
    ("current_period_usage.total_cost_cents", Int, DASHBOARD_TSX, "47"),
];

/// What the page reads of a subscription (rendered when `current_subscription` is set).
#[rustfmt::skip]
const DASHBOARD_SUBSCRIPTION_READS: &Reads = &[
    ("current_subscription.status", Str, DASHBOARD_TSX, "277-278 (.toLowerCase() at 177)"),
    ("current_subscription.amount_cents", Int, DASHBOARD_TSX, "284"),
    ("current_subscription.current_period_start", Date, DASHBOARD_TSX, "290"),
    ("current_subscription.current_period_end", Date, DASHBOARD_TSX, "291"),
    ("current_subscription.cancel_at_period_end", Bool, DASHBOARD_TSX, "294,304"),
    // Declared in its StripeSubscription (lines 11-22), not rendered.
    ("current_subscription.id", Str, DASHBOARD_TSX, "12"),
    ("current_subscription.stripe_subscription_id", Str, DASHBOARD_TSX, "13"),
    ("current_subscription.stripe_price_id", Str, DASHBOARD_TSX, "14"),
    ("current_subscription.currency", Str, DASHBOARD_TSX, "20"),
    ("current_subscription.created_at", Date, DASHBOARD_TSX, "21"),
];

/// What the page reads of each invoice.
#[rustfmt::skip]
const DASHBOARD_INVOICE_READS: &Reads = &[
    ("recent_invoices[].id", Str, DASHBOARD_TSX, "411 (key)"),
    ("recent_invoices[].period_start", Date, DASHBOARD_TSX, "414"),
    ("recent_invoices[].period_end", Date, DASHBOARD_TSX, "414"),
    ("recent_invoices[].voice_words_count", Int, DASHBOARD_TSX, "417 (.toLocaleString())"),
    ("recent_invoices[].status", Str, DASHBOARD_TSX, "419-420 (.toLowerCase() at 177)"),
    ("recent_invoices[].amount_due_cents", Int, DASHBOARD_TSX, "424"),
    ("recent_invoices[].paid_at", DateOrNull, DASHBOARD_TSX, "425-427"),
    // Declared in its StripeInvoice (lines 24-38), not rendered.
    ("recent_invoices[].stripe_invoice_id", Str, DASHBOARD_TSX, "26"),
    ("recent_invoices[].amount_paid_cents", Int, DASHBOARD_TSX, "29"),
    ("recent_invoices[].currency", Str, DASHBOARD_TSX, "30"),
    ("recent_invoices[].voice_usage_cents", Int, DASHBOARD_TSX, "34"),
    ("recent_invoices[].created_at", Date, DASHBOARD_TSX, "35"),
    ("recent_invoices[].due_date", DateOrNull, DASHBOARD_TSX, "36"),
];

/// What the page reads of a demo account's dashboard.
#[rustfmt::skip]
const DASHBOARD_DEMO_READS: &Reads = &[("demo_message", Str, DASHBOARD_TSX, "246")];

/// Registers the organizations and drives each into the state the pages show:
/// - Acme subscribed with a good card (its subscription invoice is paid), then its card started to fail:
///   last month's usage invoice (12,345 words, 2 calls) is open with a failed payment. Usage arrived
///   after that run: last month's (500 words, 1 call: late) and this month's (1,500 words, 1 call).
/// - Evergreen is in a 14-day trial: its 2,000 words this month are free.
/// - Demo is a demo account: its 3,000 words and a call are free.
/// - Riverside never subscribed: its 700 words and a call wait for its first subscription.
async fn platform_state(app: &TestApp) {
    for org in [ACME, EVERGREEN, DEMO, RIVERSIDE] {
        app.post(
            "/api/admin/tenants",
            Some(&crate::helpers::super_admin()),
            &json!({"id": org.id, "name": org.name, "subdomain": org.subdomain}),
        )
        .await
        .expect(201);
    }
    let (last_month, _) = closed_periods();
    app.subscribe(ACME.id, None, GOOD_CARD).await;
    usage(
        app,
        json!([
            {"event_id": "acme-stt", "tenant_id": ACME.id, "type": "stt_words", "quantity": 10_000, "occurred_at": inside(last_month)},
            {"event_id": "acme-tts", "tenant_id": ACME.id, "type": "tts_words", "quantity": 2_345, "occurred_at": inside(last_month)},
            {"event_id": "acme-call-1", "tenant_id": ACME.id, "type": "phone_calls", "quantity": 1, "occurred_at": inside(last_month)},
            {"event_id": "acme-call-2", "tenant_id": ACME.id, "type": "phone_calls", "quantity": 1, "occurred_at": inside(last_month)},
        ]),
    )
    .await;
    let customer = thanotopolis_billing::db::customers::customer_of(&app.db, ACME.id)
        .await
        .unwrap()
        .expect("Acme's customer");
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", FAILING_CARD)],
    )
    .await
    .expect(200);
    run(app, last_month, false).await.expect(200);
    app.settle().await;
    usage(
        app,
        json!([
            {"event_id": "acme-late-stt", "tenant_id": ACME.id, "type": "stt_words", "quantity": 500, "occurred_at": inside(last_month)},
            {"event_id": "acme-late-call", "tenant_id": ACME.id, "type": "phone_calls", "quantity": 1, "occurred_at": inside(last_month)},
            {"event_id": "acme-now-stt", "tenant_id": ACME.id, "type": "stt_words", "quantity": 1_000},
            {"event_id": "acme-now-tts", "tenant_id": ACME.id, "type": "tts_words", "quantity": 500},
            {"event_id": "acme-now-call", "tenant_id": ACME.id, "type": "phone_calls", "quantity": 1},
        ]),
    )
    .await;

    app.subscribe(EVERGREEN.id, Some(14), GOOD_CARD).await;
    app.post(
        &format!("/api/billing/set-demo-status/{}?is_demo=true", DEMO.id),
        Some(&crate::helpers::super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    usage(
        app,
        json!([
            {"event_id": "evergreen-stt", "tenant_id": EVERGREEN.id, "type": "stt_words", "quantity": 2_000},
            {"event_id": "demo-stt", "tenant_id": DEMO.id, "type": "stt_words", "quantity": 3_000},
            {"event_id": "demo-call", "tenant_id": DEMO.id, "type": "phone_calls", "quantity": 1},
            {"event_id": "riverside-stt", "tenant_id": RIVERSIDE.id, "type": "stt_words", "quantity": 700},
            {"event_id": "riverside-call", "tenant_id": RIVERSIDE.id, "type": "phone_calls", "quantity": 1},
        ]),
    )
    .await;
}

fn this_period() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC)
}

async fn billing_dashboard_page_gets_every_field_it_reads(app: TestApp) {
    platform_state(&app).await;

    // Acme, as a member sees it.
    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(ACME, "member"),
        Some(ACME),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_READS);
    assert_reads(&d, DASHBOARD_SUBSCRIPTION_READS);
    assert_reads(&d, DASHBOARD_INVOICE_READS);
    // Not the super admin's view (line 218), not a demo (line 223).
    assert!(d.get("view_type").is_none(), "{d}");
    assert_eq!(d["is_demo"], false);
    let sub = &d["current_subscription"];
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["amount_cents"], 29_900);
    assert_eq!(sub["cancel_at_period_end"], false);
    assert_eq!(sub["id"], sub["subscription_id"]);
    assert_eq!(sub["stripe_subscription_id"], sub["subscription_id"]);
    assert_eq!(sub["currency"], "usd");
    let usage_now = &d["current_period_usage"];
    assert_eq!(usage_now["total_stt_words"], 1_000);
    assert_eq!(usage_now["total_tts_words"], 500);
    assert_eq!(usage_now["period"], this_period().to_string());
    // This period's own charges: 1,500 words (150) and a call (100).
    assert_eq!(usage_now["total_cost_cents"], 250);
    let up = &d["upcoming_charges"];
    assert_eq!(
        (
            &up["voice_words_count"],
            &up["voice_usage_cents"],
            &up["call_count"],
            &up["call_charges_cents"]
        ),
        (&json!(1_500), &json!(150), &json!(1), &json!(100))
    );
    // Plus last month's late usage: 12,845 words round to 1,285 of which 1,235 were billed, and a call.
    assert_eq!(up["total_charges_cents"], 400, "{d}");

    let invoices = d["recent_invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{d}");
    // The usage invoice the run made, whose payment failed. (Both invoices were made within a second
    // or so: which is listed first is not fixed.)
    let usage_invoice = |i: &&Value| i["billing_period"].is_string();
    let failed = invoices
        .iter()
        .find(usage_invoice)
        .expect("the usage invoice");
    assert_eq!(failed["status"], "open");
    assert_eq!(failed["billing_period"], closed_periods().0.to_string());
    assert_eq!(failed["voice_words_count"], 12_345);
    assert_eq!(failed["voice_usage_cents"], 1_235);
    assert_eq!(failed["call_count"], 2);
    assert_eq!(failed["amount_due_cents"], 1_435);
    assert_eq!(failed["paid_at"], Value::Null);
    // Charged automatically: Stripe sets no due date.
    assert_eq!(failed["due_date"], Value::Null);
    assert_eq!(failed["id"], failed["stripe_invoice_id"]);
    let paid = invoices.iter().find(|i| !usage_invoice(i)).unwrap();
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["billing_period"], Value::Null);
    assert_eq!(paid["voice_words_count"], 0);
    assert_eq!(paid["call_count"], 0);
    assert_eq!(paid["amount_due_cents"], 29_900);
    assert!(is_date(&paid["paid_at"]), "{paid}");

    // Its Cancel and Reactivate buttons (lines 110, 138) show `message` (lines 124, 152).
    let admin = platform_token(ACME, "org_admin");
    let canceled = page_post(
        &app,
        "/api/billing/cancel-subscription",
        &admin,
        ACME,
        &json!({}),
    )
    .await
    .expect(200)
    .body;
    assert!(canceled["message"].is_string(), "{canceled}");
    let d = page_get(&app, "/api/billing/dashboard", &admin, Some(ACME))
        .await
        .expect(200)
        .body;
    assert_eq!(d["current_subscription"]["cancel_at_period_end"], true);
    let reactivated = page_post(
        &app,
        "/api/billing/reactivate-subscription",
        &admin,
        ACME,
        &json!({}),
    )
    .await
    .expect(200)
    .body;
    assert!(reactivated["message"].is_string(), "{reactivated}");
    let d = page_get(&app, "/api/billing/dashboard", &admin, Some(ACME))
        .await
        .expect(200)
        .body;
    assert_eq!(d["current_subscription"]["cancel_at_period_end"], false);

    // The demo account: the page's demo card (lines 223-255).
    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(DEMO, "org_admin"),
        Some(DEMO),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_READS);
    assert_reads(&d, DASHBOARD_DEMO_READS);
    assert_eq!(d["is_demo"], true);
    assert_eq!(
        d["demo_message"],
        "This is a demo account and is exempt from billing charges."
    );
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 0);

    // In a trial: its usage is recorded and free.
    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(EVERGREEN, "member"),
        Some(EVERGREEN),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_READS);
    assert_reads(&d, DASHBOARD_SUBSCRIPTION_READS);
    assert_eq!(d["current_subscription"]["status"], "trialing");
    assert_eq!(d["current_period_usage"]["total_stt_words"], 2_000);
    assert_eq!(d["current_period_usage"]["total_cost_cents"], 0);
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 0);

    // Without a subscription: the page offers the plans (line 338); the usage waits for one.
    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(RIVERSIDE, "org_admin"),
        Some(RIVERSIDE),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_READS);
    assert_eq!(d["current_subscription"], Value::Null);
    assert_eq!(d["recent_invoices"], json!([]));
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 170);

    // An organization the platform has and we do not have yet: its empty billing, not an error.
    let lakeside = Org {
        id: "9b2f1d3e-5c4a-4e8b-9f10-2a3b4c5d6e05",
        name: "Lakeside",
        subdomain: "lakeside",
    };
    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(lakeside, "org_admin"),
        Some(lakeside),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_READS);
    assert_eq!(d["is_demo"], false);
    assert_eq!(d["current_subscription"], Value::Null);
    assert_eq!(d["recent_invoices"], json!([]));
    assert_eq!(d["current_period_usage"]["total_stt_words"], 0);
    assert_eq!(
        d["current_period_usage"]["period"],
        this_period().to_string()
    );
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 0);
    // A super admin naming an unknown organization is told so, in `detail`.
    let r = page_get(
        &app,
        &format!("/api/billing/dashboard?tenant_id={}", lakeside.id),
        &platform_token(PLATFORM, "super_admin"),
        Some(PLATFORM),
    )
    .await
    .expect(404);
    assert!(r.body["detail"].is_string(), "{}", r.text);

    // A token the service cannot verify: 401 with `detail`.
    let r = page_request(
        &app,
        reqwest::Method::GET,
        "/api/billing/dashboard",
        Some("not-a-token"),
        Some(ACME),
        None,
    )
    .await
    .expect(401);
    assert!(r.body["detail"].is_string());
}

// --- components/SubscriptionPlans.tsx and app/billing/signup/page.tsx -------------------------------

/// What the plans component reads of `GET /api/billing/subscription-plans` (line 34).
#[rustfmt::skip]
const PLANS_READS: &Reads = &[
    ("plans", Arr, PLANS_TSX, "43,97,120"),
    ("plans[].id", Str, PLANS_TSX, "121,145,164"),
    ("plans[].name", Str, PLANS_TSX, "123,158"),
    ("plans[].amount_cents", Int, PLANS_TSX, "126"),
    ("plans[].interval", Str, PLANS_TSX, "127"),
    ("plans[].features", Arr, PLANS_TSX, "133"),
    // Declared in its Plan (lines 8-16), not rendered.
    ("plans[].price_id", Str, PLANS_TSX, "11"),
    ("plans[].currency", Str, PLANS_TSX, "13"),
];

/// What the signup page reads of the same route, fetched without a token (line 39).
#[rustfmt::skip]
const SIGNUP_PLANS_READS: &Reads = &[
    ("plans", Arr, SIGNUP_PAGE, "42-43"),
    ("plans[].name", Str, SIGNUP_PAGE, "136"),
    ("plans[].amount_cents", Int, SIGNUP_PAGE, "139 (.toFixed)"),
    ("plans[].interval", Str, SIGNUP_PAGE, "141"),
    ("plans[].features", Arr, SIGNUP_PAGE, "147-148"),
];

async fn subscription_plans_page_lists_and_subscribes(app: TestApp) {
    platform_state(&app).await;
    let admin = platform_token(RIVERSIDE, "org_admin");
    let plans = page_get(
        &app,
        "/api/billing/subscription-plans",
        &admin,
        Some(RIVERSIDE),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&plans, PLANS_READS);
    for feature in values_at(&plans, "plans[].features") {
        assert!(
            feature.as_array().unwrap().iter().all(Value::is_string),
            "each feature is rendered as text (line 138): {feature}"
        );
    }
    let signup = page_request(
        &app,
        reqwest::Method::GET,
        "/api/billing/subscription-plans",
        None,
        None,
        None,
    )
    .await
    .expect(200)
    .body;
    assert_reads(&signup, SIGNUP_PLANS_READS);
    let plan_id = plans["plans"][0]["id"].as_str().unwrap().to_owned();

    // The Subscribe button (line 145): `{plan_id}` only, then the browser goes to `checkout_url` (line 69).
    let started = page_post(
        &app,
        "/api/billing/start-subscription",
        &admin,
        RIVERSIDE,
        &json!({"plan_id": plan_id}),
    )
    .await
    .expect(200)
    .body;
    let checkout_url = started["checkout_url"]
        .as_str()
        .expect("checkout_url (SubscriptionPlans.tsx:69)");
    assert!(checkout_url.starts_with("http"), "{checkout_url}");
    let session_id = started["session_id"].as_str().unwrap().to_owned();
    let session = app
        .sim_get(&format!("/v1/checkout/sessions/{session_id}"))
        .await
        .expect(200)
        .body;
    // Back to the billing page afterwards, at this service's public address.
    assert_eq!(
        session["success_url"],
        app.url("/billing?checkout=success"),
        "{session}"
    );
    assert_eq!(session["cancel_url"], app.url("/billing?checkout=cancel"));
    assert_eq!(session["mode"], "subscription");
    // A second click reuses the open session, as create-checkout-session does.
    let again = page_post(
        &app,
        "/api/billing/start-subscription",
        &admin,
        RIVERSIDE,
        &json!({"plan_id": plan_id}),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(again["session_id"], session_id.as_str());

    // Errors are shown as `error.detail` (line 72).
    let refused = |r: Reply, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.body["code"], code, "{}", r.text);
        assert!(
            r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            r.text
        );
    };
    refused(
        page_post(
            &app,
            "/api/billing/start-subscription",
            &admin,
            RIVERSIDE,
            &json!({"plan_id": "pro"}),
        )
        .await,
        422,
        "unknown_plan",
    );
    refused(
        page_post(
            &app,
            "/api/billing/start-subscription",
            &platform_token(ACME, "org_admin"),
            ACME,
            &json!({"plan_id": plan_id}),
        )
        .await,
        409,
        "subscription_exists",
    );
    refused(
        page_post(
            &app,
            "/api/billing/start-subscription",
            &platform_token(DEMO, "org_admin"),
            DEMO,
            &json!({"plan_id": plan_id}),
        )
        .await,
        403,
        "demo_account",
    );
    refused(
        page_post(
            &app,
            "/api/billing/start-subscription",
            &platform_token(RIVERSIDE, "member"),
            RIVERSIDE,
            &json!({"plan_id": plan_id}),
        )
        .await,
        403,
        "forbidden",
    );
    refused(
        page_post(
            &app,
            "/api/billing/start-subscription",
            &admin,
            RIVERSIDE,
            &json!({"plan_id": plan_id, "success_url": "javascript:alert(1)"}),
        )
        .await,
        422,
        "invalid_url",
    );

    // Paying on Stripe's page subscribes the organization: its dashboard shows the subscription.
    app.complete_checkout(&session_id, GOOD_CARD).await;
    let d = page_get(&app, "/api/billing/dashboard", &admin, Some(RIVERSIDE))
        .await
        .expect(200)
        .body;
    assert_reads(&d, DASHBOARD_SUBSCRIPTION_READS);
    assert_eq!(d["current_subscription"]["status"], "active");
    // The usage that waited is now billed by the next run: still in the upcoming charges.
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 170);
}

// --- components/SuperAdminBilling.tsx: what BillingDashboard.tsx renders for view_type (line 218) -----

#[rustfmt::skip]
const SUPER_ADMIN_READS: &Reads = &[
    ("view_type", Str, DASHBOARD_TSX, "218"),
    ("total_organizations", Int, SUPER_ADMIN_TSX, "78"),
    ("total_revenue_cents", Int, SUPER_ADMIN_TSX, "88,219"),
    ("summary.total_subscription_revenue", Int, SUPER_ADMIN_TSX, "99"),
    ("summary.total_usage_revenue", Int, SUPER_ADMIN_TSX, "110,148"),
    ("summary.period_start", Date, SUPER_ADMIN_TSX, "121"),
    ("summary.period_end", Date, SUPER_ADMIN_TSX, "121"),
    ("total_voice_words", Int, SUPER_ADMIN_TSX, "127 (.toLocaleString())"),
    ("total_phone_calls", Int, SUPER_ADMIN_TSX, "131 (.toLocaleString())"),
    ("summary.total_voice_revenue", Int, SUPER_ADMIN_TSX, "136"),
    ("summary.total_call_revenue", Int, SUPER_ADMIN_TSX, "142"),
    ("organizations", Arr, SUPER_ADMIN_TSX, "179"),
    ("organizations[].organization_id", Str, SUPER_ADMIN_TSX, "180 (key)"),
    ("organizations[].organization_name", Str, SUPER_ADMIN_TSX, "181"),
    ("organizations[].subdomain", Str, SUPER_ADMIN_TSX, "182"),
    ("organizations[].subscription_revenue_cents", Int, SUPER_ADMIN_TSX, "184"),
    ("organizations[].voice_words_count", Int, SUPER_ADMIN_TSX, "187 (.toLocaleString())"),
    ("organizations[].call_count", Int, SUPER_ADMIN_TSX, "190"),
    ("organizations[].voice_charges_cents", Int, SUPER_ADMIN_TSX, "193"),
    ("organizations[].call_charges_cents", Int, SUPER_ADMIN_TSX, "196"),
    ("organizations[].total_charges_cents", Int, SUPER_ADMIN_TSX, "199"),
    ("organizations[].subscription", ObjOrNull, SUPER_ADMIN_TSX, "202"),
];

fn org_row(view: &Value, org: Org) -> &Value {
    view["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["organization_id"] == org.id)
        .unwrap_or_else(|| panic!("{} missing from {view}", org.name))
}

async fn super_admin_billing_page_gets_every_field_it_reads(app: TestApp) {
    platform_state(&app).await;
    let super_admin = platform_token(PLATFORM, "super_admin");
    let v = page_get(&app, "/api/billing/dashboard", &super_admin, Some(PLATFORM))
        .await
        .expect(200)
        .body;
    assert_reads(&v, SUPER_ADMIN_READS);
    assert_eq!(v["view_type"], "super_admin");
    assert_eq!(v["total_organizations"], 4);
    // The status badge (line 204) of each organization with a subscription.
    assert_eq!(org_row(&v, ACME)["subscription"]["status"], "active");
    assert_eq!(org_row(&v, EVERGREEN)["subscription"]["status"], "trialing");
    assert_eq!(org_row(&v, DEMO)["subscription"], Value::Null);
    assert_eq!(org_row(&v, RIVERSIDE)["subscription"], Value::Null);

    // (subscription, voice words, voice, calls, call charges, late, total, awaiting a subscription)
    let figures = |org: Org| {
        let o = org_row(&v, org);
        [
            "subscription_revenue_cents",
            "voice_words_count",
            "voice_charges_cents",
            "call_count",
            "call_charges_cents",
            "late_charges_cents",
            "total_charges_cents",
        ]
        .map(|k| o[k].as_i64().unwrap_or_else(|| panic!("{k} of {o}")))
    };
    // Acme: $299 in MRR; this month's 1,500 words and a call; last month's late 50 + 100.
    assert_eq!(figures(ACME), [29_900, 1_500, 150, 1, 100, 150, 30_300]);
    // Trialing: not in MRR, and its usage is free.
    assert_eq!(figures(EVERGREEN), [0, 0, 0, 0, 0, 0, 0]);
    // Demo: free.
    assert_eq!(figures(DEMO), [0, 0, 0, 0, 0, 0, 0]);
    // Never subscribed: 700 words (70) and a call, waiting for its first subscription.
    assert_eq!(figures(RIVERSIDE), [0, 700, 70, 1, 100, 0, 170]);
    assert_eq!(org_row(&v, RIVERSIDE)["awaiting_subscription"], true);
    assert_eq!(org_row(&v, ACME)["awaiting_subscription"], false);
    assert_eq!(org_row(&v, DEMO)["awaiting_subscription"], false);
    // What was recorded, free or not.
    assert_eq!(
        org_row(&v, DEMO)["usage_this_month"],
        json!({"stt_words": 3_000, "tts_words": 0, "phone_calls": 1})
    );

    assert_eq!(v["total_revenue_cents"], 30_470);
    assert_eq!(v["total_voice_words"], 2_200);
    assert_eq!(v["total_phone_calls"], 2);
    let s = &v["summary"];
    assert_eq!(s["total_subscription_revenue"], 29_900);
    assert_eq!(s["total_voice_revenue"], 220);
    assert_eq!(s["total_call_revenue"], 200);
    assert_eq!(s["total_late_revenue"], 150);
    assert_eq!(s["total_usage_revenue"], 570);
    assert_eq!(s["total_awaiting_subscription"], 170);
    let (start, _) = this_period().bounds(chrono_tz::UTC);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(s["period_start"].as_str().unwrap()).unwrap(),
        start
    );

    // With `?tenant_id=`, a super admin still gets that organization's own dashboard.
    let d = page_get(
        &app,
        &format!("/api/billing/dashboard?tenant_id={}", ACME.id),
        &super_admin,
        Some(PLATFORM),
    )
    .await
    .expect(200)
    .body;
    assert!(d.get("view_type").is_none());
    assert_reads(&d, DASHBOARD_READS);
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 400);
}

// --- app/billing/organization/page.tsx: GET /api/admin/organizations/{id}/billing (line 90) ---------

#[rustfmt::skip]
const ORGANIZATION_READS: &Reads = &[
    ("organization_name", Str, ORGANIZATION_PAGE, "149"),
    ("subdomain", Str, ORGANIZATION_PAGE, "149"),
    ("is_demo", Bool, ORGANIZATION_PAGE, "166"),
    ("current_period_usage", Obj, ORGANIZATION_PAGE, "197"),
    ("current_period_usage.total_tts_words", Int, ORGANIZATION_PAGE, "201 (.toLocaleString())"),
    ("current_period_usage.total_stt_words", Int, ORGANIZATION_PAGE, "205 (.toLocaleString())"),
    ("upcoming_charges.call_count", Int, ORGANIZATION_PAGE, "209"),
    ("current_period_usage.total_cost_cents", Int, ORGANIZATION_PAGE, "213 (.toFixed)"),
    ("upcoming_charges.voice_usage_cents", Int, ORGANIZATION_PAGE, "230"),
    ("upcoming_charges.call_charges_cents", Int, ORGANIZATION_PAGE, "234"),
    ("upcoming_charges.total_charges_cents", Int, ORGANIZATION_PAGE, "238"),
    ("current_subscription", ObjOrNull, ORGANIZATION_PAGE, "245"),
    ("recent_invoices", Arr, ORGANIZATION_PAGE, "293,295"),
    // Declared in its OrganizationBilling (lines 48-64), not rendered.
    ("organization_id", Str, ORGANIZATION_PAGE, "49"),
];

#[rustfmt::skip]
const ORGANIZATION_SUBSCRIPTION_READS: &Reads = &[
    ("current_subscription.status", Str, ORGANIZATION_PAGE, "257,259"),
    ("current_subscription.amount_cents", Int, ORGANIZATION_PAGE, "264"),
    ("current_subscription.current_period_start", Date, ORGANIZATION_PAGE, "271"),
    ("current_subscription.current_period_end", Date, ORGANIZATION_PAGE, "271"),
    ("current_subscription.cancel_at_period_end", Bool, ORGANIZATION_PAGE, "277"),
];

#[rustfmt::skip]
const ORGANIZATION_INVOICE_READS: &Reads = &[
    ("recent_invoices[].id", Str, ORGANIZATION_PAGE, "296 (key)"),
    ("recent_invoices[].stripe_invoice_id", Str, ORGANIZATION_PAGE, "299"),
    ("recent_invoices[].period_start", Date, ORGANIZATION_PAGE, "301"),
    ("recent_invoices[].period_end", Date, ORGANIZATION_PAGE, "301"),
    ("recent_invoices[].amount_due_cents", Int, ORGANIZATION_PAGE, "305"),
    ("recent_invoices[].status", Str, ORGANIZATION_PAGE, "307,309"),
    ("recent_invoices[].voice_words_count", Int, ORGANIZATION_PAGE, "313,315 (.toLocaleString())"),
    ("recent_invoices[].voice_usage_cents", Int, ORGANIZATION_PAGE, "315"),
];

#[rustfmt::skip]
const ORGANIZATION_DEMO_READS: &Reads = &[("demo_message", Str, ORGANIZATION_PAGE, "180")];

/// The page's answer without the three organization fields: the organization's own dashboard.
fn without_organization(v: &Value) -> Value {
    let mut v = v.clone();
    let m = v.as_object_mut().unwrap();
    for k in ["organization_id", "organization_name", "subdomain"] {
        assert!(m.remove(k).is_some(), "{k}");
    }
    v
}

async fn organization_billing_page_gets_every_field_it_reads(app: TestApp) {
    platform_state(&app).await;
    let super_admin = platform_token(PLATFORM, "super_admin");
    // The page sends no X-Tenant-ID (lines 90-95).
    let path = |org: Org| format!("/api/admin/organizations/{}/billing", org.id);

    let b = page_get(&app, &path(ACME), &super_admin, None)
        .await
        .expect(200)
        .body;
    assert_reads(&b, ORGANIZATION_READS);
    assert_reads(&b, ORGANIZATION_SUBSCRIPTION_READS);
    assert_reads(&b, ORGANIZATION_INVOICE_READS);
    assert_eq!(b["organization_id"], ACME.id);
    assert_eq!(b["organization_name"], ACME.name);
    assert_eq!(b["subdomain"], ACME.subdomain);
    assert_eq!(b["current_period_usage"]["total_cost_cents"], 250);
    let mut invoices: Vec<(&str, i64)> = b["recent_invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["status"].as_str().unwrap(),
                i["voice_words_count"].as_i64().unwrap(),
            )
        })
        .collect();
    invoices.sort();
    assert_eq!(invoices, vec![("open", 12_345), ("paid", 0)]);
    // Otherwise exactly what the organization's own dashboard says.
    let own = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(ACME, "member"),
        Some(ACME),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(without_organization(&b), own);

    let b = page_get(&app, &path(DEMO), &super_admin, None)
        .await
        .expect(200)
        .body;
    assert_reads(&b, ORGANIZATION_READS);
    assert_reads(&b, ORGANIZATION_DEMO_READS);
    assert_eq!(b["is_demo"], true);
    assert_eq!(b["organization_name"], DEMO.name);

    for org in [EVERGREEN, RIVERSIDE] {
        let b = page_get(&app, &path(org), &super_admin, None)
            .await
            .expect(200)
            .body;
        assert_reads(&b, ORGANIZATION_READS);
        assert_eq!(b["subdomain"], org.subdomain);
    }

    // Errors carry `detail`: an organization we do not have, and a caller who is not a super admin.
    let r = page_get(
        &app,
        "/api/admin/organizations/9b2f1d3e-0000-4000-8000-000000000000/billing",
        &super_admin,
        None,
    )
    .await
    .expect(404);
    assert_eq!(r.body["code"], "tenant_not_found");
    assert!(r.body["detail"].is_string());
    let r = page_get(&app, &path(ACME), &platform_token(ACME, "org_admin"), None)
        .await
        .expect(403);
    assert!(r.body["detail"].is_string());
}

// --- The super admin's figures are the overview's and the monthly run's ------------------------------

async fn super_admin_figures_are_the_overviews_and_the_runs(app: TestApp) {
    platform_state(&app).await;
    let super_admin = platform_token(PLATFORM, "super_admin");
    let v = page_get(&app, "/api/billing/dashboard", &super_admin, None)
        .await
        .expect(200)
        .body;
    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin))
        .await
        .expect(200)
        .body;
    // What the run for this period would bill if it ran now: a dry run of the current period.
    let state = app.state();
    let report = run_period(&state, this_period(), RunOptions::new(&state, true))
        .await
        .expect("dry run");
    let report = serde_json::to_value(&report).unwrap();

    assert_eq!(
        v["summary"]["total_subscription_revenue"], o["mrr_cents"],
        "MRR: {v} {o}"
    );
    let usage_of = |row: &Value| {
        [
            "voice_charges_cents",
            "call_charges_cents",
            "late_charges_cents",
        ]
        .iter()
        .map(|k| row[k].as_i64().unwrap())
        .sum::<i64>()
    };
    for org in [ACME, EVERGREEN, DEMO, RIVERSIDE] {
        let row = org_row(&v, org);
        let overview_row = o["organizations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tenant_id"] == org.id)
            .unwrap();
        assert_eq!(
            row["subscription_revenue_cents"], overview_row["mrr_cents"],
            "{}",
            org.name
        );
        assert_eq!(
            json!(usage_of(row)),
            overview_row["upcoming_usage_cents"],
            "{}",
            org.name
        );
        assert_eq!(
            row["total_charges_cents"].as_i64().unwrap(),
            row["subscription_revenue_cents"].as_i64().unwrap() + usage_of(row),
            "{}",
            org.name
        );
        let billed = report["billed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["tenant_id"] == org.id);
        let skipped = report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["tenant_id"] == org.id)
            .map(|s| s["reason"].as_str().unwrap());
        match (billed, skipped) {
            (Some(b), None) => assert_eq!(json!(usage_of(row)), b["total_cents"], "{}", org.name),
            // Trial and demo usage are free: nothing to bill, as the view says.
            (None, Some("trial_only" | "demo" | "no_usage")) => {
                assert_eq!(usage_of(row), 0, "{}: {report}", org.name)
            }
            // Its usage waits for a subscription: the view says so and keeps it apart.
            (None, Some("no_subscription")) => {
                assert_eq!(row["awaiting_subscription"], true, "{}", org.name)
            }
            other => panic!("{}: {other:?} in {report}", org.name),
        }
    }
    assert_eq!(
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (
                s["tenant_id"].as_str().unwrap(),
                s["reason"].as_str().unwrap()
            ))
            .collect::<std::collections::BTreeMap<_, _>>(),
        std::collections::BTreeMap::from([
            (EVERGREEN.id, "trial_only"),
            (DEMO.id, "demo"),
            (RIVERSIDE.id, "no_subscription"),
        ])
    );
    let s = &v["summary"];
    assert_eq!(
        s["total_usage_revenue"].as_i64().unwrap()
            - s["total_awaiting_subscription"].as_i64().unwrap(),
        report["totals"]["billed_cents"].as_i64().unwrap(),
        "{v} {report}"
    );
    // And the run's lines are the ones the row's figures come from.
    let acme = report["billed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["tenant_id"] == ACME.id)
        .unwrap();
    let last_month = closed_periods().0;
    assert_eq!(
        acme["lines"],
        json!([
            {"description": "Voice Usage: 1,500 words (STT: 1,000, TTS: 500)", "amount_cents": 150},
            {"description": "Phone Calls: 1 call", "amount_cents": 100},
            {"description": format!("Late usage for {last_month}: Voice Usage: 500 words (STT: 500, TTS: 0)"), "amount_cents": 50},
            {"description": format!("Late usage for {last_month}: Phone Calls: 1 call"), "amount_cents": 100},
        ])
    );
}

// --- due_date: set by Stripe on an invoice sent for payment -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_sent_for_payment_shows_its_due_date_sqlite() {
    an_invoice_sent_for_payment_shows_its_due_date(crate::helpers::Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_sent_for_payment_shows_its_due_date_postgres() {
    an_invoice_sent_for_payment_shows_its_due_date(crate::helpers::Store::Postgres).await;
}

/// With `BILLING_COLLECTION_METHOD=send_invoice` Stripe sets the usage invoice's `due_date` when it is
/// finalized; the dashboard shows Stripe's date (`components/BillingDashboard.tsx:36`).
async fn an_invoice_sent_for_payment_shows_its_due_date(store: crate::helpers::Store) {
    let app = crate::helpers::spawn_app_with(store, |vars| {
        vars.insert("BILLING_COLLECTION_METHOD".into(), "send_invoice".into());
        vars.insert("BILLING_DAYS_UNTIL_DUE".into(), "14".into());
    })
    .await;
    app.post(
        "/api/admin/tenants",
        Some(&crate::helpers::super_admin()),
        &json!({"id": ACME.id, "name": ACME.name, "subdomain": ACME.subdomain}),
    )
    .await
    .expect(201);
    app.subscribe(ACME.id, None, GOOD_CARD).await;
    let (last_month, _) = closed_periods();
    usage(
        &app,
        json!([{"event_id": "call", "tenant_id": ACME.id, "type": "phone_calls", "quantity": 1, "occurred_at": inside(last_month)}]),
    )
    .await;
    run(&app, last_month, false).await.expect(200);
    app.settle().await;
    let stripe_invoice = app.usage_invoices(ACME.id, last_month).await.remove(0);
    let due = stripe_invoice["due_date"]
        .as_i64()
        .expect("Stripe's due date of an invoice sent for payment");

    let d = page_get(
        &app,
        "/api/billing/dashboard",
        &platform_token(ACME, "member"),
        Some(ACME),
    )
    .await
    .expect(200)
    .body;
    assert_reads(&d, DASHBOARD_INVOICE_READS);
    let shown = d["recent_invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["billing_period"] == last_month.to_string())
        .expect("the usage invoice");
    let shown_due =
        chrono::DateTime::parse_from_rfc3339(shown["due_date"].as_str().unwrap()).unwrap();
    assert_eq!(shown_due.timestamp(), due, "{shown}");
    assert_eq!(shown["call_count"], 1);
    assert_eq!(shown["status"], "open");
}

/// API.md: "The `tenant_id` of a `super_admin` ... token need not name a tenant": the all-organizations
/// view is answered whatever the token's `tenant_id` holds; a view of one tenant still needs a valid one.
async fn a_super_admins_token_need_not_name_a_tenant(app: TestApp) {
    app.add_tenant("org-a").await;
    for tenant_id in ["", &"x".repeat(65)] {
        let token = crate::helpers::token(tenant_id, "super_admin");
        let view = app
            .get("/api/billing/dashboard", Some(&token))
            .await
            .expect(200)
            .body;
        assert_eq!(view["view_type"], "super_admin");
        assert_eq!(view["total_organizations"], 1);
        let named = app
            .get("/api/billing/dashboard?tenant_id=", Some(&token))
            .await
            .expect(422);
        assert_eq!(named.body["code"], "invalid_tenant_id");
        let member = crate::helpers::token(tenant_id, "member");
        let refused = app
            .get("/api/billing/dashboard", Some(&member))
            .await
            .expect(422);
        assert!(refused.body["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
    }
}
