//! Configuration: embedded defaults, then `.env`, then the process environment (API.md's table).

use chrono_tz::Tz;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A secret that never prints: `Debug` and `Display` show only that it is set.
#[derive(Clone)]
pub struct Secret(String);

/// In constant time: a derived `==` would stop at the first differing byte.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        crate::ct::ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

/// How the monthly usage invoice is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionMethod {
    /// Stripe charges the customer's default payment method (the default).
    ChargeAutomatically,
    /// Stripe emails the invoice, payable within `BILLING_DAYS_UNTIL_DUE` days.
    SendInvoice,
}

/// Every setting, grouped by what uses it: the HTTP server, sign-in, the database, Stripe (which maps
/// onto the client's options), the billing rules and usage ingestion.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub database: DatabaseSettings,
    pub stripe: StripeSettings,
    pub billing: BillingSettings,
    pub usage: UsageSettings,
    pub platform: PlatformSettings,
}

/// Following the platform's own database (API.md, "The platform's data").
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// `PLATFORM_DATABASE_URL`: when set, `serve` follows the platform's organizations and usage. A
    /// secret: the URL may carry a password.
    pub database_url: Option<Secret>,
    /// `PLATFORM_LOOKBACK_S`: how far back the follower re-reads for rows committed late.
    pub lookback: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    /// Where Stripe and browsers reach the service.
    pub public_base_url: String,
    /// Origins allowed to call the API from a browser; empty means same-origin only.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt_secret: Option<Secret>,
    /// When set, a token must carry this `aud` (`JWT_AUDIENCE`) and this `iss` (`JWT_ISSUER`).
    pub jwt_expected: crate::auth::jwt::Expected,
    /// Whether `/dev/sign-in` opens a session for any tenant (the local demo). Never read from the
    /// environment: only `serve --stripe-sim` turns it on, so no production setting can enable it.
    pub dev_sign_in: bool,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub secret_key: Option<Secret>,
    pub public_key: Option<String>,
    /// Empty when unset: then every webhook fails verification.
    pub webhook_secret: Secret,
    pub monthly_price_id: Option<String>,
    /// The customer-portal configuration `stripe setup` made (Stripe's default when unset).
    pub portal_configuration_id: Option<String>,
    pub api_base: String,
    pub max_requests_per_second: u32,
    /// Retries of a failed Stripe call (429, 409, 5xx, network) before giving up.
    pub max_retries: u32,
    /// The first retry's delay in milliseconds; it doubles each time, with jitter.
    pub retry_base_ms: u64,
    /// How long one attempt of a Stripe call may take before it counts as failed (and is retried).
    pub timeout_ms: u64,
    /// Payment method types offered at checkout (`card`, `us_bank_account`, `sepa_debit`).
    pub payment_methods: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub voice_price_cents_per_1000_words: i64,
    pub call_price_cents: i64,
    pub timezone: Tz,
    pub collection_method: CollectionMethod,
    pub days_until_due: u32,
    /// How long a monthly run's claim on its period lasts without renewal: how soon another runner may
    /// take over from one that died.
    pub lease_seconds: u32,
    /// How often the scheduler in `serve` looks for a period to bill.
    pub scheduler_interval_seconds: u32,
    /// The longest trial an org admin may ask for at checkout (a super admin may grant up to 730 days).
    pub max_trial_days: u32,
    /// How long a past-due tenant keeps access after its first failed payment.
    pub past_due_grace_days: u32,
    /// How long `POST /api/admin/billing/runs` with `wait` waits for the run before answering with its
    /// id: [`RUN_WAIT`], the contract's. No variable sets it; tests shorten it on the settings.
    pub run_wait: std::time::Duration,
    /// Days after a usage invoice's first failed payment on which the service tries it again, on
    /// Stripe's clock (`USAGE_RETRY_DAYS`), increasing.
    pub usage_retry_days: Vec<u32>,
}

/// The contract's wait for a run started with `wait: true` (well within the router's 60 s timeout).
pub const RUN_WAIT: std::time::Duration = std::time::Duration::from_secs(50);

#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// Events per second per token on `POST /api/usage/events` (0: no limit).
    pub events_per_second_per_token: u32,
}

/// A configuration problem, said as a sentence that tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Reads `.env` in the working directory (if present) and the process environment; the environment wins.
    pub fn load() -> Result<Settings, ConfigError> {
        let mut vars = read_dotenv(Path::new(".env"))?;
        vars.extend(std::env::vars());
        Settings::from_vars(&vars)
    }

    /// Builds settings from a map of variables over the embedded defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let bind_raw = get("BIND").unwrap_or_else(|| "127.0.0.1:8000".into());
        let bind: SocketAddr = bind_raw.parse().map_err(|_| {
            ConfigError(format!(
                "BIND is not a socket address: {bind_raw:?}; use HOST:PORT, e.g. 127.0.0.1:8000"
            ))
        })?;

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://data/billing.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "DATABASE_URL must start with sqlite:// (embedded) or postgres:// (production)"
                    .into(),
            ));
        }

        let stripe_secret_key = get("STRIPE_SECRET_KEY").map(Secret::new);
        // Stripe's own limits: 25 requests/s in test mode, 100 live.
        let default_rps = match &stripe_secret_key {
            Some(k) if k.expose().starts_with("sk_test_") => 25,
            Some(_) => 100,
            // No key: the simulator or an unconfigured service; test-mode limits are the safe default.
            None => 25,
        };

        let timezone_raw = get("BILLING_TIMEZONE").unwrap_or_else(|| "UTC".into());
        let billing_timezone: Tz = timezone_raw.parse().map_err(|_| {
            ConfigError(format!(
                "BILLING_TIMEZONE is not an IANA time zone: {timezone_raw:?}; use a name like UTC or America/New_York"
            ))
        })?;

        let collection_raw =
            get("BILLING_COLLECTION_METHOD").unwrap_or_else(|| "charge_automatically".into());
        let billing_collection_method = match collection_raw.as_str() {
            "charge_automatically" => CollectionMethod::ChargeAutomatically,
            "send_invoice" => CollectionMethod::SendInvoice,
            other => {
                return Err(ConfigError(format!(
                    "BILLING_COLLECTION_METHOD must be charge_automatically or send_invoice, got {other:?}"
                )))
            }
        };

        let public_base_url = get("PUBLIC_BASE_URL")
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_owned();

        Ok(Settings {
            http: HttpSettings {
                bind,
                public_base_url,
                cors_allowed_origins: get("CORS_ALLOWED_ORIGINS")
                    .map(|v| {
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(check_origin)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| ConfigError(format!("CORS_ALLOWED_ORIGINS: {e}")))
                    })
                    .transpose()?
                    .unwrap_or_default(),
            },
            auth: AuthSettings {
                jwt_secret: get("JWT_SECRET").map(Secret::new),
                jwt_expected: crate::auth::jwt::Expected {
                    audience: get("JWT_AUDIENCE"),
                    issuer: get("JWT_ISSUER"),
                },
                dev_sign_in: false,
            },
            database: DatabaseSettings { url: database_url },
            stripe: StripeSettings {
                secret_key: stripe_secret_key,
                public_key: get("STRIPE_PUBLIC_KEY"),
                webhook_secret: Secret::new(get("STRIPE_WEBHOOK_SECRET").unwrap_or_default()),
                monthly_price_id: get("STRIPE_MONTHLY_PRICE_ID"),
                portal_configuration_id: get("STRIPE_PORTAL_CONFIGURATION_ID"),
                api_base: get("STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com".into())
                    .trim_end_matches('/')
                    .to_owned(),
                max_requests_per_second: parse_num(
                    &get,
                    "STRIPE_MAX_REQUESTS_PER_SECOND",
                    default_rps,
                )?,
                max_retries: parse_num(&get, "STRIPE_MAX_RETRIES", 4)?,
                retry_base_ms: parse_num(&get, "STRIPE_RETRY_BASE_MS", 500)?,
                timeout_ms: parse_num(&get, "STRIPE_TIMEOUT_MS", 80_000)?,
                payment_methods: payment_methods(get("STRIPE_PAYMENT_METHODS"))?,
            },
            billing: BillingSettings {
                voice_price_cents_per_1000_words: parse_num(
                    &get,
                    "VOICE_PRICE_CENTS_PER_1000_WORDS",
                    100,
                )?,
                call_price_cents: parse_num(&get, "CALL_PRICE_CENTS", 100)?,
                timezone: billing_timezone,
                collection_method: billing_collection_method,
                days_until_due: parse_num(&get, "BILLING_DAYS_UNTIL_DUE", 30)?,
                lease_seconds: parse_num(&get, "BILLING_LEASE_SECONDS", 60)?.max(1),
                scheduler_interval_seconds: parse_num(
                    &get,
                    "BILLING_SCHEDULER_INTERVAL_SECONDS",
                    900,
                )?
                .max(1),
                max_trial_days: parse_num(&get, "MAX_TRIAL_DAYS", 30)?,
                past_due_grace_days: parse_num(&get, "PAST_DUE_GRACE_DAYS", 7)?,
                run_wait: RUN_WAIT,
                usage_retry_days: retry_days(get("USAGE_RETRY_DAYS"))?,
            },
            usage: UsageSettings {
                events_per_second_per_token: parse_num(
                    &get,
                    "USAGE_EVENTS_PER_SECOND_PER_TOKEN",
                    0,
                )?,
            },
            platform: PlatformSettings {
                database_url: match get("PLATFORM_DATABASE_URL") {
                    Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                        Some(Secret::new(url))
                    }
                    Some(_) => {
                        return Err(ConfigError(
                            "PLATFORM_DATABASE_URL must be the platform's PostgreSQL, postgres://user:password@host/db \
                             (a read-only role is enough)"
                                .into(),
                        ))
                    }
                    None => None,
                },
                lookback: std::time::Duration::from_secs(
                    parse_num::<u64>(&get, "PLATFORM_LOOKBACK_S", 600)?.max(1),
                ),
            },
        })
    }

    /// Whether Checkout can offer every payment method type configured with the plan's price. SEPA
    /// Direct Debit takes euros only and the monthly price is in US dollars, so `serve` and `stripe
    /// check` refuse `sepa_debit` with a sentence that says why.
    pub fn check_payment_methods(&self) -> Result<(), ConfigError> {
        if self
            .stripe
            .payment_methods
            .iter()
            .any(|m| m == "sepa_debit")
        {
            return Err(ConfigError(SEPA_NEEDS_EUROS.into()));
        }
        Ok(())
    }

    /// The JWT secret, or the start-up error that says how to provide one.
    pub fn require_jwt_secret(&self) -> Result<&Secret, ConfigError> {
        self.auth.jwt_secret.as_ref().ok_or_else(|| {
            ConfigError(
                "JWT_SECRET is not set: set it to the HS256 secret the platform signs its tokens with \
                 (in the environment or in .env), or run `serve --stripe-sim` for the local demo"
                    .into(),
            )
        })
    }
}

/// Why `sepa_debit` cannot be offered (`Settings::check_payment_methods`).
pub const SEPA_NEEDS_EUROS: &str = "STRIPE_PAYMENT_METHODS includes sepa_debit, but SEPA Direct Debit only \
     takes payments in euros and the monthly price is in US dollars ($299.00 per month): remove sepa_debit \
     (card and us_bank_account work with a US dollar price)";

/// Checkout's payment method types we know how to collect.
const PAYMENT_METHOD_TYPES: [&str; 3] = ["card", "us_bank_account", "sepa_debit"];

/// `STRIPE_PAYMENT_METHODS`: the seed's card (required) and ACH Direct Debit (recommended) by default.
fn payment_methods(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = raw
        .unwrap_or_else(|| "card,us_bank_account".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = list
        .iter()
        .find(|m| !PAYMENT_METHOD_TYPES.contains(&m.as_str()))
    {
        return Err(ConfigError(format!(
            "STRIPE_PAYMENT_METHODS has {bad:?}, which is not one of {}",
            PAYMENT_METHOD_TYPES.join(", ")
        )));
    }
    if list.is_empty() {
        return Err(ConfigError(
            "STRIPE_PAYMENT_METHODS is empty: Checkout needs at least card".into(),
        ));
    }
    Ok(list)
}

/// `USAGE_RETRY_DAYS`: whole days after the first failure, increasing (`3,5,7` by default).
fn retry_days(raw: Option<String>) -> Result<Vec<u32>, ConfigError> {
    let raw = raw.unwrap_or_else(|| "3,5,7".into());
    let bad = || {
        ConfigError(format!(
            "USAGE_RETRY_DAYS must be increasing whole days after a usage invoice's first failed payment, \
             separated by commas (e.g. 3,5,7), got {raw:?}"
        ))
    };
    let days = raw
        .split(',')
        .map(|d| d.trim().parse::<u32>().map_err(|_| bad()))
        .collect::<Result<Vec<u32>, _>>()?;
    if days.contains(&0) || days.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad());
    }
    Ok(days)
}

fn parse_num<T: std::str::FromStr + PartialOrd + Default>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<T>() {
            Ok(v) if v >= T::default() => Ok(v),
            _ => Err(ConfigError(format!(
                "{name} must be a non-negative whole number, got {raw:?}"
            ))),
        },
    }
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    iter.map(|item| item.map_err(|e| ConfigError(format!("{} is malformed: {e}", path.display()))))
        .collect()
}

/// Checks one configured origin: `scheme://host[:port]`, exactly as browsers send `Origin`.
pub fn check_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim_end_matches('/');
    if origin == "*" || origin.contains('*') {
        return Err(format!(
            "{origin:?}: wildcards are not allowed; list each origin, e.g. https://app.example.com"
        ));
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(format!(
            "{origin:?} is not an origin; use scheme://host[:port], e.g. https://app.example.com"
        ));
    };
    if !matches!(scheme, "http" | "https")
        || authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' '])
        || axum::http::HeaderValue::from_str(origin).is_err()
    {
        return Err(format!(
            "{origin:?} is not an origin; use scheme://host[:port] with no path, e.g. https://app.example.com"
        ));
    }
    Ok(origin.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_normalized() {
        assert_eq!(
            check_origin("https://App.example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            check_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        for bad in [
            "*",
            "https://*.example.com",
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
            "https://user@host",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::from_vars(&HashMap::new()).unwrap();
        assert_eq!(s.database.url, "sqlite://data/billing.db");
        assert_eq!(s.http.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.http.public_base_url, "http://127.0.0.1:8000");
        assert_eq!(s.stripe.api_base, "https://api.stripe.com");
        assert_eq!(s.billing.voice_price_cents_per_1000_words, 100);
        assert_eq!(s.billing.call_price_cents, 100);
        assert_eq!(s.billing.timezone, chrono_tz::UTC);
        assert_eq!(s.stripe.max_requests_per_second, 25);
        assert_eq!(s.usage.events_per_second_per_token, 0);
        assert_eq!(s.billing.max_trial_days, 30);
        assert_eq!(s.billing.past_due_grace_days, 7);
        assert_eq!(s.billing.usage_retry_days, vec![3, 5, 7]);
        assert_eq!(s.stripe.payment_methods, vec!["card", "us_bank_account"]);
        assert!(s.check_payment_methods().is_ok());
        assert!(s.platform.database_url.is_none());
        assert_eq!(s.platform.lookback, std::time::Duration::from_secs(600));
        assert!(s.stripe.webhook_secret.is_empty());
        assert!(s.require_jwt_secret().is_err());
    }

    #[test]
    fn live_keys_get_the_live_rate_limit() {
        let s = Settings::from_vars(&vars(&[("STRIPE_SECRET_KEY", "sk_live_abc")])).unwrap();
        assert_eq!(s.stripe.max_requests_per_second, 100);
        let s = Settings::from_vars(&vars(&[("STRIPE_SECRET_KEY", "sk_test_abc")])).unwrap();
        assert_eq!(s.stripe.max_requests_per_second, 25);
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let err = Settings::from_vars(&vars(&[("BILLING_TIMEZONE", "Mars/Olympus")])).unwrap_err();
        assert!(err.0.contains("BILLING_TIMEZONE"), "{err}");
        let err = Settings::from_vars(&vars(&[("CALL_PRICE_CENTS", "1.5")])).unwrap_err();
        assert!(err.0.contains("CALL_PRICE_CENTS"), "{err}");
        let err = Settings::from_vars(&vars(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.0.contains("DATABASE_URL"), "{err}");
        let err =
            Settings::from_vars(&vars(&[("PLATFORM_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.0.contains("PLATFORM_DATABASE_URL"), "{err}");
        let err = Settings::from_vars(&vars(&[("PLATFORM_LOOKBACK_S", "-5")])).unwrap_err();
        assert!(err.0.contains("PLATFORM_LOOKBACK_S"), "{err}");
        let err = Settings::from_vars(&vars(&[("BIND", "nope")])).unwrap_err();
        assert!(err.0.contains("BIND"), "{err}");
        let err = Settings::from_vars(&vars(&[("CORS_ALLOWED_ORIGINS", "https://a.example,*")]))
            .unwrap_err();
        assert!(err.0.contains("CORS_ALLOWED_ORIGINS"), "{err}");
    }

    #[test]
    fn payment_methods_and_retry_days_say_what_is_wrong() {
        let s =
            Settings::from_vars(&vars(&[("STRIPE_PAYMENT_METHODS", "card,sepa_debit")])).unwrap();
        let err = s.check_payment_methods().unwrap_err();
        assert!(
            err.0
                .contains("SEPA Direct Debit only takes payments in euros"),
            "{err}"
        );
        let err =
            Settings::from_vars(&vars(&[("STRIPE_PAYMENT_METHODS", "card,bitcoin")])).unwrap_err();
        assert!(err.0.contains("\"bitcoin\""), "{err}");
        let s = Settings::from_vars(&vars(&[("USAGE_RETRY_DAYS", " 1, 2 ,10")])).unwrap();
        assert_eq!(s.billing.usage_retry_days, vec![1, 2, 10]);
        for bad in ["5,3", "0,2", "three", "2,2"] {
            let err = Settings::from_vars(&vars(&[("USAGE_RETRY_DAYS", bad)])).unwrap_err();
            assert!(err.0.starts_with("USAGE_RETRY_DAYS"), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::from_vars(&vars(&[
            ("JWT_SECRET", "jwt-very-secret"),
            ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_topsecret"),
            (
                "PLATFORM_DATABASE_URL",
                "postgres://reader:pgsecret@db/platform",
            ),
        ]))
        .unwrap();
        let debug = format!("{s:?}");
        for secret in [
            "jwt-very-secret",
            "sk_test_supersecret",
            "whsec_topsecret",
            "pgsecret",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("<redacted>"));
    }
}
