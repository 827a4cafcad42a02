//! Applying Stripe events. We re-read the object from Stripe rather than trusting the event's copy, so an
//! old event applied late cannot move our state backwards, and a repeated event changes nothing.

use super::error::SyncError;
use super::sync::{self, PaymentMethodStep};
use crate::domain::time::now;
use crate::state::AppState;
use crate::stripe::{self, Event, Topic};

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Our copy was brought up to date for this tenant (None: the object belongs to no tenant of ours).
    Synced(Option<String>),
    /// As `Synced`, and the tenant set a payment method: the change is recorded, and is to be settled
    /// (`billing::collect::settle`).
    PaymentMethodChanged(String),
    /// A type we do not act on.
    Ignored,
}

impl Applied {
    /// The tenant the event was about, if one of ours.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Applied::Synced(t) => t.as_deref(),
            Applied::PaymentMethodChanged(t) => Some(t),
            Applied::Ignored => None,
        }
    }
}

pub async fn apply(state: &AppState, event: &Event) -> Result<Applied, SyncError> {
    let (Some(topic), Some(id)) = (event.topic(), event.object_id()) else {
        return Ok(Applied::Ignored);
    };
    if topic == Topic::CheckoutCompleted {
        return checkout_completed(state, id).await;
    }
    if topic == Topic::Customer {
        return customer_updated(state, event, id).await;
    }
    if topic == Topic::Subscription {
        // A payment method the tenant set is recorded before anything is copied, so that the copying
        // never writes the one it replaces back.
        let set = event.payment_method_set();
        let step = if set.is_some() {
            PaymentMethodStep::Leave
        } else {
            PaymentMethodStep::FillIfMissing
        };
        return match sync::refresh_subscription(state, id, step).await {
            Ok(row) => {
                if let Some(r) = row.as_ref().filter(|r| r.is_live()) {
                    super::duplicates::cancel_newer(state, &r.tenant_id).await?;
                    if let Some(pm) = set {
                        super::payment_method::changed(state, &r.tenant_id, pm, event.created)
                            .await?;
                        return Ok(Applied::PaymentMethodChanged(r.tenant_id.clone()));
                    }
                }
                Ok(Applied::Synced(row.map(|r| r.tenant_id)))
            }
            // Gone from Stripe: the event's own copy is the last word there is.
            Err(SyncError::Stripe(e)) if e.is_missing() => {
                let sub: stripe::Subscription = serde_json::from_value(event.data.object.clone())
                    .map_err(|e| {
                    SyncError::Stripe(stripe::StripeError::Decode(e.to_string()))
                })?;
                let read_at = sync::ts(Some(event.created)).unwrap_or_else(now);
                Ok(Applied::Synced(
                    sync::subscription(state, &sub, read_at)
                        .await?
                        .map(|r| r.tenant_id),
                ))
            }
            Err(e) => Err(e),
        };
    }
    match sync::refresh_invoice(state, id).await {
        Ok(row) => Ok(Applied::Synced(row.map(|r| r.tenant_id))),
        // A deleted draft: nothing to keep.
        Err(SyncError::Stripe(e)) if e.is_missing() => Ok(Applied::Synced(None)),
        Err(e) => Err(e),
    }
}

/// A customer changed: when the tenant set a new invoice default payment method (the portal writes
/// it there), it becomes the tenant's payment method.
async fn customer_updated(
    state: &AppState,
    event: &Event,
    customer: &str,
) -> Result<Applied, SyncError> {
    let Some(tenant) = crate::db::customers::tenant_of(&state.db, customer).await? else {
        return Ok(Applied::Synced(None));
    };
    if let Some(pm) = event.payment_method_set() {
        super::payment_method::changed(state, &tenant, pm, event.created).await?;
        return Ok(Applied::PaymentMethodChanged(tenant));
    }
    Ok(Applied::Synced(Some(tenant)))
}

async fn checkout_completed(state: &AppState, session_id: &str) -> Result<Applied, SyncError> {
    let session = state.stripe.checkout_session(session_id).await?;
    let Some(sub) = session.subscription.as_ref() else {
        return Ok(Applied::Synced(None));
    };
    // The session names the tenant it was opened for; the subscription carries it in metadata too.
    if let (Some(customer), Some(tenant)) = (
        session.customer.as_ref(),
        session.client_reference_id.as_deref(),
    ) {
        if crate::db::customers::tenant_of(&state.db, customer.id())
            .await?
            .is_none()
        {
            if let Ok(t) = crate::domain::TenantId::parse(tenant) {
                if crate::db::tenants::get(&state.db, &t).await?.is_some() {
                    crate::db::customers::link(&state.db, tenant, customer.id(), None).await?;
                }
            }
        }
    }
    let row = sync::refresh_subscription(state, sub.id(), PaymentMethodStep::FillIfMissing).await?;
    Ok(Applied::Synced(row.map(|r| r.tenant_id)))
}
