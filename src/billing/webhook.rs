//! A Stripe event, once its signature is checked: recorded once, applied to our copy
//! (`subscriptions::webhook::apply`), and a change of payment method it records settled (copied over
//! Stripe's defaults, the open invoices paid). All of it in a task of its own (`crate::detached`): a
//! delivery that times out or hangs up does not stop an event half applied (a Stripe write done, its
//! record not yet).

use super::collect;
use crate::db::webhook_events::{self, Receipt};
use crate::domain::time::now;
use crate::state::AppState;
use crate::stripe::Event;
use crate::subscriptions::error::SyncError;
use crate::subscriptions::sync;
use crate::subscriptions::webhook::{self, Applied};

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Applied before: Stripe delivered it again, nothing was done.
    Duplicate,
    /// Applied now: for this tenant (None: no tenant of ours), `applied` or `ignored` (a type we do not
    /// act on).
    Applied {
        tenant: Option<String>,
        outcome: &'static str,
    },
}

/// Records the event once and applies it. An error leaves it unapplied, for Stripe's next delivery.
pub async fn receive(state: &AppState, event: &Event) -> Result<Delivery, SyncError> {
    let created = sync::ts(Some(event.created)).unwrap_or_else(now);
    let receipt = webhook_events::receive(
        &state.db,
        &event.id,
        &event.event_type,
        event.object_id(),
        created,
    )
    .await?;
    if receipt == Receipt::AlreadyApplied {
        return Ok(Delivery::Duplicate);
    }
    let applying = {
        let (state, event) = (state.clone(), event.clone());
        async move {
            let applied = webhook::apply(&state, &event).await?;
            match &applied {
                Applied::PaymentMethodChanged(tenant) => collect::settle(&state, tenant).await?,
                Applied::Synced(Some(tenant)) => collect::settle_if_due(&state, tenant).await?,
                Applied::Synced(None) | Applied::Ignored => {}
            }
            webhook_events::mark_applied(&state.db, &event.id, applied.tenant()).await?;
            Ok::<_, SyncError>(applied)
        }
    };
    let applied = state.detached.finish(applying).await?;
    Ok(Delivery::Applied {
        tenant: applied.tenant().map(str::to_owned),
        outcome: match applied {
            Applied::Ignored => "ignored",
            _ => "applied",
        },
    })
}
