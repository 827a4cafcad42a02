//! Ingestion: a batch of validated events into `usage_events` and `usage_rollups`, exactly once.
//!
//! One write transaction per batch:
//! 1. group the batch by (tenant, local day, type), in key order so that every writer locks rollups in
//!    the same order and two batches never deadlock on them;
//! 2. upsert each group's open rollup of the transaction's shard (`billed_by IS NULL`, unique by the
//!    partial index; see [`super::shards`]), adding the group's quantity and count: this creates the
//!    bucket or locks it until commit, and gives its id;
//! 3. insert the events with that id. On PostgreSQL they first go in as if all were new (`COPY`); an id
//!    already stored fails the primary key and the transaction, and the batch is done again with
//!    `ON CONFLICT (event_id) DO NOTHING RETURNING event_id` (see [`Mode`]). What comes back is what is
//!    new, the rest are duplicates (of earlier batches, or of a concurrent one, whose commit the insert
//!    waits for);
//! 4. take the duplicates' quantities back out of their rollups (the rollups are still locked, so no one
//!    saw them counted); commit; only then answer. The rollups end up with exactly the new events.
//!
//! Adding first and correcting after costs one rollup write per batch in the usual case (no duplicates)
//! instead of two: rollups are the rows every writer of a tenant's day shares.
//!
//! An event naming an unknown tenant fails the rollup's foreign key, which rolls the batch back: the
//! caller checks tenants only then, so the common path spends no query on it.
//!
//! Because the monthly run claims a rollup by updating it, it waits for an ingest holding that rollup
//! (and vice versa): an event is either in a rollup before the claim, or lands in a new open bucket.

use super::shards::Shards;
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

/// The shards of this process's PostgreSQL ingests (SQLite writes one at a time, to shard 0).
static SHARDS: Shards = Shards::new();

/// A rollup bucket's key within a shard; ordered as the lock order.
type GroupKey = (String, NaiveDate, &'static str);

/// The batch, deduplicated and grouped: what the SQL of either engine needs.
struct Plan<'a> {
    /// Events with distinct ids, sorted by id (the order their inserts lock in), each with its group.
    events: Vec<(&'a NewEvent, usize)>,
    /// Group keys in lock order.
    groups: Vec<GroupKey>,
    /// Per group, the quantity and count of its events.
    sums: Vec<(i64, i64)>,
}

fn plan(batch: &[NewEvent], tz: Tz) -> Plan<'_> {
    let mut seen = HashSet::with_capacity(batch.len());
    let mut unique: Vec<&NewEvent> = batch
        .iter()
        .filter(|e| seen.insert(e.event_id.as_str()))
        .collect();
    unique.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    // Borrowed keys while grouping: one owned key per group, not per event.
    let keys: Vec<(&str, NaiveDate, &'static str)> = unique
        .iter()
        .map(|e| {
            (
                e.tenant_id.as_str(),
                e.occurred_at.with_timezone(&tz).date_naive(),
                e.usage_type.as_str(),
            )
        })
        .collect();
    let mut index: BTreeMap<(&str, NaiveDate, &'static str), usize> =
        keys.iter().map(|k| (*k, 0)).collect();
    for (i, slot) in index.values_mut().enumerate() {
        *slot = i;
    }
    let events: Vec<(&NewEvent, usize)> = unique
        .iter()
        .zip(&keys)
        .map(|(e, k)| (*e, index[k]))
        .collect();
    let mut sums = vec![(0i64, 0i64); index.len()];
    for (e, g) in &events {
        sums[*g].0 += e.quantity;
        sums[*g].1 += 1;
    }
    Plan {
        events,
        groups: index
            .into_keys()
            .map(|(t, d, u)| (t.to_owned(), d, u))
            .collect(),
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
            let shard = SHARDS.take().await;
            let mut mode = Mode::for_batch(plan.events.len());
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut tx = pool.begin().await?;
                let result = async {
                    let n =
                        postgres::ingest(&mut tx, &plan, shard.number(), mode, received_at).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(n)
                }
                .await;
                match result {
                    // A stored id: nothing was committed; again, skipping what is stored.
                    Err(e) if mode == Mode::Fresh && is_stored_event_id(&e) => {
                        mode = Mode::Checked;
                        attempt -= 1;
                        continue;
                    }
                    // Lock order makes deadlocks impossible among ingests; this is a safety net for
                    // anything else that locks rollups. Nothing was committed, so retrying is safe.
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
    /// `COPY`: every event is new, or the transaction fails.
    Fresh,
    /// `ON CONFLICT (event_id) DO NOTHING RETURNING event_id`: stored ids are skipped and reported.
    Checked,
}

impl Mode {
    /// A bulk load pays off from a few dozen events; below that, the round trip it adds costs more
    /// than it saves, and the checked insert is one statement.
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

/// Per group, the quantity and count of the events that were not inserted (duplicates).
fn not_inserted(plan: &Plan<'_>, inserted: &Inserted) -> Vec<(usize, i64, i64)> {
    let mut sums = vec![(0i64, 0i64); plan.groups.len()];
    for (e, g) in &plan.events {
        if !inserted.contains(&e.event_id) {
            sums[*g].0 += e.quantity;
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
fn rollup_ids(plan: &Plan<'_>, returned: Vec<(i64, String, NaiveDate, String)>) -> Vec<i64> {
    let index: HashMap<(&str, NaiveDate, &str), usize> = plan
        .groups
        .iter()
        .enumerate()
        .map(|(i, (t, d, u))| ((t.as_str(), *d, *u), i))
        .collect();
    let mut ids = vec![0i64; plan.groups.len()];
    for (id, tenant, day, usage_type) in returned {
        let i = index[&(tenant.as_str(), day, usage_type.as_str())];
        ids[i] = id;
    }
    debug_assert!(ids.iter().all(|id| *id != 0), "every group has its rollup");
    ids
}

const UPSERT_CONFLICT: &str =
    "ON CONFLICT (tenant_id, day, usage_type, shard) WHERE billed_by IS NULL \
     DO UPDATE SET quantity = usage_rollups.quantity + EXCLUDED.quantity, \
                   event_count = usage_rollups.event_count + EXCLUDED.event_count \
     RETURNING id, tenant_id, day, usage_type";

/// PostgreSQL: each step is one statement over arrays (`UNNEST`) or one `COPY`, so a batch costs a few
/// round trips whatever its size, and the statements' text never changes (prepared once per
/// connection).
mod postgres {
    use super::*;
    use sqlx::{PgConnection, Row};

    pub(super) async fn ingest(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
        shard: i16,
        mode: Mode,
        received_at: DateTime<Utc>,
    ) -> Result<Inserted, sqlx::Error> {
        let tenants: Vec<&str> = plan.groups.iter().map(|g| g.0.as_str()).collect();
        let days: Vec<NaiveDate> = plan.groups.iter().map(|g| g.1).collect();
        let types: Vec<&str> = plan.groups.iter().map(|g| g.2).collect();
        let quantities: Vec<i64> = plan.sums.iter().map(|s| s.0).collect();
        let counts: Vec<i64> = plan.sums.iter().map(|s| s.1).collect();
        // WITH ORDINALITY + ORDER BY: rows are inserted, and so locked, in the plan's key order.
        let rows = sqlx::query(&format!(
            "INSERT INTO usage_rollups (tenant_id, day, usage_type, shard, quantity, event_count)
             SELECT k.tenant_id, k.day, k.usage_type, $6, k.quantity, k.event_count
             FROM UNNEST($1::text[], $2::date[], $3::text[], $4::int8[], $5::int8[]) WITH ORDINALITY
                  AS k(tenant_id, day, usage_type, quantity, event_count, ord)
             ORDER BY k.ord
             {UPSERT_CONFLICT}"
        ))
        .bind(&tenants)
        .bind(&days)
        .bind(&types)
        .bind(&quantities)
        .bind(&counts)
        .bind(shard)
        .fetch_all(&mut *conn)
        .await?;
        let returned = rows
            .iter()
            .map(|r| {
                (
                    r.get("id"),
                    r.get("tenant_id"),
                    r.get("day"),
                    r.get("usage_type"),
                )
            })
            .collect();
        let ids = rollup_ids(plan, returned);

        let inserted = match mode {
            Mode::Fresh => {
                copy_events(conn, plan, &ids, received_at).await?;
                Inserted::All(plan.events.len())
            }
            Mode::Checked => {
                Inserted::Only(insert_new_events(conn, plan, &ids, received_at).await?)
            }
        };

        let dups = not_inserted(plan, &inserted);
        if !dups.is_empty() {
            let rollup: Vec<i64> = dups.iter().map(|(g, _, _)| ids[*g]).collect();
            let q: Vec<i64> = dups.iter().map(|(_, q, _)| *q).collect();
            let n: Vec<i64> = dups.iter().map(|(_, _, n)| *n).collect();
            sqlx::query(
                "UPDATE usage_rollups r SET quantity = r.quantity - d.q, event_count = r.event_count - d.n
                 FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS d(id, q, n)
                 WHERE r.id = d.id",
            )
            .bind(&rollup)
            .bind(&q)
            .bind(&n)
            .execute(&mut *conn)
            .await?;
        }
        Ok(inserted)
    }

    /// `Fresh`: every event is new, so they go in as PostgreSQL's bulk load does (`COPY`, text
    /// format), in the plan's order; a stored id fails the primary key, and with it the transaction.
    async fn copy_events(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
        rollup_ids: &[i64],
        received_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let received = copy_time(received_at);
        let mut data = Vec::with_capacity(plan.events.len() * 160);
        for (e, g) in &plan.events {
            copy_text(&mut data, &e.event_id);
            data.push(b'\t');
            copy_text(&mut data, e.tenant_id.as_str());
            data.push(b'\t');
            data.extend_from_slice(e.usage_type.as_str().as_bytes());
            data.push(b'\t');
            data.extend_from_slice(e.quantity.to_string().as_bytes());
            data.push(b'\t');
            data.extend_from_slice(copy_time(e.occurred_at).as_bytes());
            data.push(b'\t');
            data.extend_from_slice(received.as_bytes());
            data.push(b'\t');
            data.extend_from_slice(rollup_ids[*g].to_string().as_bytes());
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

    /// `Checked`: inserts the events whose id is not stored yet; returns their ids.
    async fn insert_new_events(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
        rollup_ids: &[i64],
        received_at: DateTime<Utc>,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let n = plan.events.len();
        let (mut event_ids, mut tenant_ids, mut usage_types) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut quantities, mut occurred, mut rollups, mut metadata) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (e, g) in &plan.events {
            event_ids.push(e.event_id.as_str());
            tenant_ids.push(e.tenant_id.as_str());
            usage_types.push(e.usage_type.as_str());
            quantities.push(e.quantity);
            occurred.push(e.occurred_at);
            rollups.push(rollup_ids[*g]);
            metadata.push(e.metadata.as_deref());
        }
        // WITH ORDINALITY + ORDER BY: rows are inserted, and so locked, in the plan's order.
        let rows = sqlx::query(
            "INSERT INTO usage_events
                 (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
             SELECT e.event_id, e.tenant_id, e.usage_type, e.quantity, e.occurred_at, $6, e.rollup_id, e.metadata
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::timestamptz[], $7::int8[], $8::text[])
                  WITH ORDINALITY AS e(event_id, tenant_id, usage_type, quantity, occurred_at, rollup_id, metadata, ord)
             ORDER BY e.ord
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        )
        .bind(&event_ids)
        .bind(&tenant_ids)
        .bind(&usage_types)
        .bind(&quantities)
        .bind(&occurred)
        .bind(received_at)
        .bind(&rollups)
        .bind(&metadata)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// An instant as `COPY` reads a `timestamptz`: RFC 3339 in UTC, to the microsecond.
    fn copy_time(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// A text value in `COPY`'s text format: backslash, tab, newline and carriage return escaped.
    fn copy_text(out: &mut Vec<u8>, s: &str) {
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
}

/// SQLite: multi-row `VALUES` in chunks (bound parameters stay well under SQLite's limit); the writer
/// lock is held from `BEGIN IMMEDIATE`, and each statement is an in-process call.
mod sqlite {
    use super::*;
    use sqlx::{Row, SqliteConnection};

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
                "INSERT INTO usage_rollups (tenant_id, day, usage_type, shard, quantity, event_count)
                 VALUES {} {UPSERT_CONFLICT}",
                placeholders(chunk.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for ((tenant, day, usage_type), (quantity, count)) in chunk {
                q = q
                    .bind(tenant.as_str())
                    .bind(*day)
                    .bind(*usage_type)
                    .bind(0i16)
                    .bind(*quantity)
                    .bind(*count);
            }
            for r in q.fetch_all(&mut *conn).await? {
                returned.push((
                    r.get("id"),
                    r.get("tenant_id"),
                    r.get("day"),
                    r.get("usage_type"),
                ));
            }
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
        for (g, q, n) in not_inserted(plan, &inserted) {
            // Takes duplicates back out of the rollup the upsert added them to.
            sqlx::query(
                "UPDATE usage_rollups SET quantity = quantity - $2, event_count = event_count - $3
                 WHERE id = $1",
            )
            .bind(ids[g])
            .bind(q)
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

    #[test]
    fn plan_dedupes_sorts_and_groups_by_local_day() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        let batch = vec![
            event("b", "t2", UsageType::SttWords, at),
            event("a", "t1", UsageType::TtsWords, at),
            event("b", "t2", UsageType::SttWords, at),
            event("c", "t1", UsageType::PhoneCalls, at),
        ];
        let p = plan(&batch, chrono_tz::America::New_York);
        let ids: Vec<&str> = p.events.iter().map(|(e, _)| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let day = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        assert_eq!(
            p.groups,
            vec![
                ("t1".to_owned(), day, "phone_calls"),
                ("t1".to_owned(), day, "tts_words"),
                ("t2".to_owned(), day, "stt_words"),
            ]
        );
        assert_eq!(p.events[0].1, 1);
        assert_eq!(p.events[2].1, 0);
    }
}
