//! Ingestion: a batch of validated events into `usage_events`, exactly once, each in its rollup.
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
//!    [`RollupIds`]), else read (`usage_rollup_ids`). Rollups missing are created just before, in a
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

use super::rating::UsageTotals;
use super::NewEvent;
use crate::db::Db;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// Per group, the quantities by type and the count of the events that were not inserted
/// (duplicates); only groups that have some.
fn not_inserted(plan: &Plan<'_>, inserted: &Inserted) -> Vec<(usize, UsageTotals, i64)> {
    let mut sums = vec![(UsageTotals::default(), 0i64); plan.groups.len()];
    for (e, g) in &plan.events {
        if !inserted.contains(&e.event_id) {
            sums[*g].0.add(e.usage_type, e.quantity);
            sums[*g].1 += 1;
        }
    }
    sums.into_iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(g, (q, n))| (g, q, n))
        .collect()
}

/// Maps rows returned by the rollup upsert back to group indexes.
fn rollup_ids(plan: &Plan<'_>, returned: Vec<(i64, String, NaiveDate)>) -> Vec<i64> {
    let index: HashMap<(&str, NaiveDate), usize> = plan
        .groups
        .iter()
        .enumerate()
        .map(|(i, (t, d))| ((t.as_str(), *d), i))
        .collect();
    let mut ids = vec![0i64; plan.groups.len()];
    for (id, tenant, day) in returned {
        ids[index[&(tenant.as_str(), day)]] = id;
    }
    debug_assert!(ids.iter().all(|id| *id != 0), "every group has its rollup");
    ids
}

/// SQLite's rollup upsert: the group's sums added to its open rollup.
const UPSERT_CONFLICT: &str = "ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL \
     DO UPDATE SET stt_words = usage_rollups_folded.stt_words + EXCLUDED.stt_words, \
                   tts_words = usage_rollups_folded.tts_words + EXCLUDED.tts_words, \
                   phone_calls = usage_rollups_folded.phone_calls + EXCLUDED.phone_calls, \
                   event_count = usage_rollups_folded.event_count + EXCLUDED.event_count \
     RETURNING id, tenant_id, day";

/// The open rollups' ids this process has read, by bucket, each bucket with the generation they were read
/// under (PostgreSQL). A claim or a merge of a bucket's rollups moves its generation on (holding the
/// bucket, so never while an ingest of it is in flight): an id is used only while its bucket's
/// generation, read by the ingest holding the bucket, is still the one it was read under, so it is
/// still its tenant's day's open rollup. Generations start at random in each database, so ids of
/// another database are never taken for these.
pub struct RollupIds {
    buckets: HashMap<i32, (i64, IdsByTenant)>,
}

/// Open rollup ids by tenant and local day.
type IdsByTenant = HashMap<String, HashMap<NaiveDate, i64>>;

/// Ids remembered per bucket at most; past it, the bucket starts again (a claim empties it too).
const IDS_PER_BUCKET: usize = 50_000;

impl RollupIds {
    fn get(&mut self, bucket: i32, generation: i64, tenant: &str, day: NaiveDate) -> Option<i64> {
        let (known_generation, ids) = self.buckets.get_mut(&bucket)?;
        if *known_generation != generation {
            *known_generation = generation;
            ids.clear();
            return None;
        }
        ids.get(tenant)?.get(&day).copied()
    }

    /// The plan's groups with no id remembered.
    fn missing(&self, plan: &Plan<'_>) -> Vec<GroupKey> {
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

    fn remember(&mut self, bucket: i32, generation: i64, tenant: &str, day: NaiveDate, id: i64) {
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
static ROLLUP_IDS: std::sync::LazyLock<std::sync::Mutex<RollupIds>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(RollupIds {
            buckets: HashMap::new(),
        })
    });

/// Rollups this process's batches wait for, created together: a batch with groups to create adds them
/// here, then takes its turn at [`CREATING`]; whichever batch's turn comes first creates every group
/// added so far in one call, so the batches after it usually find theirs made. One creator at a time
/// also means batches of this process never wait on each other's uncommitted rollups in PostgreSQL.
static WANTED: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeSet<GroupKey>>> =
    std::sync::LazyLock::new(Default::default);
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// PostgreSQL: each step is one call or one `COPY`, so a batch costs a few round trips whatever its
/// size, and the statements' text never changes (prepared once per connection).
mod postgres {
    use super::*;
    use sqlx::{Connection, PgConnection, PgPool};
    use std::io::Write;

    /// The plan's group keys as one array each.
    fn group_keys<'a>(plan: &'a Plan<'_>) -> (Vec<&'a str>, Vec<NaiveDate>) {
        plan.groups.iter().map(|(t, d)| (t.as_str(), *d)).unzip()
    }

    /// [`Mode::Fresh`]: in one transaction, the rollups' ids and the events by `COPY`; a stored id
    /// fails the primary key, and with it the transaction.
    pub(super) async fn ingest_fresh(
        pool: &PgPool,
        plan: &Plan<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let missing = ROLLUP_IDS.lock().expect("rollup ids").missing(plan);
        if !missing.is_empty() {
            WANTED.lock().expect("wanted rollups").extend(missing);
            let _turn = CREATING.lock().await;
            let still = ROLLUP_IDS.lock().expect("rollup ids").missing(plan);
            if !still.is_empty() {
                // Every batch's groups waiting, ours among them (a creator that failed took them).
                let mut groups = std::mem::take(&mut *WANTED.lock().expect("wanted rollups"));
                let only_ours = groups.iter().all(|g| still.contains(g));
                groups.extend(still.iter().cloned());
                let mut conn = pool.acquire().await?;
                match create_rollups(&mut conn, groups.into_iter().collect()).await {
                    Ok(()) => {}
                    // Another batch's group may be what failed (its tenant not registered yet):
                    // ours alone decide this batch's answer.
                    Err(_) if !only_ours => create_rollups(&mut conn, still).await?,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let (ids, read) = open_rollup_ids(&mut tx, plan).await?;
        copy_events(&mut tx, plan, &ids, received_at).await?;
        tx.commit().await?;
        remember(plan, &ids, read);
        Ok(())
    }

    /// The open rollups of the batches waiting ([`WANTED`]), created where missing, in a transaction of
    /// their own before the events'. Another replica creating the same rollup waits for this short
    /// transaction's commit, not for a `COPY` of a thousand events, so batches of a day whose rollups
    /// do not exist yet (the first calls after midnight, a backfill) still run side by side.
    /// A rollup created here stays if the events' transaction then fails: empty, it counts nothing.
    async fn create_rollups(
        conn: &mut PgConnection,
        groups: Vec<GroupKey>,
    ) -> Result<(), sqlx::Error> {
        // In lock order, as a batch's own groups are.
        let groups = Plan {
            events: Vec::new(),
            groups,
            sums: Vec::new(),
        };
        let mut tx = conn.begin().await?;
        let (ids, read) = open_rollup_ids(&mut tx, &groups).await?;
        tx.commit().await?;
        remember(&groups, &ids, read);
        Ok(())
    }

    /// Remembers the ids read under their generations. Only after the transaction that read them
    /// committed: a rollup it created exists only then, and an id kept from a rolled-back one would
    /// count later batches' events in no rollup at all.
    fn remember(plan: &Plan<'_>, ids: &[i64], read: Vec<(usize, i64)>) {
        let mut known = ROLLUP_IDS.lock().expect("rollup ids");
        for (g, generation) in read {
            let (tenant, day) = &plan.groups[g];
            known.remember(bucket(tenant), generation, tenant, *day, ids[g]);
        }
    }

    /// Each group's open rollup: holds the groups' buckets (`usage_hold_buckets`, migration 0006), then
    /// takes the ids [`ROLLUP_IDS`] remembers under the generations just read, and reads (or creates)
    /// the others with `usage_rollup_ids`. Returns the ids by group, and the groups whose ids were read
    /// here with their buckets' generations, for the caller to remember once it has committed.
    async fn open_rollup_ids(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
    ) -> Result<(Vec<i64>, Vec<(usize, i64)>), sqlx::Error> {
        let buckets: Vec<i32> = plan.groups.iter().map(|(t, _)| bucket(t)).collect();
        let generations: Vec<i64> = sqlx::query_scalar("SELECT usage_hold_buckets($1)")
            .bind(&buckets)
            .fetch_one(&mut *conn)
            .await?;
        let mut ids = vec![0i64; plan.groups.len()];
        let mut missing = Vec::new();
        {
            let mut known = ROLLUP_IDS.lock().expect("rollup ids");
            for (g, (tenant, day)) in plan.groups.iter().enumerate() {
                match known.get(buckets[g], generations[g], tenant, *day) {
                    Some(id) => ids[g] = id,
                    None => missing.push(g),
                }
            }
        }
        if missing.is_empty() {
            return Ok((ids, Vec::new()));
        }
        let (tenants, days): (Vec<&str>, Vec<NaiveDate>) = missing
            .iter()
            .map(|g| (plan.groups[*g].0.as_str(), plan.groups[*g].1))
            .unzip();
        let found: Vec<i64> = sqlx::query_scalar("SELECT usage_rollup_ids($1, $2)")
            .bind(&tenants)
            .bind(&days)
            .fetch_one(&mut *conn)
            .await?;
        debug_assert_eq!(found.len(), missing.len(), "every group has its rollup");
        let mut read = Vec::with_capacity(missing.len());
        for (g, id) in missing.into_iter().zip(found) {
            ids[g] = id;
            read.push((g, generations[g]));
        }
        Ok((ids, read))
    }

    /// [`Mode::Checked`]: one call of `usage_ingest_events` (migration 0006), so one round trip and
    /// its own transaction: the rollups' ids, then the events, skipping stored ids. Returns the ids
    /// inserted.
    pub(super) async fn ingest_checked(
        pool: &PgPool,
        plan: &Plan<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<HashSet<String>, sqlx::Error> {
        if let [(e, _)] = plan.events[..] {
            return ingest_one(pool, e, plan.groups[0].1, received_at).await;
        }
        let (tenants, days) = group_keys(plan);
        let buckets: Vec<i32> = tenants.iter().map(|t| bucket(t)).collect();
        let n = plan.events.len();
        let (mut ids, mut groups, mut types) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut quantities, mut occurred, mut metadata) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (e, group) in &plan.events {
            ids.push(e.event_id.as_str());
            groups.push(*group as i32);
            types.push(e.usage_type.as_str());
            quantities.push(e.quantity);
            occurred.push(e.occurred_at);
            metadata.push(e.metadata.as_deref());
        }
        let inserted: Vec<String> = sqlx::query_scalar(
            "SELECT usage_ingest_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&tenants)
        .bind(&days)
        .bind(&buckets)
        .bind(&ids)
        .bind(&groups)
        .bind(&types)
        .bind(&quantities)
        .bind(&occurred)
        .bind(&metadata)
        .bind(received_at)
        .fetch_one(pool)
        .await?;
        Ok(inserted.into_iter().collect())
    }

    /// [`ingest_checked`] of one event (`usage_ingest_event`, migration 0006), on `day`, its local day.
    async fn ingest_one(
        pool: &PgPool,
        e: &NewEvent,
        day: NaiveDate,
        received_at: DateTime<Utc>,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let inserted: Vec<String> =
            sqlx::query_scalar("SELECT usage_ingest_event($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(e.tenant_id.as_str())
                .bind(bucket(e.tenant_id.as_str()))
                .bind(day)
                .bind(&e.event_id)
                .bind(e.usage_type.as_str())
                .bind(e.quantity)
                .bind(e.occurred_at)
                .bind(e.metadata.as_deref())
                .bind(received_at)
                .fetch_one(pool)
                .await?;
        Ok(inserted.into_iter().collect())
    }

    /// Every event is new, so they go in as PostgreSQL's bulk load does (`COPY`, text format), in the
    /// plan's order; a stored id fails the primary key, and with it the transaction.
    async fn copy_events(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
        rollup_ids: &[i64],
        received_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // Written in place, without a string per value: this loop runs for every event of a batch.
        let mut received = Vec::with_capacity(27);
        copy_time(&mut received, received_at);
        let mut data = Vec::with_capacity(plan.events.len() * 160);
        for (e, g) in &plan.events {
            copy_text(&mut data, &e.event_id);
            data.push(b'\t');
            copy_text(&mut data, e.tenant_id.as_str());
            data.push(b'\t');
            data.extend_from_slice(e.usage_type.as_str().as_bytes());
            data.push(b'\t');
            write!(data, "{}", e.quantity).expect("writing to a Vec");
            data.push(b'\t');
            copy_time(&mut data, e.occurred_at);
            data.push(b'\t');
            data.extend_from_slice(&received);
            data.push(b'\t');
            write!(data, "{}", rollup_ids[*g]).expect("writing to a Vec");
            data.push(b'\t');
            match &e.metadata {
                Some(m) => copy_text(&mut data, m),
                None => data.extend_from_slice(b"\\N"),
            }
            data.push(b'\n');
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, \
                 rollup_id, metadata) FROM STDIN",
            )
            .await?;
        if let Err(e) = copy.send(data).await {
            // Ends the COPY so the connection is usable (the transaction rolls back either way).
            let _ = copy.abort("the data could not be sent").await;
            return Err(e);
        }
        copy.finish().await?;
        Ok(())
    }

    /// An instant as `COPY` reads a `timestamptz`: RFC 3339 in UTC, to the microsecond
    /// (`2026-10-05T14:30:00.000000Z`). Years are four digits: events are from 2000 on.
    fn copy_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
        use chrono::{Datelike, Timelike};
        let digits = |out: &mut Vec<u8>, n: u32, width: u32| {
            for i in (0..width).rev() {
                out.push(b'0' + (n / 10u32.pow(i) % 10) as u8);
            }
        };
        digits(out, t.year() as u32, 4);
        out.push(b'-');
        digits(out, t.month(), 2);
        out.push(b'-');
        digits(out, t.day(), 2);
        out.push(b'T');
        digits(out, t.hour(), 2);
        out.push(b':');
        digits(out, t.minute(), 2);
        out.push(b':');
        digits(out, t.second(), 2);
        out.push(b'.');
        // A leap second's nanoseconds run past 999,999,999; it is written as the last microsecond.
        digits(out, (t.nanosecond() / 1000).min(999_999), 6);
        out.push(b'Z');
    }

    /// A text value in `COPY`'s text format: backslash, tab, newline and carriage return escaped.
    fn copy_text(out: &mut Vec<u8>, s: &str) {
        let special = |b: &u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r');
        if !s.as_bytes().iter().any(special) {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        for b in s.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use chrono::TimeZone;

        #[test]
        fn copy_time_is_rfc3339_in_utc_to_the_microsecond() {
            let cases = [
                Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                Utc.timestamp_opt(1_790_000_000, 123_456_789).unwrap(),
                Utc.with_ymd_and_hms(2000, 12, 31, 23, 59, 59).unwrap(),
            ];
            for t in cases {
                let mut out = Vec::new();
                copy_time(&mut out, t);
                let expected = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                assert_eq!(String::from_utf8(out).unwrap(), expected);
            }
        }

        #[test]
        fn copy_text_escapes_what_copy_reads_specially() {
            let mut out = Vec::new();
            copy_text(&mut out, "plain");
            copy_text(&mut out, "a\\b\tc\nd\re");
            assert_eq!(out, b"plaina\\\\b\\tc\\nd\\re");
        }
    }
}

/// SQLite: multi-row `VALUES` in chunks (bound parameters stay well under SQLite's limit); the writer
/// lock is held from `BEGIN IMMEDIATE`, and each statement is an in-process call.
mod sqlite {
    use super::*;
    use sqlx::SqliteConnection;

    const EVENT_COLUMNS: usize = 8;
    const EVENTS_PER_STATEMENT: usize = 500;
    const GROUPS_PER_STATEMENT: usize = 500;

    /// `($1, $2), ($3, $4)` for `rows` rows of `cols` parameters.
    fn placeholders(rows: usize, cols: usize) -> String {
        let mut s = String::with_capacity(rows * cols * 6);
        for r in 0..rows {
            if r > 0 {
                s.push_str(", ");
            }
            s.push('(');
            for c in 0..cols {
                if c > 0 {
                    s.push_str(", ");
                }
                s.push('$');
                s.push_str(&(r * cols + c + 1).to_string());
            }
            s.push(')');
        }
        s
    }

    pub(super) async fn ingest(
        conn: &mut SqliteConnection,
        plan: &Plan<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<Inserted, sqlx::Error> {
        let mut returned = Vec::with_capacity(plan.groups.len());
        let groups: Vec<_> = plan.groups.iter().zip(&plan.sums).collect();
        for chunk in groups.chunks(GROUPS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO usage_rollups_folded
                     (tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count)
                 VALUES {} {UPSERT_CONFLICT}",
                placeholders(chunk.len(), 7)
            );
            let mut q = sqlx::query_as::<_, (i64, String, NaiveDate)>(&sql);
            for ((tenant, day), (totals, count)) in chunk {
                q = q
                    .bind(tenant.as_str())
                    .bind(*day)
                    .bind(0i16)
                    .bind(totals.stt_words)
                    .bind(totals.tts_words)
                    .bind(totals.calls)
                    .bind(*count);
            }
            returned.extend(q.fetch_all(&mut *conn).await?);
        }
        let ids = rollup_ids(plan, returned);

        let mut inserted = HashSet::with_capacity(plan.events.len());
        for chunk in plan.events.chunks(EVENTS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO usage_events
                     (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
                 VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                placeholders(chunk.len(), EVENT_COLUMNS)
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for (e, g) in chunk {
                q = q
                    .bind(e.event_id.as_str())
                    .bind(e.tenant_id.as_str())
                    .bind(e.usage_type.as_str())
                    .bind(e.quantity)
                    .bind(e.occurred_at)
                    .bind(received_at)
                    .bind(ids[*g])
                    .bind(e.metadata.as_deref());
            }
            inserted.extend(q.fetch_all(&mut *conn).await?);
        }

        let inserted = Inserted::Only(inserted);
        for (g, dup, n) in not_inserted(plan, &inserted) {
            // Takes duplicates back out of the rollup the upsert added them to.
            sqlx::query(
                "UPDATE usage_rollups_folded SET stt_words = stt_words - $2, tts_words = tts_words - $3,
                     phone_calls = phone_calls - $4, event_count = event_count - $5
                 WHERE id = $1",
            )
            .bind(ids[g])
            .bind(dup.stt_words)
            .bind(dup.tts_words)
            .bind(dup.calls)
            .bind(n)
            .execute(&mut *conn)
            .await?;
        }
        Ok(inserted)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn placeholders_number_rows_then_columns() {
            assert_eq!(super::placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
            assert_eq!(super::placeholders(1, 1), "($1)");
        }
    }
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
