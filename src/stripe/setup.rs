//! `stripe setup`: everything the setup guide has a person click through in Stripe's dashboard, done
//! through the API and idempotently: each object is found first (by lookup key, metadata or URL) and only
//! created when missing, so a second run changes nothing.

use crate::routes::billing::{PLAN_AMOUNT_CENTS, PLAN_DESCRIPTION, PLAN_NAME};
use crate::stripe::{self, List, Params, StripeClient, StripeError};
use crate::subscriptions::webhook::HANDLED;

/// The price's lookup key: how a second run finds it.
pub const PRICE_LOOKUP_KEY: &str = "thanotopolis_platform_monthly";
/// The guide's "Price description".
pub const PRICE_NICKNAME: &str = "Monthly platform access fee";
const PRODUCT_MARK: (&str, &str) = ("thanotopolis", "platform_subscription");
const PORTAL_MARK: (&str, &str) = ("thanotopolis", "customer_portal");

/// The events the guide selects, then the others we act on.
pub fn webhook_events() -> Vec<&'static str> {
    let mut events = vec![
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
    ];
    for e in HANDLED {
        if !events.contains(&e) {
            events.push(e);
        }
    }
    events
}

/// What `stripe setup` found or made.
#[derive(Debug, Clone)]
pub struct SetupResult {
    pub product_id: String,
    pub price_id: String,
    pub webhook_endpoint_id: String,
    /// Only when the endpoint was created now: Stripe shows a secret once.
    pub webhook_secret: Option<String>,
    pub portal_configuration_id: String,
    /// One line per object: "created ..." or "found ...".
    pub log: Vec<String>,
}

impl SetupResult {
    /// The `.env` lines to add.
    pub fn env_lines(&self) -> String {
        let mut out = format!(
            "STRIPE_MONTHLY_PRICE_ID={}\nSTRIPE_PORTAL_CONFIGURATION_ID={}\n",
            self.price_id, self.portal_configuration_id
        );
        match &self.webhook_secret {
            Some(s) => out.push_str(&format!("STRIPE_WEBHOOK_SECRET={s}\n")),
            None => out.push_str(&format!(
                "# STRIPE_WEBHOOK_SECRET: unchanged (endpoint {} existed; Stripe shows its secret only in the dashboard)\n",
                self.webhook_endpoint_id
            )),
        }
        out
    }
}

pub async fn run(
    client: &StripeClient,
    public_base_url: &str,
    payment_methods: &[String],
) -> Result<SetupResult, StripeError> {
    let mut log = Vec::new();
    let product = product(client, &mut log).await?;
    let price = price(client, &product, &mut log).await?;
    let webhook_url = format!(
        "{}/api/billing/webhook",
        public_base_url.trim_end_matches('/')
    );
    let (webhook_endpoint_id, webhook_secret) = webhook(client, &webhook_url, &mut log).await?;
    let portal_configuration_id =
        portal(client, &product, &price, public_base_url, &mut log).await?;
    log.push(format!(
        "checkout offers: {} (STRIPE_PAYMENT_METHODS; enable each in the dashboard's payment methods)",
        payment_methods.join(", ")
    ));
    Ok(SetupResult {
        product_id: product,
        price_id: price,
        webhook_endpoint_id,
        webhook_secret,
        portal_configuration_id,
        log,
    })
}

async fn product(client: &StripeClient, log: &mut Vec<String>) -> Result<String, StripeError> {
    let list: List<stripe::Product> = client
        .get("products", &Params::new().set("limit", 100))
        .await?;
    if let Some(p) = list
        .data
        .iter()
        .find(|p| p.metadata.get(PRODUCT_MARK.0).map(String::as_str) == Some(PRODUCT_MARK.1))
    {
        log.push(format!("found product {} ({})", p.id, p.name));
        return Ok(p.id.clone());
    }
    let params = Params::new()
        .set("name", PLAN_NAME)
        .set("description", PLAN_DESCRIPTION)
        .metadata(PRODUCT_MARK.0, PRODUCT_MARK.1);
    let p: stripe::Product = client
        .post(
            "products",
            &params,
            "setup:product:platform-subscription:v1",
        )
        .await?;
    log.push(format!("created product {} ({})", p.id, p.name));
    Ok(p.id)
}

async fn price(
    client: &StripeClient,
    product: &str,
    log: &mut Vec<String>,
) -> Result<String, StripeError> {
    let list: List<stripe::Price> = client
        .get(
            "prices",
            &Params::new()
                .set("lookup_keys[]", PRICE_LOOKUP_KEY)
                .set("active", true),
        )
        .await?;
    if let Some(p) = list.data.first() {
        log.push(format!(
            "found price {} ({} {})",
            p.id,
            crate::domain::Cents(p.unit_amount.unwrap_or(0)),
            p.currency
        ));
        return Ok(p.id.clone());
    }
    let params = Params::new()
        .set("product", product)
        .set("unit_amount", PLAN_AMOUNT_CENTS)
        .set("currency", "usd")
        .set("recurring[interval]", "month")
        .set("recurring[usage_type]", "licensed")
        .set("nickname", PRICE_NICKNAME)
        .set("lookup_key", PRICE_LOOKUP_KEY)
        .metadata(PRODUCT_MARK.0, "platform_monthly_price");
    let p: stripe::Price = client
        .post("prices", &params, "setup:price:platform-monthly:v1")
        .await?;
    log.push(format!(
        "created price {} ($299.00 per month, {PRICE_NICKNAME})",
        p.id
    ));
    Ok(p.id)
}

async fn webhook(
    client: &StripeClient,
    url: &str,
    log: &mut Vec<String>,
) -> Result<(String, Option<String>), StripeError> {
    let events = webhook_events();
    let list: List<stripe::WebhookEndpoint> = client
        .get("webhook_endpoints", &Params::new().set("limit", 100))
        .await?;
    if let Some(e) = list.data.iter().find(|e| e.url == url) {
        let missing: Vec<&&str> = events
            .iter()
            .filter(|ev| {
                !e.enabled_events
                    .iter()
                    .any(|have| have == **ev || have == "*")
            })
            .collect();
        if !missing.is_empty() {
            let mut params = Params::new();
            for (i, ev) in events.iter().enumerate() {
                params = params.set(format!("enabled_events[{i}]"), ev);
            }
            let key = format!("setup:webhook:{}:events:{}", e.id, events.join(","));
            let _: stripe::WebhookEndpoint = client
                .post(&format!("webhook_endpoints/{}", e.id), &params, &key)
                .await?;
            log.push(format!(
                "updated webhook endpoint {} ({url}): added {} event(s)",
                e.id,
                missing.len()
            ));
        } else {
            log.push(format!("found webhook endpoint {} ({url})", e.id));
        }
        return Ok((e.id.clone(), None));
    }
    let mut params = Params::new()
        .set("url", url)
        .set("description", "Thanotopolis billing");
    for (i, ev) in events.iter().enumerate() {
        params = params.set(format!("enabled_events[{i}]"), ev);
    }
    let e: stripe::WebhookEndpoint = client
        .post(
            "webhook_endpoints",
            &params,
            &format!("setup:webhook:{url}"),
        )
        .await?;
    log.push(format!(
        "created webhook endpoint {} ({url}) for {} events",
        e.id,
        events.len()
    ));
    Ok((e.id, e.secret))
}

async fn portal(
    client: &StripeClient,
    product: &str,
    price: &str,
    public_base_url: &str,
    log: &mut Vec<String>,
) -> Result<String, StripeError> {
    let list: List<stripe::PortalConfiguration> = client
        .get(
            "billing_portal/configurations",
            &Params::new().set("limit", 100),
        )
        .await?;
    if let Some(c) = list
        .data
        .iter()
        .find(|c| c.metadata.get(PORTAL_MARK.0).map(String::as_str) == Some(PORTAL_MARK.1))
    {
        log.push(format!("found customer-portal configuration {}", c.id));
        return Ok(c.id.clone());
    }
    let params = Params::new()
        .set(
            "business_profile[headline]",
            "Thanotopolis: manage your subscription and invoices",
        )
        .set(
            "default_return_url",
            format!("{}/billing", public_base_url.trim_end_matches('/')),
        )
        .set("features[payment_method_update][enabled]", true)
        .set("features[customer_update][enabled]", true)
        .set("features[customer_update][allowed_updates][0]", "address")
        .set("features[customer_update][allowed_updates][1]", "email")
        .set("features[invoice_history][enabled]", true)
        .set("features[subscription_cancel][enabled]", true)
        .set("features[subscription_cancel][mode]", "at_period_end")
        .set(
            "features[subscription_cancel][cancellation_reason][enabled]",
            true,
        )
        .set(
            "features[subscription_cancel][cancellation_reason][options][0]",
            "too_expensive",
        )
        .set(
            "features[subscription_cancel][cancellation_reason][options][1]",
            "missing_features",
        )
        .set(
            "features[subscription_cancel][cancellation_reason][options][2]",
            "switched_service",
        )
        .set(
            "features[subscription_cancel][cancellation_reason][options][3]",
            "unused",
        )
        .set(
            "features[subscription_cancel][cancellation_reason][options][4]",
            "other",
        )
        .set("features[subscription_update][enabled]", true)
        .set(
            "features[subscription_update][default_allowed_updates][0]",
            "price",
        )
        .set(
            "features[subscription_update][products][0][product]",
            product,
        )
        .set(
            "features[subscription_update][products][0][prices][0]",
            price,
        )
        .metadata(PORTAL_MARK.0, PORTAL_MARK.1);
    let c: stripe::PortalConfiguration = client
        .post(
            "billing_portal/configurations",
            &params,
            "setup:portal-configuration:v1",
        )
        .await?;
    log.push(format!(
        "created customer-portal configuration {} (payment methods, billing address, email, invoice history, cancel at period end, {PLAN_NAME})",
        c.id
    ));
    Ok(c.id)
}
