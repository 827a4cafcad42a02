"""Drives the Stripe simulator with the official Stripe Python SDK.

Usage: check.py BASE_URL. Prints one line per check and `sdk-check: N passed, M failed`;
exits non-zero on any failure.
"""

import http.server
import json
import sys
import threading
import time
import traceback
import uuid

import stripe

BASE = sys.argv[1].rstrip("/")
stripe.api_key = "sk_test_sdk_check"
stripe.api_base = BASE
stripe.max_network_retries = 0

passed = 0
failed = 0
ctx = {}


def check(name):
    def wrap(fn):
        global passed, failed
        try:
            fn()
            passed += 1
            print(f"ok   {name}")
        except Exception:  # noqa: BLE001 - every failure is reported, not raised
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        return fn

    return wrap


def sim_post(path, data):
    """A /_sim control call, outside the SDK."""
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode(data).encode()
    with urllib.request.urlopen(urllib.request.Request(BASE + path, data=body, method="POST")) as r:
        return json.loads(r.read())


@check("customer create/retrieve/update/list")
def _():
    c = stripe.Customer.create(email="sdk@example.com", name="SDK", metadata={"tenant_id": "t-sdk"})
    assert c.id.startswith("cus_")
    got = stripe.Customer.retrieve(c.id)
    assert got.email == "sdk@example.com"
    upd = stripe.Customer.modify(c.id, name="SDK 2", metadata={"plan": "pro"})
    assert upd.name == "SDK 2" and upd.metadata["plan"] == "pro" and upd.metadata["tenant_id"] == "t-sdk"
    listed = stripe.Customer.list(email="sdk@example.com", limit=5)
    assert [x.id for x in listed.data] == [c.id]
    found = stripe.Customer.search(query="metadata['tenant_id']:'t-sdk'")
    assert found.data[0].id == c.id
    ctx["customer"] = c.id


@check("product and price create")
def _():
    p = stripe.Product.create(name="Thanotopolis Pro")
    price = stripe.Price.create(
        product=p.id, unit_amount=29900, currency="usd", recurring={"interval": "month"}, lookup_key="sdk_monthly"
    )
    assert price.recurring.interval == "month" and price.unit_amount == 29900
    by_key = stripe.Price.list(lookup_keys=["sdk_monthly"], expand=["data.product"])
    assert by_key.data[0].id == price.id and by_key.data[0].product.name == "Thanotopolis Pro"
    ctx["price"] = price.id


@check("subscription create with trial, modify cancel_at_period_end, cancel")
def _():
    cus = stripe.Customer.create(email="sub@example.com", payment_method="pm_card_visa",
                                 invoice_settings={"default_payment_method": "pm_card_visa"})
    sub = stripe.Subscription.create(
        customer=cus.id, items=[{"price": ctx["price"]}], trial_period_days=14, metadata={"tenant_id": "t-sdk"}
    )
    assert sub.status == "trialing", sub.status
    assert sub["items"]["data"][0]["current_period_end"] == sub.trial_end
    mod = stripe.Subscription.modify(sub.id, cancel_at_period_end=True)
    assert mod.cancel_at_period_end is True
    canceled = stripe.Subscription.cancel(sub.id)
    assert canceled.status == "canceled"
    ctx["card_customer"] = cus.id


@check("invoice item create")
def _():
    ii = stripe.InvoiceItem.create(customer=ctx["card_customer"], amount=1700, currency="usd",
                                   description="Phone Calls: 17 calls")
    assert ii.amount == 1700 and ii.invoice is None
    ctx["ii"] = ii.id


@check("invoice create, finalize, send, pay, void, list by status")
def _():
    cus = ctx["card_customer"]
    inv = stripe.Invoice.create(customer=cus, pending_invoice_items_behavior="include",
                                collection_method="send_invoice", days_until_due=14,
                                metadata={"tenant_id": "t-sdk", "billing_period": "2026-09"})
    assert inv.status == "draft" and inv.total == 1700, (inv.status, inv.total)
    stripe.InvoiceItem.create(customer=cus, invoice=inv.id, amount=300, currency="usd", description="Voice Usage")
    inv = stripe.Invoice.finalize_invoice(inv.id)
    assert inv.status == "open" and inv.number and inv.hosted_invoice_url and inv.total == 2000
    inv = stripe.Invoice.send_invoice(inv.id)
    assert inv.status == "open"
    paid = stripe.Invoice.pay(inv.id)
    assert paid.status == "paid" and paid.amount_paid == 2000 and paid.amount_remaining == 0
    other = stripe.Invoice.create(customer=cus)
    other = stripe.Invoice.finalize_invoice(other.id)
    assert other.status == "paid"  # a $0 invoice is paid on finalization
    third = stripe.Invoice.create(customer=cus, collection_method="send_invoice", days_until_due=7)
    stripe.InvoiceItem.create(customer=cus, invoice=third.id, amount=100, currency="usd")
    stripe.Invoice.finalize_invoice(third.id)
    voided = stripe.Invoice.void_invoice(third.id)
    assert voided.status == "void"
    paid_list = stripe.Invoice.list(customer=cus, status="paid")
    assert {x.id for x in paid_list.data} >= {paid.id}
    void_list = stripe.Invoice.list(customer=cus, status="void")
    assert [x.id for x in void_list.data] == [third.id]
    found = stripe.Invoice.search(query="metadata['tenant_id']:'t-sdk' AND metadata['billing_period']:'2026-09'")
    assert found.data[0].id == paid.id


@check("checkout session create (and complete)")
def _():
    cs = stripe.checkout.Session.create(
        mode="subscription",
        line_items=[{"price": ctx["price"], "quantity": 1}],
        success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.example/cancel",
        client_reference_id="tenant-sdk",
        subscription_data={"trial_period_days": 7, "metadata": {"tenant_id": "t-sdk"}},
        payment_method_types=["card"],
    )
    assert cs.status == "open" and cs.url.startswith(BASE)
    sim_post(f"/_sim/checkout/sessions/{cs.id}/complete", {"card": "4242424242424242"})
    done = stripe.checkout.Session.retrieve(cs.id, expand=["subscription"])
    assert done.status == "complete" and done.subscription.status == "trialing"
    assert done.subscription.metadata["tenant_id"] == "t-sdk"
    ctx["checkout_customer"] = done.customer


@check("billing portal session create")
def _():
    ps = stripe.billing_portal.Session.create(customer=ctx["checkout_customer"], return_url="https://app.example/account")
    assert ps.url.startswith(BASE) and ps.return_url == "https://app.example/account"


@check("idempotent replay")
def _():
    key = str(uuid.uuid4())
    a = stripe.Customer.create(email="idem@example.com", idempotency_key=key)
    b = stripe.Customer.create(email="idem@example.com", idempotency_key=key)
    assert a.id == b.id
    assert b.last_response.headers.get("Idempotent-Replayed") == "true"
    try:
        stripe.Customer.create(email="different@example.com", idempotency_key=key)
        raise AssertionError("mismatch accepted")
    except stripe.IdempotencyError:
        pass


@check("404 raises InvalidRequestError resource_missing")
def _():
    try:
        stripe.Customer.retrieve("cus_does_not_exist")
        raise AssertionError("no error")
    except stripe.InvalidRequestError as e:
        assert e.code == "resource_missing", e.code
        assert e.http_status == 404


@check("unknown parameter raises InvalidRequestError parameter_unknown")
def _():
    try:
        stripe.Customer.create(email="x@example.com", not_a_param="1")
        raise AssertionError("no error")
    except stripe.InvalidRequestError as e:
        assert e.code == "parameter_unknown" and e.param == "not_a_param"


@check("declined card raises CardError")
def _():
    cs = stripe.checkout.Session.create(
        mode="subscription", line_items=[{"price": ctx["price"], "quantity": 1}], success_url="https://app.example/ok"
    )
    cus = stripe.Customer.create(email="declined@example.com", payment_method="pm_card_chargeCustomerFail",
                                 invoice_settings={"default_payment_method": "pm_card_chargeCustomerFail"})
    stripe.InvoiceItem.create(customer=cus.id, amount=500, currency="usd")
    inv = stripe.Invoice.create(customer=cus.id, pending_invoice_items_behavior="include")
    try:
        stripe.Invoice.pay(inv.id)
        raise AssertionError("no error")
    except stripe.CardError as e:
        assert e.code == "card_declined"
    assert stripe.Invoice.retrieve(inv.id).status == "open"
    assert cs.status == "open"


class Hook(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hook.received.append((body.decode(), self.headers.get("Stripe-Signature")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@check("webhook signature verifies with stripe.Webhook.construct_event")
def _():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
        we = stripe.WebhookEndpoint.create(url=url, enabled_events=["customer.created"])
        c = stripe.Customer.create(email="hook@example.com")
        deadline = time.time() + 10
        while not Hook.received and time.time() < deadline:
            time.sleep(0.05)
        assert Hook.received, "no delivery"
        payload, sig = Hook.received[0]
        event = stripe.Webhook.construct_event(payload, sig, we.secret)
        assert event.type == "customer.created" and event.data.object.id == c.id
        try:
            stripe.Webhook.construct_event(payload, sig, "whsec_wrong")
            raise AssertionError("wrong secret accepted")
        except stripe.SignatureVerificationError:
            pass
    finally:
        server.shutdown()


# ---- rules where the simulator is as strict as Stripe (README table) -------------------------------


def sim_get(path):
    import urllib.request

    with urllib.request.urlopen(BASE + path) as r:
        return json.loads(r.read())


def lower_headers(e):
    return {k.lower(): v for k, v in (e.headers or {}).items()}


def advance_days(days):
    return sim_post("/_sim/clock/advance", {"seconds": str(days * 86400)})


def checkout_subscription(card, trial_days=None):
    data = {"metadata": {"tenant_id": "t-strict"}}
    if trial_days:
        data["trial_period_days"] = trial_days
    cs = stripe.checkout.Session.create(
        mode="subscription",
        line_items=[{"price": ctx["price"], "quantity": 1}],
        success_url="https://app.example/ok",
        subscription_data=data,
    )
    done = sim_post(f"/_sim/checkout/sessions/{cs.id}/complete", {"card": card})
    return stripe.Subscription.retrieve(done["subscription"])


def monthly_session(payment_method_types):
    """A subscription Checkout session for the monthly price offering these payment method types."""
    return stripe.checkout.Session.create(
        mode="subscription", line_items=[{"price": ctx["price"], "quantity": 1}],
        success_url="https://app.example/ok", payment_method_types=payment_method_types,
    )


@check("rule 1: checkout sets the subscription's default payment method, not the customer's")
def _():
    sub = checkout_subscription("4242424242424242")
    assert sub.default_payment_method and sub.default_payment_method.startswith("pm_")
    cus = stripe.Customer.retrieve(sub.customer)
    assert cus.invoice_settings.default_payment_method is None, cus.invoice_settings
    pms = stripe.Customer.list_payment_methods(sub.customer)
    assert [p.id for p in pms.data] == [sub.default_payment_method]


@check("rule 2: paying with no payment method is refused; a retry uses the card updated since")
def _():
    cus = stripe.Customer.create(email="nopm@example.com")
    stripe.InvoiceItem.create(customer=cus.id, amount=900, currency="usd")
    inv = stripe.Invoice.create(customer=cus.id, pending_invoice_items_behavior="include")
    try:
        stripe.Invoice.pay(inv.id)
        raise AssertionError("paid without a payment method")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 400 and e.code == "resource_missing", (e.http_status, e.code)
        assert "no attached payment source or default payment method" in e.user_message
    again = stripe.Invoice.retrieve(inv.id)
    assert again.status == "draft" and again.attempt_count == 0
    # A failed renewal, a card update, then the next automatic retry collects.
    sub = checkout_subscription("4000000000000341", trial_days=2)
    advance_days(3)
    sub = stripe.Subscription.retrieve(sub.id, expand=["latest_invoice"])
    assert sub.status == "past_due" and sub.latest_invoice.attempt_count == 1
    # The portal's card update writes the customer's default only by default (rule 12); here it
    # writes both, so the retry, which looks at the subscription first, charges the new card.
    sim_post("/_sim/portal/card_update_writes", {"writes": "both"})
    sim_post(f"/_sim/customers/{sub.customer}/card", {"card": "4242424242424242"})
    sim_post("/_sim/portal/card_update_writes", {"writes": "customer"})
    advance_days(3)
    paid = stripe.Invoice.retrieve(sub.latest_invoice.id)
    assert paid.status == "paid", paid.status
    assert stripe.Subscription.retrieve(sub.id).status == "active"


@check("rule 3: an Idempotency-Key over 255 characters is refused")
def _():
    try:
        stripe.Customer.create(email="long-key@example.com", idempotency_key="k" * 256)
        raise AssertionError("accepted")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 400
        assert e.user_message.startswith("Idempotent key length is 256"), e.user_message
    ok = stripe.Customer.create(email="long-key@example.com", idempotency_key="k" * 255)
    assert ok.id.startswith("cus_")


@check("rule 4: a saved 500 is replayed under its key")
def _():
    sim_post("/_sim/faults", {"path": "/v1/customers", "method": "POST", "status": "500", "when": "saved"})
    key = str(uuid.uuid4())
    for attempt in range(2):
        try:
            stripe.Customer.create(email="saved@example.com", idempotency_key=key)
            raise AssertionError("no error")
        except stripe.APIError as e:
            h = lower_headers(e)
            assert e.http_status == 500, e.http_status
            assert h.get("stripe-should-retry") == "false", h
            assert (h.get("idempotent-replayed") == "true") == (attempt == 1), h
    assert not stripe.Customer.list(email="saved@example.com").data


@check("rule 5: lock_timeout carries Stripe-Should-Retry and the SDK's retry succeeds")
def _():
    sim_post("/_sim/faults", {"path": "/v1/customers", "method": "POST", "status": "409"})
    try:
        stripe.Customer.create(email="lock@example.com")
        raise AssertionError("no error")
    except stripe.APIError as e:
        code = e.json_body["error"]["code"]  # the SDK's APIError leaves `code` unset
        assert e.http_status == 409 and code == "lock_timeout", (e.http_status, code)
        assert lower_headers(e).get("stripe-should-retry") == "true"
    sim_post("/_sim/faults", {"path": "/v1/customers", "method": "POST", "status": "409"})
    stripe.max_network_retries = 2
    try:
        c = stripe.Customer.create(email="lock-retried@example.com")
    finally:
        stripe.max_network_retries = 0
    assert c.id.startswith("cus_")
    assert len(stripe.Customer.list(email="lock-retried@example.com").data) == 1


@check("rule 6: a $0 invoice is paid at finalization; paying it again fails")
def _():
    cus = stripe.Customer.create(email="zero@example.com")
    inv = stripe.Invoice.create(customer=cus.id, auto_advance=False)
    inv = stripe.Invoice.finalize_invoice(inv.id)
    assert inv.status == "paid" and inv.amount_due == 0
    try:
        stripe.Invoice.pay(inv.id)
        raise AssertionError("paid twice")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 400 and e.user_message == "Invoice is already paid", e.user_message


@check("rule 7: a webhook endpoint's api_version is kept and events reach it in that version")
def _():
    Hook.received.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/versioned"
        we = stripe.WebhookEndpoint.create(url=url, enabled_events=["product.created"], api_version="2024-06-20")
        assert we.api_version == "2024-06-20"
        stripe.Product.create(name="Versioned")
        deadline = time.time() + 10
        while not Hook.received and time.time() < deadline:
            time.sleep(0.05)
        assert Hook.received, "no delivery"
        payload, sig = Hook.received[0]
        event = stripe.Webhook.construct_event(payload, sig, we.secret)
        assert event.api_version == "2024-06-20", event.api_version
        try:
            stripe.WebhookEndpoint.create(url=url, enabled_events=["*"], api_version="2099-01-01")
            raise AssertionError("unknown version accepted")
        except stripe.InvalidRequestError as e:
            assert e.param == "api_version", e.param
        stripe.WebhookEndpoint.delete(we.id)
    finally:
        server.shutdown()


@check("rule 8: unknown payment_method_types are refused, naming the param")
def _():
    kinds = ["card", "us_bank_account", "link", "acss_debit", "bacs_debit", "au_becs_debit"]
    ok = monthly_session(kinds)
    assert ok.payment_method_types == kinds
    try:
        monthly_session(["card", "bitcoin"])
        raise AssertionError("accepted")
    except stripe.InvalidRequestError as e:
        assert e.param == "payment_method_types[1]", e.param


@check("rule 9: the Search API is limited to 20 requests a second")
def _():
    sim_post("/_sim/rate_limit", {"per_second": "100000"})
    limited = 0
    try:
        for _ in range(70):
            try:
                stripe.Customer.search(query="email:'nobody@example.com'")
            except stripe.RateLimitError as e:
                assert e.json_body["error"]["code"] == "rate_limit"
                limited += 1
    finally:
        sim_post("/_sim/rate_limit", {"per_second": "0"})
    assert limited > 0


@check("rule 10: pause_collection void voids renewals; an empty value clears it")
def _():
    sub = checkout_subscription("4242424242424242")
    sub = stripe.Subscription.modify(sub.id, pause_collection={"behavior": "void"})
    assert sub.pause_collection.behavior == "void" and sub.status == "active"
    advance_days(32)
    sub = stripe.Subscription.retrieve(sub.id, expand=["latest_invoice"])
    assert sub.status == "active"
    assert sub.latest_invoice.status == "void", sub.latest_invoice.status
    sub = stripe.Subscription.modify(sub.id, pause_collection="")
    assert sub.pause_collection is None


@check("rule 11: a payment method of another customer is refused")
def _():
    a = stripe.Customer.create(email="a@example.com", payment_method="pm_card_visa",
                               invoice_settings={"default_payment_method": "pm_card_visa"})
    b = stripe.Customer.create(email="b@example.com")
    try:
        stripe.Customer.modify(b.id, invoice_settings={"default_payment_method": a.invoice_settings.default_payment_method})
        raise AssertionError("accepted")
    except stripe.InvalidRequestError as e:
        assert e.param == "invoice_settings[default_payment_method]", e.param


@check("rule 12: the portal's card update writes the customer's default only, unless switched")
def _():
    for writes in ["customer", "subscription", "both"]:
        sim_post("/_sim/portal/card_update_writes", {"writes": writes})
        sub = checkout_subscription("4242424242424242")
        new_pm = sim_post("/_sim/portal/update_card", {"customer": sub.customer, "card": "5555555555554444"})["id"]
        cus = stripe.Customer.retrieve(sub.customer)
        sub = stripe.Subscription.retrieve(sub.id)
        assert (cus.invoice_settings.default_payment_method == new_pm) == (writes != "subscription"), writes
        assert (sub.default_payment_method == new_pm) == (writes != "customer"), writes
    sim_post("/_sim/portal/card_update_writes", {"writes": "customer"})


def invoice_intent(invoice_id):
    # `payments` is includable: asked for by name, then expanded inside.
    inv = stripe.Invoice.retrieve(invoice_id, expand=["payments", "payments.data.payment.payment_intent"])
    return inv, inv.payments.data[0].payment.payment_intent


def one_off_invoice(customer, amount, auto_advance=False):
    stripe.InvoiceItem.create(customer=customer, amount=amount, currency="usd")
    inv = stripe.Invoice.create(customer=customer, pending_invoice_items_behavior="include", auto_advance=auto_advance)
    return stripe.Invoice.finalize_invoice(inv.id, auto_advance=auto_advance)


@check("rule 13: a card that needs authentication fails off-session; confirming pays it")
def _():
    cus = stripe.Customer.create(email="3ds@example.com", payment_method="pm_card_authenticationRequired")
    pm = stripe.Customer.list_payment_methods(cus.id).data[0].id
    stripe.Customer.modify(cus.id, invoice_settings={"default_payment_method": pm})
    inv = one_off_invoice(cus.id, 1200)
    try:
        stripe.Invoice.pay(inv.id)
        raise AssertionError("charged without authentication")
    except stripe.CardError as e:
        assert e.http_status == 402 and e.code == "invoice_payment_intent_requires_action", (e.http_status, e.code)
    inv, pi = invoice_intent(inv.id)
    assert inv.status == "open" and pi.status == "requires_action", (inv.status, pi.status)
    assert pi.last_payment_error.code == "authentication_required", pi.last_payment_error
    assert stripe.PaymentIntent.retrieve(pi.id).status == "requires_action"
    kinds = [e.type for e in stripe.Event.list(type="invoice.payment_action_required", limit=100).data]
    assert kinds, "no invoice.payment_action_required"
    sim_post(f"/_sim/invoices/{inv.id}/confirm", {})
    inv, pi = invoice_intent(inv.id)
    assert inv.status == "paid" and pi.status == "succeeded", (inv.status, pi.status)


@check("rule 14: an ACH debit is processing for 4 days, then paid or failed by account number")
def _():
    for account, outcome in [("000123456789", "paid"), ("000222222227", "open")]:
        cs = monthly_session(["card", "us_bank_account"])
        done = sim_post(f"/_sim/checkout/sessions/{cs.id}/complete",
                        {"payment_method_type": "us_bank_account", "account_number": account})
        assert done["payment_status"] == "unpaid", done["payment_status"]
        inv, pi = invoice_intent(done["invoice"])
        assert inv.status == "open" and pi.status == "processing", (inv.status, pi.status)
        sub = stripe.Subscription.retrieve(done["subscription"], expand=["default_payment_method"])
        assert sub.default_payment_method.type == "us_bank_account"
        advance_days(4)
        inv, pi = invoice_intent(done["invoice"])
        assert inv.status == outcome, (account, inv.status)
        if outcome == "open":
            assert pi.last_payment_error.code == "insufficient_funds", pi.last_payment_error
            assert stripe.Subscription.retrieve(done["subscription"]).status == "past_due"


@check("rule 15: sepa_debit is refused for a price that is not in euros")
def _():
    try:
        monthly_session(["card", "sepa_debit"])
        raise AssertionError("accepted")
    except stripe.InvalidRequestError as e:
        assert e.param == "payment_method_types", e.param
        assert "`sepa_debit` only supports the following currencies: `eur`" in e.user_message, e.user_message


@check("rule 16: one-off invoices are not retried unless the account setting is on")
def _():
    for retried in [False, True]:
        sim_post("/_sim/settings", {"retry_one_off_invoices": "true" if retried else "false"})
        cus = stripe.Customer.create(email="oneoff@example.com", payment_method="pm_card_chargeCustomerFail")
        pm = stripe.Customer.list_payment_methods(cus.id).data[0].id
        stripe.Customer.modify(cus.id, invoice_settings={"default_payment_method": pm})
        inv = one_off_invoice(cus.id, 500, auto_advance=True)
        try:
            stripe.Invoice.pay(inv.id)
            raise AssertionError("a declining card paid")
        except stripe.CardError:
            pass
        inv = stripe.Invoice.retrieve(inv.id)
        assert (inv.next_payment_attempt is not None) == retried, (retried, inv.next_payment_attempt)
    sim_post("/_sim/settings", {"retry_one_off_invoices": "false"})


@check("rule 17: an invoice embeds 10 lines; list_lines pages all of them")
def _():
    cus = stripe.Customer.create(email="lines@example.com")
    for i in range(30):
        stripe.InvoiceItem.create(customer=cus.id, amount=100 + i, currency="usd")
    inv = stripe.Invoice.create(customer=cus.id, pending_invoice_items_behavior="include")
    assert len(inv.lines.data) == 10 and inv.lines.has_more
    lines = list(stripe.Invoice.list_lines(inv.id, limit=7).auto_paging_iter())
    assert len(lines) == 30 and sum(l.amount for l in lines) == sum(100 + i for i in range(30))


@check("rule 18: an invoice's subscription is under parent, not at the top")
def _():
    sub = checkout_subscription("4242424242424242")
    inv = stripe.Invoice.retrieve(sub.latest_invoice)
    raw = inv.to_dict()
    assert raw.get("subscription") is None
    assert inv.parent.subscription_details.subscription == sub.id
    assert raw["lines"]["data"][0].get("subscription") is None


@check("rule 19: answers are dated by the simulator's clock")
def _():
    import email.utils

    now = sim_get("/_sim/clock")["now"]
    listed = stripe.Customer.list(limit=1)
    date = listed.last_response.headers["Date"]
    at = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(at - now) <= 2, (date, now)


@check("rule 20: a bank account returned closed is blocked; one short of funds is debited again")
def _():
    invoices = {}
    for account in ["000111111113", "000222222227"]:
        cs = monthly_session(["us_bank_account"])
        done = sim_post(f"/_sim/checkout/sessions/{cs.id}/complete",
                        {"payment_method_type": "us_bank_account", "account_number": account})
        invoices[account] = done["invoice"]
    advance_days(4)
    _, pi = invoice_intent(invoices["000111111113"])
    err = pi.last_payment_error
    assert err.code == "account_closed" and err.decline_code == "bank_account_closed", err
    try:
        stripe.Invoice.pay(invoices["000111111113"])
        raise AssertionError("a blocked account was debited")
    except stripe.CardError as e:
        assert e.code == "payment_method_bank_account_blocked", e.code
    inv, pi = invoice_intent(invoices["000111111113"])
    assert inv.status == "open" and pi.status == "requires_payment_method", (inv.status, pi.status)
    stripe.Invoice.pay(invoices["000222222227"])
    _, pi = invoice_intent(invoices["000222222227"])
    assert pi.status == "processing", pi.status


@check("rule 21: declining test cards give their decline code")
def _():
    for card, reason in [("4000000000009987", "lost_card"), ("4000000000009979", "stolen_card"),
                         ("4000000000009995", "insufficient_funds")]:
        cus = stripe.Customer.create(email="declines@example.com")
        sim_post(f"/_sim/customers/{cus.id}/card", {"card": card})
        inv = one_off_invoice(cus.id, 900)
        try:
            stripe.Invoice.pay(inv.id)
            raise AssertionError(f"{card} paid")
        except stripe.CardError as e:
            assert e.code == "card_declined" and e.error.decline_code == reason, (card, e.code, e.error.decline_code)
        _, pi = invoice_intent(inv.id)
        assert pi.last_payment_error.decline_code == reason, (card, pi.last_payment_error)


@check("rule 22: an invoice's payments are included only when asked for by name")
def _():
    cus = stripe.Customer.create(email="payments@example.com", payment_method="pm_card_visa")
    inv = one_off_invoice(cus.id, 800)
    assert "payments" not in stripe.Invoice.retrieve(inv.id).to_dict()
    nested = stripe.Invoice.retrieve(inv.id, expand=["payments.data.payment.payment_intent"])
    assert "payments" not in nested.to_dict()
    named = stripe.Invoice.retrieve(inv.id, expand=["payments"])
    assert isinstance(named.payments.data[0].payment.payment_intent, str)


print(f"sdk-check: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
