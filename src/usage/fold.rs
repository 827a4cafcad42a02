//! Folding stored events into their rollups' sums, set-based, after the requests that stored them.
//!
//! On PostgreSQL an ingest only stores its events, each naming its rollup (see [`super::ingest`]).
//! `usage_fold()` (migration 0006) adds every event of a finished transaction not folded yet to its
//! rollup's stored sums, grouped by rollup, and moves the mark `usage_fold.folded_through` past them, in
//! one transaction: the sums and the mark move together or not at all. Readers see the rollups through
//! the view `usage_rollups`, the folded sums plus the events above the mark (the tail), read in one
//! snapshot; so what a fold does changes no figure, only how much of it is read from the events.
//!
//! The mark is the oldest transaction still running when the fold looks (its snapshot's xmin): events
//! of transactions in flight are left for a later fold, whatever order transactions commit in. A
//! transaction that stays open for long (anywhere on the server) holds the mark back and the tail grows
//! meanwhile; figures stay right, reads get slower.
//!
//! `serve` folds every [`INTERVAL`], or less often while folds take long ([`pause_after`]): a fold
//! writes each rollup it touches once, however many events it adds to it, so under heavy ingestion
//! over many tenants and days, folding less often writes fewer rollups per event. Folds of several
//! replicas take turns on the mark's row. SQLite adds each batch to its rollups in the request, so
//! there is nothing to fold there.

use crate::db::Db;
use std::time::Duration;

/// How often `serve` folds when folds are quick: the tail readers add up stays about this many
/// seconds of events.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The pause after a fold that took `took`: [`INTERVAL`], or four times as long as the fold took, so
/// folding takes at most a fifth of the time it runs in (each fold then has more events per rollup to
/// add), and the tail stays about five folds' worth of events.
pub fn pause_after(took: Duration) -> Duration {
    INTERVAL.max(took * 4)
}

/// Folds what can be folded now; returns how many rollups it updated.
pub async fn fold(db: &Db) -> Result<u64, sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            let updated: i64 = sqlx::query_scalar("SELECT usage_fold()")
                .fetch_one(pool)
                .await?;
            Ok(updated as u64)
        }
        Db::Sqlite(_) => Ok(0),
    }
}

/// Runs until shutdown is asked (between folds: each fold is one transaction).
pub async fn run(db: Db, mut shutdown: crate::shutdown::Shutdown) {
    if let Db::Sqlite(_) = db {
        return;
    }
    loop {
        let started = std::time::Instant::now();
        if let Err(e) = fold(&db).await {
            tracing::warn!(error = %e, "usage could not be folded into the rollups");
        }
        if shutdown.sleep(pause_after(started.elapsed())).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_take_at_most_a_fifth_of_the_time() {
        assert_eq!(pause_after(Duration::from_millis(20)), INTERVAL);
        assert_eq!(pause_after(Duration::from_millis(250)), INTERVAL);
        assert_eq!(
            pause_after(Duration::from_millis(600)),
            Duration::from_millis(2_400)
        );
    }
}
