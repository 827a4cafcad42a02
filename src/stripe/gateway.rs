//! The operations the service performs in Stripe, in our terms. Stripe's form field names and status
//! strings stay in this module: callers pass typed requests and read enums, so the rules below can be
//! read against Stripe's reference in one place.
//!
//! Every write takes the idempotency key its caller derives from what the write does.

use super::{
    Customer, Invoice, InvoiceItem, List, Params, PortalSession, SearchResult, StripeClient,
    StripeError, Subscription,
};
use crate::domain::{BillingPeriod, Cents};

/// What a listing walks through, every page of it.
#[derive(Debug, Clone, Copy)]
pub enum Listing<'a> {
    Customers,
    /// Every subscription that has not ended (Stripe's default listing: not canceled).
    Subscriptions,
    /// A customer's subscriptions in any state.
    SubscriptionsOf(&'a str),
    InvoicesOf(&'a str),
}

/// An invoice's state (Stripe's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl InvoiceStatus {
    pub fn of(invoice: &Invoice) -> InvoiceStatus {
        InvoiceStatus::parse(invoice.status()).unwrap_or(InvoiceStatus::Draft)
    }

    /// The state Stripe's word names, if it is an invoice's.
    pub fn parse(status: &str) -> Option<InvoiceStatus> {
        Some(match status {
            "draft" => InvoiceStatus::Draft,
            "open" => InvoiceStatus::Open,
            "paid" => InvoiceStatus::Paid,
            "void" => InvoiceStatus::Void,
            "uncollectible" => InvoiceStatus::Uncollectible,
            _ => return None,
        })
    }

    /// Nothing is left to collect: paid, voided or written off.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Paid | InvoiceStatus::Void | InvoiceStatus::Uncollectible
        )
    }
}

/// How an invoice is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// Stripe charges the payment method on file; when that fails, its retries go on collecting.
    ChargeAutomatically,
    /// Stripe emails the invoice, payable within the days given.
    SendInvoice { days_until_due: u32 },
}

/// The monthly usage invoice of one tenant and period.
pub struct UsageInvoice<'a> {
    pub customer: &'a str,
    pub tenant: &'a str,
    pub period: BillingPeriod,
    pub collection: Collection,
}

/// One line of a usage invoice (an invoice item on that invoice).
pub struct UsageLine<'a> {
    pub customer: &'a str,
    pub invoice: &'a str,
    pub tenant: &'a str,
    pub period: BillingPeriod,
    pub usage_period: BillingPeriod,
    pub line_no: i32,
    pub amount: Cents,
    pub description: &'a str,
}

/// What asking Stripe to collect an invoice came to.
#[derive(Debug)]
pub enum Collected {
    /// Paid, or sent by email: Stripe's copy of the invoice after it.
    Done(Box<Invoice>),
    /// A bank debit was started: neither paid nor failed until the bank answers, days later
    /// (Stripe's copy of the invoice, still open).
    Processing(Box<Invoice>),
    /// The payment method declined: the invoice stays open.
    Declined,
    /// The bank asks the customer to authenticate the payment (3-D Secure): only the customer can,
    /// on the invoice's hosted page.
    ActionRequired,
    /// The invoice was already settled (a $0 invoice is paid at finalization), as the status says:
    /// paid, voided or marked uncollectible.
    AlreadySettled(InvoiceStatus),
}

impl Collected {
    /// How the report and the pages name the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Collected::Done(inv) if InvoiceStatus::of(inv) == InvoiceStatus::Paid => "paid",
            Collected::Done(_) => "sent",
            Collected::Processing(_) => "processing",
            Collected::Declined => "declined",
            Collected::ActionRequired => "action_required",
            Collected::AlreadySettled(InvoiceStatus::Void) => "void",
            Collected::AlreadySettled(InvoiceStatus::Uncollectible) => "uncollectible",
            Collected::AlreadySettled(_) => "paid",
        }
    }

    /// What Stripe's refusal of `/pay` (or `/send`), `refusal`, came to, from the invoice as read just
    /// after it (`now`, with its payments): settled meanwhile, a bank debit in flight, the customer's
    /// authentication awaited, or (402) a decline; any other refusal is the caller's error. Read from
    /// the invoice's state rather than the code alone: Stripe answers `/pay` for a payment that needs
    /// authentication with `invoice_payment_intent_requires_action` (a PaymentIntent's own confirm says
    /// `authentication_required`), and its HTTP status for it is not documented.
    pub fn after_refusal(refusal: StripeError, now: Invoice) -> Result<Collected, StripeError> {
        let status = InvoiceStatus::of(&now);
        if status.is_settled() {
            return Ok(Collected::AlreadySettled(status));
        }
        let asks_action = matches!(
            refusal.code(),
            Some("invoice_payment_intent_requires_action" | "authentication_required")
        );
        match now.payment_state() {
            Some("processing") => Ok(Collected::Processing(Box::new(now))),
            Some("requires_action") => Ok(Collected::ActionRequired),
            // The payments were not in the answer: the code is all there is.
            None if asks_action && now.payments.is_none() => Ok(Collected::ActionRequired),
            _ if refusal.status() == Some(402) => Ok(Collected::Declined),
            _ => Err(refusal),
        }
    }
}

/// A Checkout session for the monthly subscription.
pub struct NewCheckout<'a> {
    pub customer: &'a str,
    pub tenant: &'a str,
    pub price: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub trial_days: u32,
    /// Payment method types offered (`card`, `us_bank_account`, `sepa_debit`).
    pub payment_methods: &'a [String],
}

/// What collection on a subscription does while it is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Collect as usual.
    Collect,
    /// Renewal invoices are voided at once: nothing is charged (a demo tenant).
    VoidInvoices,
}

fn usage_invoice_description(period: BillingPeriod) -> String {
    format!(
        "Thanotopolis voice usage and phone calls for {}",
        period.long_name()
    )
}

impl StripeClient {
    /// The customer, with its invoice settings.
    pub async fn customer(&self, id: &str) -> Result<Customer, StripeError> {
        self.get(&format!("customers/{id}"), &Params::new()).await
    }

    /// The subscription as Stripe has it now.
    pub async fn subscription(&self, id: &str) -> Result<Subscription, StripeError> {
        self.get(&format!("subscriptions/{id}"), &Params::new())
            .await
    }

    /// The subscription with its customer expanded (one request for both).
    pub async fn subscription_with_customer(&self, id: &str) -> Result<Subscription, StripeError> {
        self.get(
            &format!("subscriptions/{id}"),
            &Params::new()
                .expand("customer")
                .expand("customer.invoice_settings.default_payment_method")
                .expand("default_payment_method"),
        )
        .await
    }

    /// The invoice as Stripe has it now.
    pub async fn invoice(&self, id: &str) -> Result<Invoice, StripeError> {
        self.get(&format!("invoices/{id}"), &Params::new()).await
    }

    /// The invoice with its payments' PaymentIntents, which say whether a payment is processing or
    /// waits for the customer's authentication ([`Invoice::payment_state`]) and why the last attempt
    /// failed ([`Invoice::last_failure`]). `payments` is includable: asked for by name, then expanded
    /// inside (a nested path alone is not documented to include it).
    pub async fn invoice_with_payment(&self, id: &str) -> Result<Invoice, StripeError> {
        self.get(
            &format!("invoices/{id}"),
            &Params::new()
                .expand("payments")
                .expand("payments.data.payment.payment_intent"),
        )
        .await
    }

    /// The customer's open invoices (every page).
    pub async fn open_invoices_of(&self, customer: &str) -> Result<Vec<Invoice>, StripeError> {
        self.list_all(
            "invoices",
            Params::new()
                .set("customer", customer)
                .set("status", "open"),
        )
        .await
    }

    /// A payment method, to show it and to know it still exists.
    pub async fn payment_method(&self, id: &str) -> Result<super::PaymentMethod, StripeError> {
        self.get(&format!("payment_methods/{id}"), &Params::new())
            .await
    }

    /// Makes `payment_method` the subscription's own default: what its invoices, and Stripe's
    /// retries of them, are charged with before the customer's invoice default.
    pub async fn set_subscription_payment_method(
        &self,
        subscription: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        self.post(
            &format!("subscriptions/{subscription}"),
            &Params::new().set("default_payment_method", payment_method),
            key,
        )
        .await
    }

    /// Every subscription of the customer, in any state, newest first.
    pub async fn subscriptions_of(&self, customer: &str) -> Result<Vec<Subscription>, StripeError> {
        self.list_all(
            "subscriptions",
            Params::new().set("customer", customer).set("status", "all"),
        )
        .await
    }

    /// Every invoice of the customer, newest first.
    pub async fn invoices_of(&self, customer: &str) -> Result<Vec<Invoice>, StripeError> {
        self.list_all("invoices", Params::new().set("customer", customer))
            .await
    }

    /// Every object of a listing, each with the time its page was asked for: the time the request
    /// left, not the answer's, so that a webhook's reading received after it may win.
    pub async fn list_timed<T: serde::de::DeserializeOwned + super::HasId>(
        &self,
        listing: Listing<'_>,
    ) -> Result<Vec<(T, chrono::DateTime<chrono::Utc>)>, StripeError> {
        let (path, params) = match listing {
            Listing::Customers => ("customers", Params::new()),
            Listing::Subscriptions => ("subscriptions", Params::new()),
            Listing::SubscriptionsOf(c) => (
                "subscriptions",
                Params::new().set("customer", c).set("status", "all"),
            ),
            Listing::InvoicesOf(c) => ("invoices", Params::new().set("customer", c)),
        };
        let mut all: Vec<(T, chrono::DateTime<chrono::Utc>)> = Vec::new();
        loop {
            let mut page_params = params.clone().set("limit", 100);
            if let Some((last, _)) = all.last() {
                page_params = page_params.set("starting_after", last.id());
            }
            let asked_at = crate::domain::time::now();
            let page: List<T> = self.get(path, &page_params).await?;
            let more = page.has_more && !page.data.is_empty();
            all.extend(page.data.into_iter().map(|o| (o, asked_at)));
            if !more {
                return Ok(all);
            }
        }
    }

    /// Every customer Stripe's search finds for `metadata['tenant_id']:'{tenant}'`, every page (search
    /// matches loosely: callers keep exact matches).
    pub async fn search_customers_of_tenant<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
    ) -> Result<Vec<T>, StripeError> {
        let escaped = tenant.replace('\\', "\\\\").replace('\'', "\\'");
        let query = format!("metadata['tenant_id']:'{escaped}'");
        let mut found = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let params = Params::new()
                .set("query", &query)
                .set("limit", 100)
                .set_opt("page", page.as_deref());
            let result: SearchResult<T> = self.get("customers/search", &params).await?;
            found.extend(result.data);
            match result.next_page {
                Some(next) if result.has_more => page = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// Every line of an invoice (Stripe embeds only the first ten in the invoice).
    pub async fn invoice_lines(
        &self,
        invoice: &str,
    ) -> Result<Vec<super::InvoiceLine>, StripeError> {
        let mut lines: Vec<super::InvoiceLine> = Vec::new();
        loop {
            let params = Params::new()
                .set("limit", 100)
                .set_opt("starting_after", lines.last().and_then(|l| l.id.clone()));
            let page: List<super::InvoiceLine> = self
                .get(&format!("invoices/{invoice}/lines"), &params)
                .await?;
            let more = page.has_more && page.data.last().is_some_and(|l| l.id.is_some());
            lines.extend(page.data);
            if !more {
                return Ok(lines);
            }
        }
    }

    /// A Checkout session as Stripe has it now.
    pub async fn checkout_session(&self, id: &str) -> Result<super::CheckoutSession, StripeError> {
        self.get(&format!("checkout/sessions/{id}"), &Params::new())
            .await
    }

    /// Creates the tenant's Stripe customer (named, described and tagged with the tenant's id).
    pub async fn create_tenant_customer(
        &self,
        tenant: &str,
        name: &str,
        subdomain: &str,
        email: Option<&str>,
        key: &str,
    ) -> Result<Customer, StripeError> {
        let params = Params::new()
            .set("name", name)
            .set_opt("email", email)
            .set(
                "description",
                format!("Thanotopolis organization {subdomain}"),
            )
            .metadata("tenant_id", tenant)
            .metadata("subdomain", subdomain);
        self.post("customers", &params, key).await
    }

    /// Sets `metadata.tenant_id` on an existing customer (one made before this service, by the platform).
    pub async fn set_customer_tenant(
        &self,
        customer: &str,
        tenant: &str,
        key: &str,
    ) -> Result<Customer, StripeError> {
        self.post(
            &format!("customers/{customer}"),
            &Params::new().metadata("tenant_id", tenant),
            key,
        )
        .await
    }

    /// Follows `has_more` through a list.
    async fn list_all<T: serde::de::DeserializeOwned + super::HasId>(
        &self,
        path: &str,
        base: Params,
    ) -> Result<Vec<T>, StripeError> {
        let mut all = Vec::new();
        let mut params = base.clone().set("limit", 100);
        loop {
            let page: List<T> = self.get(path, &params).await?;
            let last = page.data.last().map(|o| o.id().to_owned());
            all.extend(page.data);
            match (page.has_more, last) {
                (true, Some(last)) => {
                    params = base.clone().set("limit", 100).set("starting_after", last)
                }
                _ => return Ok(all),
            }
        }
    }

    /// Makes `payment_method` the customer's invoice default: what an invoice that has no payment
    /// method of its own, and no subscription, is charged with (our usage invoices).
    pub async fn set_invoice_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<Customer, StripeError> {
        self.post(
            &format!("customers/{customer}"),
            &Params::new().set("invoice_settings[default_payment_method]", payment_method),
            key,
        )
        .await
    }

    /// Creates the draft usage invoice: only the lines we add (never pending items), metadata naming
    /// the tenant and period, and a description that says which month it bills.
    pub async fn create_usage_invoice(
        &self,
        inv: &UsageInvoice<'_>,
        key: &str,
    ) -> Result<Invoice, StripeError> {
        let mut params = Params::new()
            .set("customer", inv.customer)
            .set("pending_invoice_items_behavior", "exclude")
            .set("auto_advance", false)
            .set("description", usage_invoice_description(inv.period))
            .metadata("tenant_id", inv.tenant)
            .metadata("billing_period", inv.period);
        params = match inv.collection {
            Collection::ChargeAutomatically => {
                params.set("collection_method", "charge_automatically")
            }
            Collection::SendInvoice { days_until_due } => params
                .set("collection_method", "send_invoice")
                .set("days_until_due", days_until_due),
        };
        self.post("invoices", &params, key).await
    }

    /// Adds one line to a draft usage invoice.
    pub async fn add_usage_line(
        &self,
        line: &UsageLine<'_>,
        key: &str,
    ) -> Result<InvoiceItem, StripeError> {
        let params = Params::new()
            .set("customer", line.customer)
            .set("invoice", line.invoice)
            .set("amount", line.amount.0)
            .set("currency", "usd")
            .set("description", line.description)
            .metadata("tenant_id", line.tenant)
            .metadata("billing_period", line.period)
            .metadata("usage_period", line.usage_period)
            .metadata("line_no", line.line_no);
        self.post("invoiceitems", &params, key).await
    }

    /// The usage invoice of a tenant and period, if Stripe has one (a reply to our create was lost).
    pub async fn find_usage_invoice(
        &self,
        customer: &str,
        tenant: &str,
        period: BillingPeriod,
    ) -> Result<Option<Invoice>, StripeError> {
        let period = period.to_string();
        Ok(self.invoices_of(customer).await?.into_iter().find(|i| {
            i.metadata.get("billing_period") == Some(&period)
                && i.metadata.get("tenant_id").map(String::as_str) == Some(tenant)
                && InvoiceStatus::of(i) != InvoiceStatus::Void
        }))
    }

    /// The items on an invoice, by the line number we gave each (paged: an invoice may hold many).
    pub async fn usage_lines_on(&self, invoice: &str) -> Result<Vec<(i32, String)>, StripeError> {
        let items: Vec<InvoiceItem> = self
            .list_all("invoiceitems", Params::new().set("invoice", invoice))
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|i| Some((i.metadata.get("line_no")?.parse().ok()?, i.id)))
            .collect())
    }

    /// Finalizes a draft. A charged invoice keeps auto-advancing, so that after a decline Stripe's own
    /// retries go on collecting it; an emailed one is sent by us, once.
    pub async fn finalize_invoice(
        &self,
        invoice: &str,
        collection: Collection,
        key: &str,
    ) -> Result<Invoice, StripeError> {
        let auto_advance = collection == Collection::ChargeAutomatically;
        self.post(
            &format!("invoices/{invoice}/finalize"),
            &Params::new().set("auto_advance", auto_advance),
            key,
        )
        .await
    }

    /// Charges or emails a finalized invoice.
    pub async fn collect_invoice(
        &self,
        invoice: &Invoice,
        collection: Collection,
        key: &str,
    ) -> Result<Collected, StripeError> {
        let status = InvoiceStatus::of(invoice);
        if status.is_settled() {
            return Ok(Collected::AlreadySettled(status));
        }
        let path = match collection {
            Collection::ChargeAutomatically => format!("invoices/{}/pay", invoice.id),
            Collection::SendInvoice { .. } => format!("invoices/{}/send", invoice.id),
        };
        let charged = collection == Collection::ChargeAutomatically;
        match self.post::<Invoice>(&path, &Params::new(), key).await {
            // Charged and still open: a bank debit is processing.
            Ok(inv) if charged && InvoiceStatus::of(&inv) == InvoiceStatus::Open => {
                Ok(Collected::Processing(Box::new(inv)))
            }
            Ok(inv) => Ok(Collected::Done(Box::new(inv))),
            // Refused (declined, settled meanwhile, a debit in flight, the bank asking for the
            // customer's authentication, ...): what the invoice says now decides. A 409 or 429 that
            // outlived the client's retries is not a refusal.
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && !e.is_retryable()) =>
            {
                let now = self.invoice_with_payment(&invoice.id).await?;
                Collected::after_refusal(e, now)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a Checkout session for the monthly subscription. The card or account it collects becomes
    /// the new subscription's default payment method (not the customer's invoice default).
    pub async fn open_checkout(
        &self,
        c: &NewCheckout<'_>,
        key: &str,
    ) -> Result<super::CheckoutSession, StripeError> {
        let mut params = Params::new()
            .set("mode", "subscription")
            .set("customer", c.customer)
            .set("line_items[0][price]", c.price)
            .set("line_items[0][quantity]", 1)
            .set("success_url", c.success_url)
            .set("cancel_url", c.cancel_url)
            .set("client_reference_id", c.tenant)
            .metadata("tenant_id", c.tenant)
            .set("subscription_data[metadata][tenant_id]", c.tenant);
        if c.trial_days > 0 {
            params = params.set("subscription_data[trial_period_days]", c.trial_days);
        }
        for (i, method) in c.payment_methods.iter().enumerate() {
            params = params.set(format!("payment_method_types[{i}]"), method);
        }
        self.post("checkout/sessions", &params, key).await
    }

    /// Whether a Checkout session can still be completed.
    pub async fn checkout_is_open(&self, session: &str) -> Result<bool, StripeError> {
        let s: super::CheckoutSession = self
            .get(&format!("checkout/sessions/{session}"), &Params::new())
            .await?;
        Ok(s.status.as_deref() == Some("open"))
    }

    /// Expires an open Checkout session: it can no longer be completed.
    pub async fn expire_checkout(&self, session: &str) -> Result<(), StripeError> {
        let _: super::CheckoutSession = self
            .post(
                &format!("checkout/sessions/{session}/expire"),
                &Params::new(),
                &format!("checkout:{session}:expire"),
            )
            .await?;
        Ok(())
    }

    /// Opens a customer-portal session (cards, invoices, cancellation).
    pub async fn open_portal(
        &self,
        customer: &str,
        return_url: &str,
        configuration: Option<&str>,
        key: &str,
    ) -> Result<PortalSession, StripeError> {
        let params = Params::new()
            .set("customer", customer)
            .set("return_url", return_url)
            .set_opt("configuration", configuration);
        self.post("billing_portal/sessions", &params, key).await
    }

    /// Sets or clears cancel-at-period-end.
    pub async fn set_cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        self.post(
            &format!("subscriptions/{subscription}"),
            &Params::new().set("cancel_at_period_end", cancel),
            key,
        )
        .await
    }

    /// Pauses or resumes collection on a subscription.
    pub async fn set_collection(
        &self,
        subscription: &str,
        pause: Pause,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        let params = match pause {
            // An empty value clears the pause, as Stripe documents.
            Pause::Collect => Params::new().set("pause_collection", ""),
            Pause::VoidInvoices => Params::new().set("pause_collection[behavior]", "void"),
        };
        self.post(&format!("subscriptions/{subscription}"), &params, key)
            .await
    }
}

/// For `stripe check`: a throw-away customer and a subscription paid by a test card, as Checkout
/// leaves them.
impl StripeClient {
    pub async fn create_check_customer(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Customer, StripeError> {
        let params = Params::new()
            .set("name", "Thanotopolis stripe check")
            .set(
                "description",
                "Made by `thanotopolis-billing stripe check`; deleted when it ends",
            )
            .metadata("tenant_id", tenant)
            .metadata("stripe_check", "true");
        self.post("customers", &params, key).await
    }

    /// Attaches Stripe's test Visa to the customer and subscribes it with that card as the
    /// subscription's default (where Checkout puts it), with a day of trial so nothing is charged.
    pub async fn subscribe_with_test_card(
        &self,
        customer: &str,
        price: &str,
        key: &str,
    ) -> Result<Subscription, StripeError> {
        let pm: super::PaymentMethod = self
            .post(
                "payment_methods/pm_card_visa/attach",
                &Params::new().set("customer", customer),
                &format!("{key}:card"),
            )
            .await?;
        let params = Params::new()
            .set("customer", customer)
            .set("items[0][price]", price)
            .set("default_payment_method", &pm.id)
            .set("trial_period_days", 1)
            .metadata("stripe_check", "true");
        self.post("subscriptions", &params, key).await
    }

    /// Cancels a subscription at once.
    pub async fn cancel_subscription_now(
        &self,
        subscription: &str,
    ) -> Result<Subscription, StripeError> {
        self.delete(&format!("subscriptions/{subscription}")).await
    }

    pub async fn delete_customer(&self, customer: &str) -> Result<super::Deleted, StripeError> {
        self.delete(&format!("customers/{customer}")).await
    }
}

impl Subscription {
    /// The payment method the subscription is charged with (Checkout puts the collected one here).
    pub fn payment_method_id(&self) -> Option<&str> {
        self.default_payment_method.as_ref().map(|p| p.id())
    }

    /// Whether collection is paused with invoices voided.
    pub fn collection_paused(&self) -> bool {
        self.pause_collection.is_some()
    }
}

impl super::PaymentMethod {
    /// What a person recognizes the payment method by.
    pub fn view(&self) -> crate::domain::PaymentMethodView {
        let (brand, last4, exp_month, exp_year) =
            match (&self.card, &self.us_bank_account, &self.sepa_debit) {
                (Some(c), _, _) => (c.brand.clone(), c.last4.clone(), c.exp_month, c.exp_year),
                (None, Some(b), _) | (None, None, Some(b)) => {
                    (b.bank_name.clone(), b.last4.clone(), None, None)
                }
                _ => (None, None, None, None),
            };
        crate::domain::PaymentMethodView {
            kind: self.kind.clone(),
            brand,
            last4,
            exp_month: exp_month.and_then(|m| i32::try_from(m).ok()),
            exp_year: exp_year.and_then(|y| i32::try_from(y).ok()),
        }
    }
}

impl Subscription {
    /// The payment method that pays the tenant's invoices: the customer's invoice default (which we
    /// keep in step with the subscription's), else the subscription's own; when expanded.
    pub fn paying_method(&self) -> Option<&super::PaymentMethod> {
        self.customer
            .object()
            .and_then(|c| c.invoice_settings.default_payment_method.as_ref())
            .and_then(|p| p.object())
            .or_else(|| {
                self.default_payment_method
                    .as_ref()
                    .and_then(|p| p.object())
            })
    }
}

impl Customer {
    /// The customer's invoice default payment method, if any.
    pub fn invoice_payment_method_id(&self) -> Option<&str> {
        self.invoice_settings
            .default_payment_method
            .as_ref()
            .map(|p| p.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, kind: &str, code: Option<&str>) -> StripeError {
        StripeError::Api {
            status,
            kind: kind.to_owned(),
            code: code.map(str::to_owned),
            message: "refused".to_owned(),
            param: None,
            request_id: None,
            should_retry: None,
            replayed: false,
        }
    }

    /// The invoice as read after the refusal: its status and, when its payments were expanded, its
    /// PaymentIntent's status.
    fn read(status: &str, payment: Option<&str>) -> Invoice {
        let mut v = serde_json::json!({
            "id": "in_1", "object": "invoice", "status": status, "currency": "usd", "created": 1,
            "amount_remaining": 300,
        });
        if let Some(p) = payment {
            v["payments"] = serde_json::json!({"object": "list", "has_more": false, "data": [
                {"status": "open", "payment": {"type": "payment_intent",
                    "payment_intent": {"id": "pi_1", "status": p}}}]});
        }
        serde_json::from_value(v).unwrap()
    }

    fn label(r: Result<Collected, StripeError>) -> String {
        match r {
            Ok(c) => c.label().to_owned(),
            Err(e) => format!("error {}", e.status().unwrap_or(0)),
        }
    }

    #[test]
    fn a_payment_that_asks_for_authentication_is_action_required_whatever_the_status() {
        for status in [400, 402] {
            for kind in ["card_error", "invalid_request_error"] {
                for code in [
                    "invoice_payment_intent_requires_action",
                    "authentication_required",
                ] {
                    let e = || refusal(status, kind, Some(code));
                    let open = read("open", Some("requires_action"));
                    assert_eq!(
                        label(Collected::after_refusal(e(), open)),
                        "action_required",
                        "{status} {kind} {code}"
                    );
                    // The payments not in the answer: the code says it.
                    assert_eq!(
                        label(Collected::after_refusal(e(), read("open", None))),
                        "action_required",
                        "{status} {code}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_refusal_is_read_from_the_invoice_after_it() {
        let declined = || refusal(402, "card_error", Some("card_declined"));
        let bad = || refusal(400, "invalid_request_error", Some("resource_missing"));
        let open = || read("open", Some("requires_payment_method"));
        assert_eq!(
            label(Collected::after_refusal(declined(), open())),
            "declined"
        );
        assert_eq!(label(Collected::after_refusal(bad(), open())), "error 400");
        // Settled meanwhile: what it became, not "paid" for every one.
        for (status, label_) in [
            ("paid", "paid"),
            ("void", "void"),
            ("uncollectible", "uncollectible"),
        ] {
            assert_eq!(
                label(Collected::after_refusal(bad(), read(status, None))),
                label_
            );
            assert_eq!(
                label(Collected::after_refusal(declined(), read(status, None))),
                label_
            );
        }
        // A bank debit in flight refuses a second payment.
        assert_eq!(
            label(Collected::after_refusal(
                bad(),
                read("open", Some("processing"))
            )),
            "processing"
        );
        // The bank asked for authentication earlier, but this refusal is another: still waiting.
        assert_eq!(
            label(Collected::after_refusal(
                bad(),
                read("open", Some("requires_action"))
            )),
            "action_required"
        );
    }
}
