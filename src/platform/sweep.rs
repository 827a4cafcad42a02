//! What the follower's sweep reads again (see `follow`): the open billing period, and the previous one
//! until its monthly run has completed (a row found there before the run is billed by it; after it, the
//! period is left: a row stamped in it that commits later still would be billed as late usage by the next
//! run, but the sweep no longer looks for it). Never before the follower's own start (the cut-over).

use crate::billing::lease;
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::state::AppState;
use chrono::{DateTime, Utc};

/// Where a sweep pass starts reading (`usage_date` from then on).
pub async fn range_start(
    state: &AppState,
    started_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let tz = state.settings.billing.timezone;
    let open = BillingPeriod::containing(now(), tz);
    let previous = open.prev();
    let from = match lease::completed_at(&state.db, previous).await? {
        Some(_) => open.bounds(tz).0,
        None => previous.bounds(tz).0,
    };
    Ok(from.max(started_at))
}
