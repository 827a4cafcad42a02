//! Subscribing: a Stripe Checkout session for the monthly plan, under the trial policy, with at most one
//! open session per tenant.

use super::{check_url, customer, tenant_or_404};
use super::{SubscriptionError, SubscriptionResult};
use crate::auth::Caller;
use crate::db::{checkout_sessions, subscriptions};
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe;
use sha2::{Digest, Sha256};

/// Stripe allows at most two years of trial: what a super admin may grant.
pub const MAX_GRANTED_TRIAL_DAYS: u32 = 730;

/// A Stripe Checkout session to send the browser to.
pub struct CheckoutStarted {
    pub checkout_url: String,
    pub session_id: String,
}

/// Opens a Stripe Checkout session for the tenant's subscription (the API route and the billing page).
///
/// Detached from the caller ([`crate::detached`]): the customer and the session created in Stripe are
/// recorded here even if the request that asked is dropped half way.
pub async fn start_checkout(
    state: &AppState,
    tenant_id: &TenantId,
    caller: &Caller,
    success_url: &str,
    cancel_url: &str,
    trial_days: Option<u32>,
) -> SubscriptionResult<CheckoutStarted> {
    let (s, tenant_id, caller) = (state.clone(), tenant_id.clone(), caller.clone());
    let (success_url, cancel_url) = (success_url.to_owned(), cancel_url.to_owned());
    state
        .detached
        .finish(async move {
            open_checkout(
                &s,
                &tenant_id,
                &caller,
                &success_url,
                &cancel_url,
                trial_days,
            )
            .await
        })
        .await
}

async fn open_checkout(
    state: &AppState,
    tenant_id: &TenantId,
    caller: &Caller,
    success_url: &str,
    cancel_url: &str,
    trial_days: Option<u32>,
) -> SubscriptionResult<CheckoutStarted> {
    check_url("success_url", success_url)?;
    check_url("cancel_url", cancel_url)?;
    let email = caller.claims.email.as_deref();
    let trial_days = trial_days.unwrap_or(0);
    // Trials are policy, not a customer's choice: an organization admin may ask for up to
    // MAX_TRIAL_DAYS, a super admin may grant up to Stripe's two years.
    let (max_trial, who) = if caller.role == crate::auth::Role::SuperAdmin {
        (MAX_GRANTED_TRIAL_DAYS, "a super admin may grant")
    } else {
        (
            state
                .settings
                .billing
                .max_trial_days
                .min(MAX_GRANTED_TRIAL_DAYS),
            "an organization admin may ask for",
        )
    };
    if trial_days > max_trial {
        return Err(SubscriptionError::TrialTooLong {
            who,
            max: max_trial,
        });
    }
    let tenant = tenant_or_404(state, tenant_id).await?;
    if tenant.is_demo {
        return Err(SubscriptionError::DemoAccount);
    }
    let earlier = subscriptions::for_tenant(&state.db, &tenant.id).await?;
    if let Some(live) = earlier.iter().find(|s| s.is_live()) {
        return Err(SubscriptionError::AlreadySubscribed {
            id: live.stripe_subscription_id.clone(),
            status: live.status.clone(),
        });
    }
    // A trial frees the usage inside it: only a first subscription gets one, or re-subscribing with a
    // trial would be a way to make earlier usage and fees free.
    if trial_days > 0 && !earlier.is_empty() {
        return Err(SubscriptionError::TrialAfterEarlierSubscription);
    }
    let price_id = state
        .settings
        .stripe
        .monthly_price_id
        .clone()
        .ok_or(SubscriptionError::PriceNotConfigured)?;
    let customer_id = customer::get_or_create(state, &tenant, email).await?;
    let request_hash = hex::encode(
        &Sha256::digest(
            format!("{customer_id}|{price_id}|{success_url}|{cancel_url}|{trial_days}").as_bytes(),
        )[..8],
    );
    let checkout = stripe::NewCheckout {
        customer: &customer_id,
        tenant: &tenant.id,
        price: &price_id,
        success_url,
        cancel_url,
        trial_days,
        payment_methods: &state.settings.stripe.payment_methods,
    };
    // One checkout of a tenant at a time, across replicas: the open sessions are read and replaced
    // under the lock, so two tabs cannot both see none open and both open one.
    let _lock =
        crate::db::locks::lock(&state.db, &state.locks, &format!("checkout:{}", tenant.id)).await?;
    let mut attempt = 0;
    let session = loop {
        // At most one open session per tenant: the same request reuses it (a double click, a
        // reload), another request expires it first (two tabs), so two sessions can never both be
        // completed.
        for open in checkout_sessions::open_for(&state.db, &tenant.id).await? {
            if !state.stripe.checkout_is_open(&open.session_id).await? {
                checkout_sessions::close(&state.db, &open.session_id).await?;
            } else if open.request_hash == request_hash {
                return Ok(CheckoutStarted {
                    checkout_url: open.url,
                    session_id: open.session_id,
                });
            } else {
                state.stripe.expire_checkout(&open.session_id).await?;
                checkout_sessions::close(&state.db, &open.session_id).await?;
                tracing::info!(tenant_id = %tenant.id, session = %open.session_id, "older checkout session expired");
            }
        }
        // Numbered by the sessions opened so far: requests racing here send the same key, so Stripe
        // gives them the same session (same request) or refuses all but one (another request); the
        // refused one waits for the winner's session to be recorded, expires it and goes on.
        let opened = checkout_sessions::count(&state.db, &tenant.id).await?;
        let key = format!("checkout:{}:session-{}", tenant.id, opened + 1);
        match state.stripe.open_checkout(&checkout, &key).await {
            Ok(s) if s.url.is_some() && s.status.as_deref() != Some("expired") => break s,
            Ok(s) => {
                // A replayed session another request has since expired: record it, and go round.
                checkout_sessions::record(
                    &state.db,
                    &tenant.id,
                    &s.id,
                    s.url.as_deref().unwrap_or(""),
                    "",
                )
                .await?;
                checkout_sessions::close(&state.db, &s.id).await?;
            }
            Err(e) if e.kind() == Some("idempotency_error") && attempt < 20 => {}
            Err(e) if e.kind() == Some("idempotency_error") => {
                return Err(SubscriptionError::CheckoutInProgress)
            }
            Err(e) => return Err(e.into()),
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
    };
    let url = session
        .url
        .ok_or_else(|| anyhow::anyhow!("checkout session without url"))?;
    checkout_sessions::record(&state.db, &tenant.id, &session.id, &url, &request_hash).await?;
    tracing::info!(tenant_id = %tenant.id, session = %session.id, trial_days, "checkout session created");
    Ok(CheckoutStarted {
        checkout_url: url,
        session_id: session.id,
    })
}
