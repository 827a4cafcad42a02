//! The PostgreSQL path of ingestion: each group's open rollup id (remembered, see
//! [`super::rollup_ids`], or read and created where missing by `usage_rollup_ids`), then the events by
//! `COPY` ([`Mode::Fresh`](super::Mode::Fresh)) or by the checked insert `usage_ingest_events`
//! ([`Mode::Checked`](super::Mode::Checked)).
//!
//! Each step is one call or one `COPY`, so a batch costs a few round trips whatever its size, and the
//! statements' text never changes (prepared once per connection).

use super::rollup_ids::{CREATING, ROLLUP_IDS, WANTED};
use super::{bucket, GroupKey, Plan};
use crate::usage::NewEvent;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashSet;
use std::io::Write;

/// The plan's group keys as one array each.
fn group_keys<'a>(plan: &'a Plan<'_>) -> (Vec<&'a str>, Vec<NaiveDate>) {
    plan.groups.iter().map(|(t, d)| (t.as_str(), *d)).unzip()
}

/// [`Mode::Fresh`](super::Mode::Fresh): in one transaction, the rollups' ids and the events by
/// `COPY`; a stored id fails the primary key, and with it the transaction.
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
async fn create_rollups(conn: &mut PgConnection, groups: Vec<GroupKey>) -> Result<(), sqlx::Error> {
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
    let held = distinct(&buckets);
    let held_generations: Vec<i64> = sqlx::query_scalar("SELECT usage_hold_buckets($1)")
        .bind(&held)
        .fetch_one(&mut *conn)
        .await?;
    let generations: Vec<i64> = buckets
        .iter()
        .map(|b| held_generations[held.binary_search(b).expect("a held bucket")])
        .collect();
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

/// Each bucket once, in order. A batch over many tenants and days has a group for nearly every event but
/// only 64 buckets: `usage_hold_buckets` looks up each element it is given (about 2 ms for a thousand
/// groups, against 0.2 ms for the buckets themselves).
fn distinct(buckets: &[i32]) -> Vec<i32> {
    let mut held = buckets.to_vec();
    held.sort_unstable();
    held.dedup();
    held
}

/// [`Mode::Checked`](super::Mode::Checked): one call of `usage_ingest_events` (migration 0006), so
/// one round trip and its own transaction: the rollups' ids, then the events, skipping stored ids.
/// Returns the ids inserted.
pub(super) async fn ingest_checked(
    pool: &PgPool,
    plan: &Plan<'_>,
    received_at: DateTime<Utc>,
) -> Result<HashSet<String>, sqlx::Error> {
    if let [(e, _)] = plan.events[..] {
        return ingest_one(pool, e, plan.groups[0].1, received_at).await;
    }
    let (tenants, days) = group_keys(plan);
    let buckets = distinct(&tenants.iter().map(|t| bucket(t)).collect::<Vec<_>>());
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
    let inserted: Vec<String> =
        sqlx::query_scalar("SELECT usage_ingest_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
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
    fn each_bucket_is_held_once_in_order() {
        assert_eq!(distinct(&[5, 3, 5, 63, 0, 3]), vec![0, 3, 5, 63]);
        assert!(distinct(&[]).is_empty());
    }

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut out = Vec::new();
        copy_text(&mut out, "plain");
        copy_text(&mut out, "a\\b\tc\nd\re");
        assert_eq!(out, b"plaina\\\\b\\tc\\nd\\re");
    }
}
