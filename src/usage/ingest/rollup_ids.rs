//! The open rollups' ids a process remembers (PostgreSQL): [`RollupIds`], the process's one in
//! [`ROLLUP_IDS`], and the rollups its waiting batches want created together ([`WANTED`], one creator
//! at a time through [`CREATING`]).
//!
//! One per process, not one per [`Batcher`](crate::usage::batcher::Batcher): batches stored
//! without it (an import, tests, benchmarks) share the remembered ids and take their turn at creating
//! rollups with the service's own, so batches of a process never wait on each other's uncommitted
//! rollups.

use super::{bucket, GroupKey, Plan};
use chrono::NaiveDate;
use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};

/// The open rollups' ids this process has read, by bucket, each bucket with the generation they were read
/// under (PostgreSQL). A claim or a merge of a bucket's rollups moves its generation on (holding the
/// bucket, so never while an ingest of it is in flight): an id is used only while its bucket's
/// generation, read by the ingest holding the bucket, is still the one it was read under, so it is
/// still its tenant's day's open rollup. Generations start at random in each database, so ids of
/// another database are never taken for these.
pub(super) struct RollupIds {
    buckets: HashMap<i32, (i64, IdsByTenant)>,
}

/// Open rollup ids by tenant and local day.
type IdsByTenant = HashMap<String, HashMap<NaiveDate, i64>>;

/// Ids remembered per bucket at most; past it, the bucket starts again (a claim empties it too).
const IDS_PER_BUCKET: usize = 50_000;

impl RollupIds {
    pub(super) fn get(
        &mut self,
        bucket: i32,
        generation: i64,
        tenant: &str,
        day: NaiveDate,
    ) -> Option<i64> {
        let (known_generation, ids) = self.buckets.get_mut(&bucket)?;
        if *known_generation != generation {
            *known_generation = generation;
            ids.clear();
            return None;
        }
        ids.get(tenant)?.get(&day).copied()
    }

    /// The plan's groups with no id remembered.
    pub(super) fn missing(&self, plan: &Plan<'_>) -> Vec<GroupKey> {
        plan.groups
            .iter()
            .filter(|(tenant, day)| {
                !self
                    .buckets
                    .get(&bucket(tenant))
                    .and_then(|(_, ids)| ids.get(tenant))
                    .is_some_and(|days| days.contains_key(day))
            })
            .cloned()
            .collect()
    }

    pub(super) fn remember(
        &mut self,
        bucket: i32,
        generation: i64,
        tenant: &str,
        day: NaiveDate,
        id: i64,
    ) {
        let (known_generation, ids) = self
            .buckets
            .entry(bucket)
            .or_insert_with(|| (generation, HashMap::new()));
        if *known_generation != generation
            || ids.values().map(HashMap::len).sum::<usize>() >= IDS_PER_BUCKET
        {
            *known_generation = generation;
            ids.clear();
        }
        ids.entry(tenant.to_owned()).or_default().insert(day, id);
    }
}

/// This process's [`RollupIds`].
pub(super) static ROLLUP_IDS: LazyLock<Mutex<RollupIds>> = LazyLock::new(|| {
    Mutex::new(RollupIds {
        buckets: HashMap::new(),
    })
});

/// Rollups this process's batches wait for, created together: a batch with groups to create adds them
/// here, then takes its turn at [`CREATING`]; whichever batch's turn comes first creates every group
/// added so far in one call, so the batches after it usually find theirs made. One creator at a time
/// also means batches of this process never wait on each other's uncommitted rollups in PostgreSQL.
pub(super) static WANTED: LazyLock<Mutex<BTreeSet<GroupKey>>> = LazyLock::new(Default::default);
pub(super) static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// A remembered id is given only under the generation it was read under; a new generation (a claim
    /// or a merge of the bucket) forgets the bucket's ids, and only its.
    #[test]
    fn rollup_ids_are_forgotten_when_their_bucket_moves_on() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let mut known = RollupIds {
            buckets: HashMap::new(),
        };
        assert_eq!(known.get(3, 10, "acme", day), None);
        known.remember(3, 10, "acme", day, 77);
        known.remember(5, 40, "beta", day, 88);
        assert_eq!(known.get(3, 10, "acme", day), Some(77));
        assert_eq!(known.get(3, 10, "acme", day.succ_opt().unwrap()), None);
        assert_eq!(
            known.get(3, 11, "acme", day),
            None,
            "a claim moved bucket 3 on"
        );
        assert_eq!(
            known.get(3, 10, "acme", day),
            None,
            "and its ids are forgotten"
        );
        assert_eq!(known.get(5, 40, "beta", day), Some(88));
    }
}
