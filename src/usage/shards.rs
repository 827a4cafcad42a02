//! Rollup shards: which copy of a (tenant, day) rollup an ingest transaction adds to.
//!
//! An ingest locks the rollups it adds to until it commits. Batches from different callers usually
//! touch the same tenants' today, so with one rollup per key they would queue behind each other's
//! commits. Instead each PostgreSQL ingest in flight holds a shard number of its own and upserts the
//! rollups of that shard: concurrent ingests of this process never share a rollup row. Readers sum
//! rollups by key, so a key costs at most [`SHARDS`] rows: reads stay O(days).
//!
//! The lowest free number is taken, so a lightly loaded service writes shard 0 only. Several
//! replicas may pick the same number; they then wait on each other's locks as they would without
//! shards, which is slower but equally correct.

use std::sync::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Shards, and so PostgreSQL ingest transactions in flight at once per process: enough to keep two
/// cores busy while others wait on their commit's flush.
pub const SHARDS: usize = 4;

/// The free shard numbers of this process.
pub struct Shards {
    /// Bit `i` set: shard `i` is held by an ingest in flight.
    held: Mutex<u32>,
    permits: Semaphore,
}

/// A shard held until dropped.
pub struct Shard<'a> {
    shards: &'a Shards,
    number: u32,
    _permit: SemaphorePermit<'a>,
}

impl Shards {
    pub const fn new() -> Shards {
        Shards {
            held: Mutex::new(0),
            permits: Semaphore::const_new(SHARDS),
        }
    }

    /// Waits for a free shard and holds the lowest free number.
    pub async fn take(&self) -> Shard<'_> {
        let permit = self.permits.acquire().await.expect("never closed");
        let mut held = self.held.lock().expect("shard lock");
        // A permit guarantees a clear bit among the first SHARDS.
        let number = held.trailing_ones();
        debug_assert!((number as usize) < SHARDS);
        *held |= 1 << number;
        Shard {
            shards: self,
            number,
            _permit: permit,
        }
    }
}

impl Default for Shards {
    fn default() -> Self {
        Shards::new()
    }
}

impl Shard<'_> {
    pub fn number(&self) -> i16 {
        self.number as i16
    }
}

impl Drop for Shard<'_> {
    fn drop(&mut self) {
        let mut held = self.shards.held.lock().expect("shard lock");
        *held &= !(1 << self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_flight_ingests_hold_distinct_shards_lowest_first() {
        let shards = Shards::new();
        let a = shards.take().await;
        let b = shards.take().await;
        assert_eq!((a.number(), b.number()), (0, 1));
        drop(a);
        // The lowest free number comes back first.
        let c = shards.take().await;
        assert_eq!(c.number(), 0);
        let d = shards.take().await;
        let e = shards.take().await;
        assert_eq!((d.number(), e.number()), (2, 3));
        // All held: the next one waits until one is dropped.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), shards.take());
        assert!(waiting.await.is_err(), "a fifth ingest waits");
        drop(d);
        let f = shards.take().await;
        assert_eq!(f.number(), 2);
        drop((b, c, e, f));
    }
}
