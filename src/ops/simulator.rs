//! `serve --stripe-sim`: the one-command demo. An in-process Stripe simulator, set up as `stripe setup`
//! would set up real Stripe, and a few organizations with a month of plausible usage.

use super::stripe_setup;
use crate::auth::jwt::{self, Claims};
use crate::config::{Secret, Settings};
use crate::stripe::{ClientOptions, StripeClient};
use serde_json::{json, Value};

/// The demo's organizations: (id, name, subscription: None, or Some(trial days)).
const TENANTS: [(&str, &str, Option<u32>, bool); 3] = [
    ("acme", "Acme Funeral Home", Some(0), false),
    ("evergreen", "Evergreen Memorial Chapel", Some(14), false),
    ("demo-org", "Demo Organization", None, true),
];

/// Starts the simulator and points `settings` at it, set up like a real account.
pub async fn start_simulator(settings: &mut Settings) -> anyhow::Result<stripe_sim::SimHandle> {
    let sim = stripe_sim::spawn("127.0.0.1:0".parse()?, stripe_sim::SimConfig::default()).await?;
    settings.stripe.api_base = sim.base_url.clone();
    settings.stripe.secret_key = Some(Secret::new("sk_test_simulator"));
    let client = StripeClient::new(
        &sim.base_url,
        settings.stripe.secret_key.clone(),
        ClientOptions::from_settings(&settings.stripe),
    );
    let setup = stripe_setup::run(
        &client,
        &settings.http.public_base_url,
        &settings.stripe.payment_methods,
    )
    .await?;
    for line in &setup.log {
        tracing::info!("stripe setup: {line}");
    }
    settings.stripe.monthly_price_id = Some(setup.price_id);
    settings.stripe.portal_configuration_id = Some(setup.portal_configuration_id);
    settings.stripe.webhook_secret = Secret::new(setup.webhook_secret.unwrap_or_default());
    if settings.auth.jwt_secret.is_none() {
        settings.auth.jwt_secret = Some(Secret::new(hex::encode(rand::random::<[u8; 32]>())));
    }
    Ok(sim)
}

/// Mints the demo's tokens as the service expects them: its secret, and its `JWT_AUDIENCE` and
/// `JWT_ISSUER` when those are set.
#[derive(Clone)]
pub struct Signer {
    pub secret: Secret,
    pub expected: jwt::Expected,
}

impl Signer {
    fn token(&self, tenant: &str, role: &str) -> String {
        let claims = Claims {
            sub: format!("demo-{role}"),
            tenant_id: tenant.to_owned(),
            role: role.to_owned(),
            exp: chrono::Utc::now().timestamp() + 12 * 3600,
            email: Some(format!("{role}@{tenant}.example")),
        };
        jwt::sign_for(&claims, self.secret.expose().as_bytes(), &self.expected)
    }
}

/// Seeds the demo through the service's own API once it is serving: tenants, checkouts completed in the
/// simulator, and 30 days of usage. Skipped when the database already has tenants.
pub async fn seed(base: &str, sim: &str, signer: &Signer) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let admin = signer.token("platform", "super_admin");
    let existing: Value = http
        .get(format!("{base}/api/admin/tenants"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    if existing["tenants"]
        .as_array()
        .is_some_and(|t| !t.is_empty())
    {
        return Ok(());
    }
    for (id, name, plan, is_demo) in TENANTS {
        http.post(format!("{base}/api/admin/tenants"))
            .bearer_auth(&admin)
            .json(&json!({"id": id, "name": name, "subdomain": id}))
            .send()
            .await?
            .error_for_status()?;
        if is_demo {
            http.post(format!(
                "{base}/api/billing/set-demo-status/{id}?is_demo=true"
            ))
            .bearer_auth(&admin)
            .send()
            .await?
            .error_for_status()?;
        }
        if let Some(trial_days) = plan {
            let session: Value = http
                .post(format!("{base}/api/billing/create-checkout-session"))
                .bearer_auth(signer.token(id, "org_admin"))
                .json(&json!({"success_url": format!("{base}/billing"), "cancel_url": format!("{base}/billing"), "trial_days": trial_days}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let sid = session["session_id"].as_str().unwrap_or_default();
            http.post(format!("{sim}/_sim/checkout/sessions/{sid}/complete"))
                .bearer_auth("sk_test_simulator")
                .form(&[("card", "4242424242424242")])
                .send()
                .await?
                .error_for_status()?;
        }
    }
    // Thirty days of calls and voice, a little different every day and for every organization.
    let now = chrono::Utc::now();
    let service = signer.token("platform", "service");
    for (t, (id, ..)) in TENANTS.iter().enumerate() {
        let mut events = Vec::new();
        for day in 0..30i64 {
            let at =
                now - chrono::Duration::days(30 - day) + chrono::Duration::minutes(37 * t as i64);
            let calls = 2 + (day * 7 + t as i64 * 3) % 9;
            for c in 0..calls {
                let at = (at + chrono::Duration::minutes(11 * c)).to_rfc3339();
                let words = 180 + (day * 53 + c * 31 + t as i64 * 17) % 900;
                events.push(json!({"event_id": format!("demo-{id}-{day}-{c}-call"), "tenant_id": id, "type": "phone_calls", "quantity": 1, "occurred_at": at}));
                events.push(json!({"event_id": format!("demo-{id}-{day}-{c}-stt"), "tenant_id": id, "type": "stt_words", "quantity": words, "occurred_at": at}));
                events.push(json!({"event_id": format!("demo-{id}-{day}-{c}-tts"), "tenant_id": id, "type": "tts_words", "quantity": words * 6 / 5, "occurred_at": at}));
            }
        }
        for chunk in events.chunks(1000) {
            http.post(format!("{base}/api/usage/events"))
                .bearer_auth(&service)
                .json(&json!({"events": chunk}))
                .send()
                .await?
                .error_for_status()?;
        }
    }
    Ok(())
}

/// What to print once the demo runs.
pub fn banner(base: &str, sim: &str, signer: &Signer, database_url: &str) -> String {
    format!(
        "\nThanotopolis billing demo is running (SQLite + in-process Stripe simulator, no keys).\n\n\
         \x20 Tenant billing page:   {base}/billing\n\
         \x20 Super-admin page:      {base}/admin/billing\n\
         \x20 Sign in:               {base}/dev/sign-in  (pick an organization, or the super admin)\n\
         \x20 Stripe simulator:      {sim}  (test card 4242 4242 4242 4242; failing card 4000 0000 0000 0341)\n\n\
         API tokens for curl (valid 12 hours):\n\
         \x20 super admin: {}\n\
         \x20 acme admin:  {}\n\
         \x20 service:     {}\n\n\
         Try: curl -s -H 'Authorization: Bearer <acme admin token>' {base}/api/billing/dashboard\n\n\
         The commands beside this demo need its database:\n\
         \x20 DATABASE_URL={database_url} thanotopolis-billing tenants list\n",
        signer.token("platform", "super_admin"),
        signer.token("acme", "org_admin"),
        signer.token("platform", "service"),
    )
}

#[cfg(test)]
mod banner_tests {
    use super::Signer;
    use crate::auth::jwt::{self, Expected};
    use crate::config::Secret;

    fn signer() -> Signer {
        Signer {
            secret: Secret::new("demo-secret"),
            expected: Expected {
                audience: Some("billing".into()),
                issuer: Some("https://platform.example".into()),
            },
        }
    }

    #[test]
    fn the_banner_names_the_database_the_commands_need() {
        let b = super::banner(
            "http://127.0.0.1:8000",
            "http://127.0.0.1:12111",
            &signer(),
            "sqlite://data/demo.db",
        );
        assert!(
            b.contains("DATABASE_URL=sqlite://data/demo.db thanotopolis-billing tenants list"),
            "{b}"
        );
    }

    #[test]
    fn demo_tokens_carry_the_audience_and_issuer_the_service_expects() {
        let s = signer();
        let token = s.token("acme", "org_admin");
        let now = chrono::Utc::now().timestamp();
        let claims = jwt::verify_for(&token, b"demo-secret", now, &s.expected).expect("accepted");
        assert_eq!(claims.tenant_id, "acme");
        let other = Expected {
            audience: Some("another-app".into()),
            issuer: None,
        };
        assert!(jwt::verify_for(&token, b"demo-secret", now, &other).is_err());
    }
}
