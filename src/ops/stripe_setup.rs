//! `stripe setup`: everything the setup guide has a person click through in Stripe's dashboard, done
//! through the API and idempotently: each object is found first (by lookup key, metadata or URL) and only
//! created when missing, so a second run changes nothing.

use crate::stripe::HANDLED;
use crate::stripe::{self, List, Params, StripeClient, StripeError, STRIPE_VERSION};
use crate::subscriptions::plan::{PLAN_AMOUNT_CENTS, PLAN_DESCRIPTION, PLAN_NAME};

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

/// The events we act on that a webhook endpoint is not subscribed to.
pub fn missing_events(endpoint: &stripe::WebhookEndpoint) -> Vec<&'static str> {
    webhook_events()
        .into_iter()
        .filter(|ev| {
            !endpoint
                .enabled_events
                .iter()
                .any(|have| have == ev || have == "*")
        })
        .collect()
}

/// The webhook endpoint registered for `url`, if any.
pub async fn endpoint_for(
    client: &StripeClient,
    url: &str,
) -> Result<Option<stripe::WebhookEndpoint>, StripeError> {
    let list: List<stripe::WebhookEndpoint> = client
        .get("webhook_endpoints", &Params::new().set("limit", 100))
        .await?;
    Ok(list.data.into_iter().find(|e| e.url == url))
}

/// For `serve`: warns when the endpoint registered for this service lacks events it acts on (one
/// made before an upgrade that handles more, such as migration 0008's `customer.updated` and
/// `invoice.payment_action_required`), saying to run `stripe setup` again. One request; an endpoint
/// not found (events may reach the service through another address) or an error is only noted.
pub async fn warn_if_events_missing(client: &StripeClient, public_base_url: &str) {
    let url = format!("{public_base_url}/api/billing/webhook");
    match endpoint_for(client, &url).await {
        Ok(Some(e)) => {
            let missing = missing_events(&e);
            if !missing.is_empty() {
                tracing::warn!(
                    endpoint = %e.id,
                    url,
                    missing = %missing.join(", "),
                    "the webhook endpoint is not subscribed to events this service acts on: run `stripe setup` again"
                );
            }
        }
        Ok(None) => tracing::info!(url, "no webhook endpoint is registered for this address"),
        Err(e) => tracing::info!(error = %e, "could not check the webhook endpoint's events"),
    }
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
    if let Some(e) = endpoint_for(client, url).await? {
        let missing = missing_events(&e);
        if !missing.is_empty() {
            let mut params = Params::new();
            for (i, ev) in events.iter().enumerate() {
                params = params.set(format!("enabled_events[{i}]"), ev);
            }
            // Keyed by a digest of the event list: the list itself is longer than Stripe's 255-character
            // limit on idempotency keys.
            let digest = hex::encode(
                &<sha2::Sha256 as sha2::Digest>::digest(events.join(",").as_bytes())[..8],
            );
            let key = format!("setup:webhook:{}:events:{digest}", e.id);
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
        if e.api_version.as_deref() != Some(STRIPE_VERSION) {
            // Stripe sets an endpoint's version only when it is created.
            log.push(format!(
                "warning: webhook endpoint {} sends events in API version {}, not {STRIPE_VERSION}: delete it in the dashboard and run `stripe setup` again to recreate it",
                e.id,
                e.api_version.as_deref().unwrap_or("(the account's default)")
            ));
        }
        return Ok((e.id.clone(), None));
    }
    // Events arrive in the version our types follow, not the account's default.
    let mut params = Params::new()
        .set("url", url)
        .set("api_version", STRIPE_VERSION)
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

/// Whether Stripe can deliver webhooks to `public_base_url`: refused with the reason when it names a
/// loopback, private, link-local or unspecified address, or a host Stripe cannot resolve (`localhost`).
pub fn check_public_url(public_base_url: &str) -> Result<(), String> {
    let rest = public_base_url
        .strip_prefix("https://")
        .or_else(|| public_base_url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("PUBLIC_BASE_URL must be an http(s) URL, got {public_base_url:?}")
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let why = if host.is_empty() {
        Some("it has no host")
    } else if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        Some("localhost is this machine")
    } else {
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) if ip.is_loopback() => Some("it is a loopback address"),
            Ok(std::net::IpAddr::V4(ip)) if ip.is_private() => Some("it is a private address"),
            Ok(std::net::IpAddr::V4(ip)) if ip.is_link_local() || ip.is_unspecified() => {
                Some("it is not a routable address")
            }
            Ok(std::net::IpAddr::V6(ip)) if ip.is_loopback() || ip.is_unspecified() => {
                Some("it is a loopback address")
            }
            Ok(std::net::IpAddr::V6(ip)) if (ip.segments()[0] & 0xfe00) == 0xfc00 => {
                Some("it is a private address")
            }
            _ => None,
        }
    };
    match why {
        Some(why) => Err(format!(
            "PUBLIC_BASE_URL is {public_base_url}: Stripe cannot deliver webhooks there ({why}). Set PUBLIC_BASE_URL to the address Stripe reaches this service at, e.g. https://billing.example.com"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_must_be_reachable_from_stripe() {
        for bad in [
            "http://127.0.0.1:8000",
            "http://localhost:8000",
            "https://10.1.2.3",
            "https://192.168.1.10/x",
            "http://[::1]:8000",
            "http://0.0.0.0:8000",
            "ftp://billing.example.com",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
        let err = check_public_url("http://127.0.0.1:8000").unwrap_err();
        assert!(
            err.contains("loopback") && err.contains("PUBLIC_BASE_URL"),
            "{err}"
        );
        for good in [
            "https://billing.example.com",
            "https://203.0.113.7:8443/base",
        ] {
            assert!(check_public_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_event_list_key_fits_stripes_limit() {
        let key = format!(
            "setup:webhook:we_123:events:{}",
            hex::encode(
                &<sha2::Sha256 as sha2::Digest>::digest(webhook_events().join(",").as_bytes())[..8]
            )
        );
        assert!(key.len() <= 255);
        let listed = format!("setup:webhook:we_123:events:{}", webhook_events().join(","));
        assert!(listed.len() > 255, "a key listing the events would not fit");
    }
}
