//! Ingestion: a batch of validated events into `usage_events`, exactly once, each in its rollup.
//!
//! This file holds the plan (the batch deduplicated, sorted and grouped by rollup: [`Plan`]), the entry
//! points [`ingest`] and [`ingest_returning_new`], and how PostgreSQL inserts a batch ([`Mode`]); each
//! engine's SQL is in [`postgres`] and [`sqlite`], and the rollup ids a process remembers in
//! [`rollup_ids`].
//!
//! A rollup counts one tenant's usage of one local day (in the billing time zone), a column per type.
//!
//! On PostgreSQL a request stores events and nothing more; the rollups' sums are brought up to date
//! afterwards, set-based, by [`super::fold`], and readers see them with the events not folded yet (the
//! view `usage_rollups`, migration 0006). One write transaction per batch, and a short one before it
//! when the batch has rollups to create:
//! 1. group the batch by (tenant, local day), in key order;
//! 2. `usage_hold_buckets`: a shared lock on the buckets of the batch's tenants (a claim or a merge of
//!    their rollups takes it exclusively, so none is claimed or merged away under this ingest), and the
//!    buckets' generations; then the id of each group's open rollup: remembered from an earlier batch
//!    that committed, if its bucket's generation is still the one it was read under (see
//!    [`rollup_ids`]), else read (`usage_rollup_ids`). Rollups missing are created just before, in a
//!    short transaction of their own, so that batches creating the same ones wait for each other only
//!    that long;
//! 3. insert the events with those ids: first as if all were new (`COPY`); an id already stored fails
//!    the primary key and the transaction, and the batch is done again as a checked insert that skips
//!    stored ids (see [`Mode`]). What goes in is what is new, the rest are duplicates (of earlier
//!    batches, or of a concurrent one, whose commit the insert waits for); commit; only then answer.
//!
//! The cost of a batch is its events, not its tenants: a rollup is written once per fold, not once
//! per batch that touches it.
//!
//! SQLite has one writer at a time and keeps adding each batch's sums to its rollups in the request
//! (nothing waits to be folded there): upsert each group's open rollup, insert the events, take the
//! duplicates' quantities back out, commit.
//!
//! An event naming an unknown tenant fails the rollup's foreign key, which rolls the batch back: the
//! caller checks tenants only then, so the common path spends no query on it.

mod postgres;
mod rollup_ids;
mod sqlite;

use super::rating::UsageTotals;
use super::NewEvent;
use crate::db::Db;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// Events stored by this batch.
    pub accepted: u64,
    /// Events whose `event_id` was already stored, or repeated within the batch.
    pub duplicates: u64,
}

/// Buckets of tenants whose claims exclude ingests (PostgreSQL; migration 0006).
pub const BUCKETS: u32 = 64;

/// The bucket of `tenant`: an ingest holds its tenants' buckets in share mode until it commits, a claim
/// or a merge of a tenant's rollups holds the tenant's exclusively. FNV-1a, so it never changes.
pub fn bucket(tenant: &str) -> i32 {
    let hash = tenant.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % BUCKETS) as i32
}

/// A rollup's key (tenant, local day); ordered as the order rollups are created or locked in.
type GroupKey = (String, NaiveDate);

/// The batch, deduplicated and grouped: what the SQL of either engine needs.
struct Plan<'a> {
    /// Events with distinct ids, sorted by id (the order their inserts lock in), each with its group.
    events: Vec<(&'a NewEvent, usize)>,
    /// Group keys in lock order.
    groups: Vec<GroupKey>,
    /// Per group, its events' quantities by type and their count.
    sums: Vec<(UsageTotals, i64)>,
}

fn plan(batch: &[NewEvent], tz: Tz) -> Plan<'_> {
    // Sorted by id, then the first of each id kept: the sort is stable, so that is the first sent.
    let mut unique: Vec<&NewEvent> = batch.iter().collect();
    unique.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    unique.dedup_by(|later, first| later.event_id == first.event_id);
    // Borrowed keys while grouping: one owned key per group, not per event.
    let keys: Vec<(&str, NaiveDate)> = unique
        .iter()
        .map(|e| {
            (
                e.tenant_id.as_str(),
                e.occurred_at.with_timezone(&tz).date_naive(),
            )
        })
        .collect();
    let mut index: BTreeMap<(&str, NaiveDate), usize> = keys.iter().map(|k| (*k, 0)).collect();
    for (i, slot) in index.values_mut().enumerate() {
        *slot = i;
    }
    let events: Vec<(&NewEvent, usize)> = unique
        .iter()
        .zip(&keys)
        .map(|(e, k)| (*e, index[k]))
        .collect();
    let mut sums = vec![(UsageTotals::default(), 0i64); index.len()];
    for (e, g) in &events {
        sums[*g].0.add(e.usage_type, e.quantity);
        sums[*g].1 += 1;
    }
    Plan {
        events,
        groups: index.into_keys().map(|(t, d)| (t.to_owned(), d)).collect(),
        sums,
    }
}

/// Stores a batch of validated events; returns once they are committed.
///
/// `tz` is the billing time zone, whose calendar days the rollups count.
pub async fn ingest(
    db: &Db,
    batch: &[NewEvent],
    received_at: DateTime<Utc>,
    tz: Tz,
) -> Result<IngestOutcome, sqlx::Error> {
    let accepted = ingest_returning_new(db, batch, received_at, tz)
        .await?
        .count() as u64;
    Ok(IngestOutcome {
        accepted,
        duplicates: batch.len() as u64 - accepted,
    })
}

/// Which events of a batch an ingest stored (the others were duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Every distinct event of the batch, this many: none was stored before.
    All(usize),
    /// Only these ids.
    Only(HashSet<String>),
}

impl Inserted {
    /// How many events were stored.
    pub fn count(&self) -> usize {
        match self {
            Inserted::All(n) => *n,
            Inserted::Only(ids) => ids.len(),
        }
    }

    /// Whether the batch's event `id` was stored by this ingest.
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Inserted::All(_) => true,
            Inserted::Only(ids) => ids.contains(id),
        }
    }
}

/// [`ingest`], saying which of the batch's events it stored.
pub async fn ingest_returning_new(
    db: &Db,
    batch: &[NewEvent],
    received_at: DateTime<Utc>,
    tz: Tz,
) -> Result<Inserted, sqlx::Error> {
    if batch.is_empty() {
        return Ok(Inserted::All(0));
    }
    let plan = plan(batch, tz);
    let inserted = match db {
        Db::Postgres(pool) => {
            let mut mode = Mode::for_batch(plan.events.len());
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = match mode {
                    Mode::Fresh => postgres::ingest_fresh(pool, &plan, received_at)
                        .await
                        .map(|()| Inserted::All(plan.events.len())),
                    Mode::Checked => postgres::ingest_checked(pool, &plan, received_at)
                        .await
                        .map(Inserted::Only),
                };
                match result {
                    // A stored id: nothing was committed; again, skipping what is stored.
                    Err(e) if mode == Mode::Fresh && is_stored_event_id(&e) => {
                        mode = Mode::Checked;
                        attempt -= 1;
                        continue;
                    }
                    // Key order makes deadlocks impossible among ingests; this is a safety net for
                    // anything else. Nothing was committed, so retrying is safe.
                    Err(e) if attempt < 5 && is_retryable(&e) => {
                        tracing::warn!(error = %e, attempt, "usage ingest retried");
                        continue;
                    }
                    other => break other?,
                }
            }
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let n = sqlite::ingest(&mut tx, &plan, received_at).await?;
            tx.commit().await?;
            n
        }
    };
    Ok(inserted)
}

/// How PostgreSQL inserts a batch's events.
///
/// Duplicates are rare (a caller's retry after a lost answer), and a bulk load costs PostgreSQL much
/// less than an insert that checks each row for a conflict and reports back which rows went in. So a
/// batch of some size first goes in as `Fresh`; if an id is already stored, the primary key fails the
/// transaction, nothing is committed, and the batch is done again as `Checked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A transaction of the rollups' ids and a `COPY` of the events: every event is new, or the
    /// transaction fails.
    Fresh,
    /// One call that skips stored ids and reports which went in.
    Checked,
}

impl Mode {
    /// A bulk load pays off from a few dozen events; below that, the round trips of its transaction
    /// cost more than it saves, and the checked insert is one call.
    fn for_batch(events: usize) -> Mode {
        if events >= 32 {
            Mode::Fresh
        } else {
            Mode::Checked
        }
    }
}

/// The primary key of `usage_events` refused an id: the event is stored already.
fn is_stored_event_id(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().is_some_and(|c| c == "23505") && d.constraint() == Some("usage_events_pkey")
    })
}

/// Deadlock or serialization failure: PostgreSQL rolled the transaction back, so it may be retried.
fn is_retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use crate::usage::UsageType;
    use chrono::TimeZone;

    fn event(id: &str, tenant: &str, t: UsageType, at: DateTime<Utc>) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            tenant_id: TenantId::parse(tenant).unwrap(),
            usage_type: t,
            quantity: 1,
            occurred_at: at,
            metadata: None,
        }
    }

    #[test]
    fn buckets_are_fixed_and_in_range() {
        assert_eq!(bucket("acme"), bucket("acme"));
        let all: HashSet<i32> = (0..1000)
            .map(|i| bucket(&format!("tenant-{i:04}")))
            .collect();
        assert!(all.iter().all(|b| (0..BUCKETS as i32).contains(b)));
        assert_eq!(
            all.len(),
            BUCKETS as usize,
            "a thousand tenants use every bucket"
        );
    }

    /// An id sent twice in one batch is stored as first sent, whatever the later copy says.
    #[test]
    fn plan_keeps_the_first_of_an_id_sent_twice() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        let mut later = event("x", "t2", UsageType::TtsWords, at);
        later.quantity = 99;
        let batch = vec![
            event("y", "t1", UsageType::SttWords, at),
            event("x", "t1", UsageType::SttWords, at),
            later,
        ];
        let p = plan(&batch, chrono_tz::UTC);
        let kept: Vec<(&str, &str, i64)> = p
            .events
            .iter()
            .map(|(e, _)| (e.event_id.as_str(), e.tenant_id.as_str(), e.quantity))
            .collect();
        assert_eq!(kept, [("x", "t1", 1), ("y", "t1", 1)]);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.sums[0].0.stt_words, 2);
    }

    #[test]
    fn plan_dedupes_sorts_and_groups_by_local_day() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        let batch = vec![
            event("b", "t2", UsageType::SttWords, at),
            event("a", "t1", UsageType::TtsWords, at),
            event("b", "t2", UsageType::SttWords, at),
            event("c", "t1", UsageType::PhoneCalls, at),
            event(
                "d",
                "t1",
                UsageType::TtsWords,
                at + chrono::Duration::hours(5),
            ),
        ];
        let p = plan(&batch, chrono_tz::America::New_York);
        let ids: Vec<&str> = p.events.iter().map(|(e, _)| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let day = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        let next = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(
            p.groups,
            vec![
                ("t1".to_owned(), day),
                ("t1".to_owned(), next),
                ("t2".to_owned(), day)
            ]
        );
        let groups: Vec<usize> = p.events.iter().map(|(_, g)| *g).collect();
        assert_eq!(groups, [0, 2, 0, 1]);
        let totals = |stt_words, tts_words, calls| UsageTotals {
            stt_words,
            tts_words,
            calls,
        };
        assert_eq!(
            p.sums,
            vec![
                (totals(0, 1, 1), 2),
                (totals(0, 1, 0), 1),
                (totals(1, 0, 0), 1)
            ]
        );
    }
}
