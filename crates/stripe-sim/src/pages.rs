//! Hosted pages a person (or a WebDriver test) can use: checkout, customer portal and hosted
//! invoices. Plain HTML forms, no JavaScript, stable element ids. A page reads and changes the
//! store it is given (the caller holds the lock) and the money moves through `billing`, as for
//! the API: the pages know nothing of the HTTP server.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::billing::{self, money};
use crate::clock::human_date;
use crate::form::parse_form;
use crate::model::{Invoice, Subscription};
use crate::store::Store;

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:#f6f9fc;color:#1a1f36}
.wrap{display:flex;min-height:100vh;flex-wrap:wrap}
.side{flex:1 1 380px;background:#fff;padding:64px 48px;border-right:1px solid #e3e8ee}
.main{flex:1 1 420px;padding:64px 48px;max-width:560px}
.brand{font-weight:600;color:#635bff;margin-bottom:32px;display:flex;gap:8px;align-items:center}
.brand .dot{width:24px;height:24px;border-radius:6px;background:linear-gradient(135deg,#635bff,#a960ee)}
.test{font-size:11px;background:#ffde92;color:#7a4a00;padding:2px 6px;border-radius:4px;font-weight:600;text-transform:uppercase}
h1{font-size:16px;color:#697386;font-weight:500;margin:0 0 4px}
.amount{font-size:36px;font-weight:600;margin:0}.per{font-size:15px;color:#697386;font-weight:400}
.note{background:#eef4ff;color:#3d4eac;border-radius:6px;padding:10px 12px;margin-top:20px;font-size:14px}
.err{background:#fff0f0;color:#c0123c;border-radius:6px;padding:10px 12px;margin-bottom:16px;font-size:14px}
.ok{background:#ecfdf3;color:#05603a;border-radius:6px;padding:10px 12px;margin-bottom:16px;font-size:14px}
label{display:block;font-size:13px;color:#3c4257;margin:16px 0 6px;font-weight:500}
input{width:100%;padding:10px 12px;font-size:15px;border:1px solid #d5dbe1;border-radius:6px;background:#fff}
input:focus{outline:none;border-color:#635bff;box-shadow:0 0 0 3px rgba(99,91,255,.2)}
.row{display:flex;gap:12px}.row>div{flex:1}
button,.btn{display:inline-block;width:100%;margin-top:24px;padding:12px;font-size:16px;font-weight:600;color:#fff;background:#635bff;border:0;border-radius:6px;cursor:pointer;text-align:center;text-decoration:none}
button:hover,.btn:hover{background:#5046e5}
.secondary{background:#fff;color:#3c4257;border:1px solid #d5dbe1}.secondary:hover{background:#f6f9fc}
.danger{background:#fff;color:#c0123c;border:1px solid #f0b4c0}.danger:hover{background:#fff0f0}
.hint{font-size:12px;color:#8792a2;margin-top:6px}
a{color:#635bff}.back{display:inline-block;margin-top:20px;font-size:14px;color:#697386;text-decoration:none}
table{width:100%;border-collapse:collapse;font-size:14px;margin-top:8px}td,th{padding:10px 4px;border-bottom:1px solid #e3e8ee;text-align:left}th{color:#697386;font-weight:500}
.card{background:#fff;border:1px solid #e3e8ee;border-radius:8px;padding:20px 24px;margin-bottom:20px}
.badge{display:inline-block;font-size:12px;padding:2px 8px;border-radius:10px;background:#e3e8ee;color:#3c4257;font-weight:500}
.badge.active,.badge.paid,.badge.trialing{background:#d7f7c2;color:#05603a}.badge.past_due,.badge.open{background:#fde2dd;color:#a41c4e}
.right{text-align:right}.muted{color:#697386;font-size:14px}
"#;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: u16, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>{body}</body></html>",
        esc(title)
    );
    let mut r = Response::new(Body::from(page));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert("location", v);
    }
    r
}

fn not_found(what: &str) -> Response {
    html(
        404,
        "Not found",
        &format!("<div class=\"main\" style=\"margin:auto\"><div class=\"card\"><h1>Not found</h1><p>{}</p></div></div>", esc(what)),
    )
}

fn brand() -> &'static str {
    "<div class=\"brand\"><span class=\"dot\"></span>Stripe Simulator <span class=\"test\">Test mode</span></div>"
}

pub fn handle(s: &mut Store, parts: &Parts, body: &[u8]) -> Response {
    let path = parts.uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let form = parse_form(body);
    let field = |k: &str| {
        form.get(k)
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let post = parts.method == "POST";
    match (post, segs.as_slice()) {
        (false, [""]) => html(
            200,
            "Stripe Simulator",
            &format!("<div class=\"main\" style=\"margin:auto\">{}<div class=\"card\"><p>The Stripe API is served under <code>/v1</code>; controls under <code>/_sim</code>.</p></div></div>", brand()),
        ),
        (false, ["checkout", id]) => checkout_page(s, id, None),
        (true, ["checkout", id, "pay"]) => {
            let payment = if field("payment_method_type") == "us_bank_account" {
                billing::CheckoutPayment::Bank(field("accountNumber"))
            } else {
                let card = field("cardNumber");
                billing::CheckoutPayment::Card(if card.is_empty() { billing::DEFAULT_CARD.to_string() } else { card })
            };
            let email = Some(field("email")).filter(|e| !e.is_empty());
            match billing::complete_checkout(s, id, payment, email) {
                Ok(()) => {
                    let url = s
                        .checkout_sessions
                        .get(id)
                        .and_then(|c| c.success_url.clone())
                        .unwrap_or_else(|| format!("/checkout/{id}"));
                    redirect(&url.replace("{CHECKOUT_SESSION_ID}", id))
                }
                Err(e) => checkout_page(s, id, Some(&e.message)),
            }
        }
        (false, ["portal", id]) => portal_page(s, id, None, None),
        (true, ["portal", id, action]) => portal_action(s, id, action, &field("cardNumber")),
        (false, ["invoice", id]) | (false, ["invoice", id, "pdf"]) => invoice_page(s, id, None),
        (true, ["invoice", id, "confirm"]) => match billing::confirm_payment(s, id) {
            Ok(()) => redirect(&format!("/invoice/{id}")),
            Err(e) => invoice_page(s, id, Some(&e.message)),
        },
        (true, ["invoice", id, "pay"]) => {
            let card = field("cardNumber");
            let res = (|| {
                let inv = s.invoices.get(id).ok_or_else(|| crate::error::ApiError::invalid("No such invoice"))?;
                let customer = inv.customer.clone();
                let pm = if card.is_empty() {
                    None
                } else {
                    let n = billing::check_card(&card)?;
                    Some(billing::attach_card(s, &customer, &n, true))
                };
                billing::attempt_payment(s, id, pm, billing::Attempt::OnSession)
            })();
            match res {
                Ok(()) => redirect(&format!("/invoice/{id}")),
                Err(e) => invoice_page(s, id, Some(&e.message)),
            }
        }
        _ => not_found("There is no page here."),
    }
}

fn checkout_page(s: &Store, id: &str, error: Option<&str>) -> Response {
    let Some(cs) = s.checkout_sessions.get(id) else {
        return not_found("This checkout session does not exist.");
    };
    let line = cs.line_items.first();
    let price = line.and_then(|l| s.prices.get(&l.price));
    let name = line
        .map(|l| billing::price_product_name(s, &l.price))
        .unwrap_or_else(|| "Subscription".into());
    let interval = price
        .and_then(|p| p.recurring.as_ref())
        .map(|r| {
            if r.interval_count > 1 {
                format!("every {} {}s", r.interval_count, r.interval)
            } else {
                format!("per {}", r.interval)
            }
        })
        .unwrap_or_default();
    let amount = money(cs.amount_total, &cs.currency);
    let trial = match (cs.trial_period_days, cs.trial_end) {
        (Some(d), _) => Some(format!(
            "{d} days free, then {amount} {interval} starting {}.",
            human_date(s.now() + d * 86_400)
        )),
        (None, Some(t)) => Some(format!(
            "Free until {}, then {amount} {interval}.",
            human_date(t)
        )),
        _ => None,
    };
    if cs.status != "open" {
        let msg = if cs.status == "complete" {
            "This checkout session is complete. Thank you!"
        } else {
            "This checkout session has expired."
        };
        return html(
            200,
            "Checkout",
            &format!("<div class=\"main\" style=\"margin:auto\">{}<div class=\"card\" id=\"status\"><p>{msg}</p></div></div>", brand()),
        );
    }
    let email = s
        .customers
        .get(cs.customer.as_deref().unwrap_or(""))
        .and_then(|c| c.email.clone())
        .or(cs.customer_email.clone())
        .unwrap_or_default();
    let cancel = cs
        .cancel_url
        .as_ref()
        .map(|u| {
            format!(
                "<a class=\"back\" id=\"cancel\" href=\"{}\">&larr; Cancel and go back</a>",
                esc(u)
            )
        })
        .unwrap_or_default();
    let side = format!(
        "<div class=\"side\">{}<h1 id=\"product-name\">Subscribe to {}</h1><p class=\"amount\" id=\"amount\">{} <span class=\"per\">{}</span></p>{}{}</div>",
        brand(),
        esc(&name),
        esc(&amount),
        esc(&interval),
        trial.map(|t| format!("<div class=\"note\" id=\"trial-notice\">{}</div>", esc(&t))).unwrap_or_default(),
        cancel
    );
    let err = error
        .map(|e| format!("<div class=\"err\" id=\"error\">{}</div>", esc(e)))
        .unwrap_or_default();
    let button = if cs.trial_period_days.is_some() || cs.trial_end.is_some() {
        "Start trial"
    } else {
        "Subscribe"
    };
    // ACH Direct Debit, when the session offers it: Stripe's test bank (routing 110000000).
    let bank = if cs
        .payment_method_types
        .iter()
        .any(|t| t == "us_bank_account")
    {
        format!(
            "<form method=\"post\" action=\"/checkout/{id}/pay\" id=\"bank-form\"><input type=\"hidden\" name=\"payment_method_type\" value=\"us_bank_account\">\
<label for=\"accountNumber\">US bank account (routing 110000000)</label><input id=\"accountNumber\" name=\"accountNumber\" inputmode=\"numeric\" placeholder=\"000123456789\">\
<div class=\"hint\">Test accounts: 000123456789 is paid after 4 days of processing; 000222222227 fails then (insufficient funds).</div>\
<button type=\"submit\" id=\"submit-bank\" class=\"secondary\">{button} with bank account</button></form>"
        )
    } else {
        String::new()
    };
    let main = format!(
        "<div class=\"main\"><form method=\"post\" action=\"/checkout/{id}/pay\" id=\"payment-form\">{err}\
<label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" value=\"{}\" placeholder=\"you@example.com\">\
<label for=\"cardNumber\">Card information</label><input id=\"cardNumber\" name=\"cardNumber\" inputmode=\"numeric\" autocomplete=\"cc-number\" placeholder=\"4242 4242 4242 4242\">\
<div class=\"hint\">Test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0341 is declined on charge.</div>\
<div class=\"row\"><div><label for=\"cardExpiry\">Expiry</label><input id=\"cardExpiry\" name=\"cardExpiry\" placeholder=\"12 / 34\"></div><div><label for=\"cardCvc\">CVC</label><input id=\"cardCvc\" name=\"cardCvc\" placeholder=\"123\"></div></div>\
<label for=\"billingName\">Name on card</label><input id=\"billingName\" name=\"billingName\" placeholder=\"Jane Doe\">\
<button type=\"submit\" id=\"submit\">{button}</button></form>{bank}</div>",
        esc(&email)
    );
    html(
        if error.is_some() { 402 } else { 200 },
        &format!("Subscribe to {name}"),
        &format!("<div class=\"wrap\">{side}{main}</div>"),
    )
}

fn sub_summary(s: &Store, sub: &Subscription) -> String {
    let item = sub.items.first();
    let name = item
        .map(|i| billing::price_product_name(s, &i.price))
        .unwrap_or_default();
    let amount: i64 = sub
        .items
        .iter()
        .map(|i| s.prices.get(&i.price).map(|p| p.unit_amount).unwrap_or(0) * i.quantity)
        .sum();
    let (interval, _) = item
        .map(|i| billing::interval_of(s, &i.price))
        .unwrap_or_default();
    let state = if sub.status == "canceled" {
        format!(
            "Canceled on {}.",
            human_date(sub.ended_at.unwrap_or(sub.current_period_end))
        )
    } else if sub.cancel_at_period_end {
        format!("Cancels on {}.", human_date(sub.current_period_end))
    } else if sub.status == "trialing" {
        format!(
            "Trial ends {}.",
            human_date(sub.trial_end.unwrap_or(sub.current_period_end))
        )
    } else {
        format!("Renews on {}.", human_date(sub.current_period_end))
    };
    format!(
        "<div><strong id=\"plan-name\">{}</strong> <span class=\"badge {}\" id=\"subscription-status\">{}</span></div><p class=\"amount\" style=\"font-size:24px\">{} <span class=\"per\">per {}</span></p><p class=\"muted\" id=\"renewal\">{}</p>",
        esc(&name),
        esc(&sub.status),
        esc(&sub.status.replace('_', " ")),
        money(amount, &sub.currency),
        esc(&interval),
        esc(&state)
    )
}

fn invoice_rows(s: &Store, customer: &str) -> String {
    let rows: Vec<String> = s
        .invoices
        .with("customer", customer)
        .filter(|(_, i)| i.status != "draft")
        .take(24)
        .map(|(id, i)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td class=\"right\"><a class=\"invoice-link\" href=\"/invoice/{id}\">View</a></td></tr>",
                human_date(i.created),
                money(s.invoice_total(i), &i.currency),
                esc(&i.status),
                esc(&i.status)
            )
        })
        .collect();
    if rows.is_empty() {
        "<p class=\"muted\">No invoices yet.</p>".into()
    } else {
        format!("<table id=\"invoices\"><tr><th>Date</th><th>Amount</th><th>Status</th><th></th></tr>{}</table>", rows.join(""))
    }
}

fn portal_page(s: &Store, id: &str, error: Option<&str>, notice: Option<&str>) -> Response {
    let Some(ps) = s.portal_sessions.get(id) else {
        return not_found("This portal session does not exist.");
    };
    let cust = s.customers.get(&ps.customer);
    let sub = s
        .subscriptions
        .with("customer", &ps.customer)
        .map(|(_, x)| x)
        .find(|x| x.status != "canceled" && x.status != "incomplete_expired")
        .or_else(|| {
            s.subscriptions
                .with("customer", &ps.customer)
                .map(|(_, x)| x)
                .next()
        });
    let sub_html = match sub {
        Some(sub) => {
            let actions = if sub.status == "canceled" {
                String::new()
            } else if sub.cancel_at_period_end {
                format!("<form method=\"post\" action=\"/portal/{id}/reactivate\"><button id=\"reactivate-subscription\" type=\"submit\">Renew plan</button></form>")
            } else {
                format!("<form method=\"post\" action=\"/portal/{id}/cancel\"><button id=\"cancel-subscription\" class=\"danger\" type=\"submit\">Cancel plan</button></form>")
            };
            format!(
                "<div class=\"card\" id=\"subscription\"><h1>Current plan</h1>{}{actions}</div>",
                sub_summary(s, sub)
            )
        }
        None => {
            "<div class=\"card\" id=\"subscription\"><p class=\"muted\">No subscription.</p></div>"
                .into()
        }
    };
    // The portal shows the customer's default payment method (the one its card update changes),
    // else the subscription's.
    let card = cust
        .and_then(|c| c.default_payment_method.as_ref())
        .or_else(|| sub.and_then(|x| x.default_payment_method.as_ref()))
        .and_then(|pm| s.payment_methods.get(pm))
        .map(|pm| format!("{} •••• {}", pm.brand().to_uppercase(), pm.last4()))
        .unwrap_or_else(|| "No card on file".into());
    let pm_html = format!(
        "<div class=\"card\"><h1>Payment method</h1><p id=\"current-card\">{}</p><form method=\"post\" action=\"/portal/{id}/card\"><label for=\"cardNumber\">New card number</label><input id=\"cardNumber\" name=\"cardNumber\" inputmode=\"numeric\" placeholder=\"4242 4242 4242 4242\"><button id=\"update-card\" class=\"secondary\" type=\"submit\">Update card</button></form></div>",
        esc(&card)
    );
    let ret = ps
        .return_url
        .as_ref()
        .map(|u| {
            format!(
                "<a class=\"back\" id=\"return\" href=\"{}\">&larr; Return</a>",
                esc(u)
            )
        })
        .unwrap_or_default();
    let err = error
        .map(|e| format!("<div class=\"err\" id=\"error\">{}</div>", esc(e)))
        .unwrap_or_default();
    let ok = notice
        .map(|e| format!("<div class=\"ok\" id=\"notice\">{}</div>", esc(e)))
        .unwrap_or_default();
    let who = cust
        .map(|c| {
            c.email
                .clone()
                .or(c.name.clone())
                .unwrap_or_else(|| c.id.clone())
        })
        .unwrap_or_default();
    let side = format!(
        "<div class=\"side\">{}<h1>Billing for</h1><p style=\"font-size:18px;font-weight:600\" id=\"customer\">{}</p><p class=\"muted\">Manage your subscription, payment method and invoices.</p>{ret}</div>",
        brand(),
        esc(&who)
    );
    let main = format!(
        "<div class=\"main\">{err}{ok}{sub_html}{pm_html}<div class=\"card\"><h1>Invoice history</h1>{}</div></div>",
        invoice_rows(s, &ps.customer)
    );
    html(
        if error.is_some() { 400 } else { 200 },
        "Billing portal",
        &format!("<div class=\"wrap\">{side}{main}</div>"),
    )
}

fn portal_action(s: &mut Store, id: &str, action: &str, card: &str) -> Response {
    let Some(ps) = s.portal_sessions.get(id).cloned() else {
        return not_found("This portal session does not exist.");
    };
    let sub_id = s
        .subscriptions
        .with("customer", &ps.customer)
        .find(|(_, x)| x.status != "canceled" && x.status != "incomplete_expired")
        .map(|(i, _)| i.clone());
    let immediately = s
        .portal_configs
        .get(&ps.configuration)
        .is_some_and(|c| c.features["subscription_cancel"]["mode"] == "immediately");
    match (action, sub_id) {
        ("cancel", Some(sid)) => {
            if immediately {
                billing::end_subscription(s, &sid, "cancellation_requested");
            } else {
                let before = s.render_id(&sid).unwrap_or_default();
                billing::set_cancel_at_period_end(s, &sid, true);
                let after = s.render_id(&sid).unwrap_or_default();
                s.emit_update("customer.subscription.updated", before, after);
            }
            redirect(&format!("/portal/{id}"))
        }
        ("reactivate", Some(sid)) => {
            let before = s.render_id(&sid).unwrap_or_default();
            billing::set_cancel_at_period_end(s, &sid, false);
            let after = s.render_id(&sid).unwrap_or_default();
            s.emit_update("customer.subscription.updated", before, after);
            redirect(&format!("/portal/{id}"))
        }
        ("card", _) => match billing::check_card(card) {
            Ok(n) => {
                billing::replace_card(s, &ps.customer, &n);
                portal_page(s, id, None, Some("Your card was updated."))
            }
            Err(e) => portal_page(s, id, Some(&e.message), None),
        },
        _ => portal_page(s, id, Some("There is no subscription to change."), None),
    }
}

fn invoice_page(s: &Store, id: &str, error: Option<&str>) -> Response {
    let Some(inv) = s.invoices.get(id).filter(|i| i.status != "draft") else {
        return not_found("This invoice does not exist.");
    };
    let total = s.invoice_total(inv);
    let lines: String = s
        .invoice_lines(inv)
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td class=\"right\">{}</td></tr>",
                esc(l["description"].as_str().unwrap_or("")),
                money(l["amount"].as_i64().unwrap_or(0), &inv.currency)
            )
        })
        .collect();
    let pay = if inv.status == "open" && inv.processing_until.is_some() {
        "<div class=\"note\" id=\"payment-processing\">A bank debit for this invoice is processing; the bank answers within 4 business days.</div>".to_string()
    } else if inv.status == "open" && inv.pi_status == "requires_action" {
        format!(
            "<div class=\"note\" id=\"action-required\">Your bank asks you to confirm this payment.</div><form method=\"post\" action=\"/invoice/{id}/confirm\"><button id=\"confirm-payment\" type=\"submit\">Confirm payment of {}</button></form>",
            money(total - inv.amount_paid, &inv.currency)
        )
    } else if inv.status == "open" {
        format!(
            "<form method=\"post\" action=\"/invoice/{id}/pay\"><label for=\"cardNumber\">Card number (leave empty to use the card on file)</label><input id=\"cardNumber\" name=\"cardNumber\" inputmode=\"numeric\" placeholder=\"4242 4242 4242 4242\"><button id=\"submit\" type=\"submit\">Pay {}</button></form>",
            money(total - inv.amount_paid, &inv.currency)
        )
    } else {
        String::new()
    };
    let err = error
        .map(|e| format!("<div class=\"err\" id=\"error\">{}</div>", esc(e)))
        .unwrap_or_default();
    let due = inv_due(inv);
    // Stripe's hosted invoice shows the invoice's description (its memo) above the lines: for a usage
    // invoice, the month it bills.
    let description = inv
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(|d| format!("<p id=\"invoice-description\">{}</p>", esc(d)))
        .unwrap_or_default();
    let body = format!(
        "<div class=\"main\" style=\"margin:auto;max-width:640px\">{}{err}<div class=\"card\"><h1>Invoice <span id=\"invoice-number\">{}</span></h1><p class=\"amount\" id=\"amount\">{}</p><p><span class=\"badge {}\" id=\"invoice-status\">{}</span> <span class=\"muted\">{}</span></p>{description}<table>{lines}<tr><th>Total</th><th class=\"right\" id=\"total\">{}</th></tr></table>{pay}</div></div>",
        brand(),
        esc(inv.number.as_deref().unwrap_or("")),
        money(total, &inv.currency),
        esc(&inv.status),
        esc(&inv.status),
        esc(&due),
        money(total, &inv.currency),
    );
    html(if error.is_some() { 402 } else { 200 }, "Invoice", &body)
}

fn inv_due(inv: &Invoice) -> String {
    match (inv.status.as_str(), inv.paid_at, inv.due_date) {
        ("paid", Some(t), _) => format!("Paid {}", human_date(t)),
        (_, _, Some(d)) => format!("Due {}", human_date(d)),
        _ => format!(
            "Issued {}",
            human_date(inv.finalized_at.unwrap_or(inv.created))
        ),
    }
}
