//! What is billable and not yet billed, and the monthly run's claim on it.
//!
//! A rollup (tenant, local day; a column per type) is *open* until a run claims it by setting `billed_by`. Usage is
//! free when it occurred inside a tenant's demo interval or inside one of its subscriptions' own trials,
//! `[trial_start, trial_end)`. A day wholly inside free time counts zero, a day wholly outside counts its rollup, and
//! only a day that straddles a boundary reads its raw events: reads stay O(days), not O(events).

use super::add_to;
use super::rating::UsageTotals;
use crate::db::Db;
use crate::domain::{local_midnight, time, BillingPeriod, TenantId};
use crate::with_pool;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;

/// Usage totals by the billing period they belong to.
pub type ByPeriod = BTreeMap<BillingPeriod, UsageTotals>;

/// The instants during which a tenant's usage is free, merged into disjoint half-open intervals
/// `[start, end)`; `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FreeIntervals(Vec<Span>);

/// `[start, end)`; `None` is unbounded on that side.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// How a local day relates to a tenant's free time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayCoverage {
    /// All of the day is free.
    Free,
    /// None of the day is free.
    Billable,
    /// A free interval starts or ends inside the day: its events decide one by one.
    Partial,
}

impl FreeIntervals {
    /// Builds the set from demo intervals (an open end: still a demo) and subscriptions' trials. A trial
    /// frees only its own window: usage from before it (after a cancellation, or before a first
    /// subscription) stays billable however long a later trial is.
    pub fn new(
        demo: impl IntoIterator<Item = (DateTime<Utc>, Option<DateTime<Utc>>)>,
        trials: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>)>,
    ) -> FreeIntervals {
        let mut spans: Vec<Span> = demo
            .into_iter()
            .chain(trials.into_iter().map(|(s, e)| (s, Some(e))))
            .filter(|(s, e)| e.is_none_or(|e| e > *s))
            .map(|(s, e)| (Some(s), e))
            .collect();
        // None (unbounded) sorts first as a start, which is what it means.
        spans.sort_by_key(|s| s.0);
        let mut merged: Vec<Span> = Vec::new();
        for (s, e) in spans {
            match merged.last_mut() {
                // Overlapping or touching: extend (an open end swallows everything after it).
                Some(last) if last.1.is_none_or(|le| s.is_none_or(|s| s <= le)) => {
                    last.1 = match (last.1, e) {
                        (None, _) | (_, None) => None,
                        (Some(a), Some(b)) => Some(a.max(b)),
                    };
                }
                _ => merged.push((s, e)),
            }
        }
        FreeIntervals(merged)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether usage at instant `t` is free.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.0
            .iter()
            .any(|(s, e)| s.is_none_or(|s| s <= t) && e.is_none_or(|e| t < e))
    }

    /// How the local day `day` in `tz` relates to the free time.
    pub fn coverage(&self, day: NaiveDate, tz: Tz) -> DayCoverage {
        if self.0.is_empty() {
            return DayCoverage::Billable;
        }
        let start = local_midnight(day, tz);
        let end = local_midnight(day.succ_opt().expect("a next day"), tz);
        for (s, e) in &self.0 {
            let starts_before = s.is_none_or(|s| s <= start);
            let ends_after = e.is_none_or(|e| e >= end);
            if starts_before && ends_after {
                return DayCoverage::Free;
            }
            let overlaps = s.is_none_or(|s| s < end) && e.is_none_or(|e| e > start);
            if overlaps {
                return DayCoverage::Partial;
            }
        }
        DayCoverage::Billable
    }
}

/// One rollup as billing reads it.
#[derive(Debug, Clone)]
struct Rollup {
    id: i64,
    day: NaiveDate,
    totals: UsageTotals,
}

/// Sums rollups' billable totals by period, leaving out periods with nothing billable.
fn by_period(rows: impl IntoIterator<Item = (NaiveDate, UsageTotals)>) -> ByPeriod {
    let mut out = ByPeriod::new();
    for (day, totals) in rows {
        if !totals.is_empty() {
            *out.entry(BillingPeriod::of_day(day)).or_default() += totals;
        }
    }
    out.retain(|_, t| !t.is_empty());
    out
}

/// The voice words each claim took of the tenant's usage in `period` (a claim by its key), for the
/// ledger to count what other invoices billed.
pub async fn billed_words_by_claim(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT billed_by, CAST(COALESCE(SUM(COALESCE(billed_stt_words, 0)
                    + COALESCE(billed_tts_words, 0)), 0) AS BIGINT)
             FROM usage_rollups_folded
             WHERE tenant_id = $1 AND day >= $2 AND day < $3 AND billed_by IS NOT NULL
             GROUP BY billed_by",
        )
        .bind(tenant)
        .bind(period.first_day())
        .bind(period.end_day())
        .fetch_all(pool)
        .await
    })
}

/// The same queries for both engines, over one connection (a pooled one, or a transaction's).
macro_rules! queries {
    ($module:ident, $conn:ty, open_sql: $open_sql:expr, claim_sql: $claim_sql:expr,
     events_sql: $events_sql:expr, set_billed: $set_billed:path) => {
        mod $module {
            use super::*;
            use sqlx::Row;

            pub(super) async fn free_intervals(
                conn: &mut $conn,
                tenant: &str,
            ) -> Result<FreeIntervals, sqlx::Error> {
                // Demo periods and trials, each read from the table's owner on this connection.
                use crate::db::{spans, subscriptions::TRIAL_SPANS, tenants::DEMO_SPANS};
                let mut free = spans(&mut *conn, DEMO_SPANS, tenant).await?;
                free.extend(spans(&mut *conn, TRIAL_SPANS, tenant).await?);
                Ok(FreeIntervals::new(free, []))
            }

            pub(super) async fn open_rollups(
                conn: &mut $conn,
                tenant: &str,
                before_day: NaiveDate,
            ) -> Result<Vec<Rollup>, sqlx::Error> {
                let rows = sqlx::query($open_sql)
                .bind(tenant)
                .bind(before_day)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows.iter().map(rollup).collect())
            }

            /// Claims every open rollup before `before_day`, with its billed quantities provisionally
            /// the whole quantities; returns the claimed rows.
            pub(super) async fn claim(
                conn: &mut $conn,
                tenant: &str,
                before_day: NaiveDate,
                key: &str,
                at: DateTime<Utc>,
            ) -> Result<Vec<Rollup>, sqlx::Error> {
                let rows = sqlx::query($claim_sql)
                    .bind(tenant)
                    .bind(before_day)
                    .bind(key)
                    .bind(at)
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(rows.iter().map(rollup).collect())
            }

            pub(super) async fn claimed_by(
                conn: &mut $conn,
                tenant: &str,
                key: &str,
            ) -> Result<Vec<(NaiveDate, UsageTotals)>, sqlx::Error> {
                let rows = sqlx::query(
                    "SELECT day, billed_stt_words, billed_tts_words, billed_phone_calls
                     FROM usage_rollups_folded WHERE tenant_id = $1 AND billed_by = $2",
                )
                .bind(tenant)
                .bind(key)
                .fetch_all(&mut *conn)
                .await?;
                rows.iter()
                    .map(|r| {
                        let billed = |column| {
                            r.try_get::<Option<i64>, _>(column).map(|q| q.unwrap_or(0))
                        };
                        Ok((
                            r.try_get("day")?,
                            UsageTotals {
                                stt_words: billed("billed_stt_words")?,
                                tts_words: billed("billed_tts_words")?,
                                calls: billed("billed_phone_calls")?,
                            },
                        ))
                    })
                    .collect()
            }

            /// The rollup's totals that are billable: all of them, none, or for a day that straddles
            /// free time, the sums of its events that occurred outside free time.
            pub(super) async fn billable_totals(
                conn: &mut $conn,
                r: &Rollup,
                free: &FreeIntervals,
                tz: Tz,
            ) -> Result<UsageTotals, sqlx::Error> {
                Ok(match free.coverage(r.day, tz) {
                    DayCoverage::Billable => r.totals,
                    DayCoverage::Free => UsageTotals::default(),
                    DayCoverage::Partial => {
                        // Its events, and those of the rollups merged into it.
                        let rows = sqlx::query($events_sql)
                        .bind(r.id)
                        .fetch_all(&mut *conn)
                        .await?;
                        let mut totals = UsageTotals::default();
                        for row in rows {
                            let at: DateTime<Utc> = row.try_get("occurred_at")?;
                            if !free.contains(at) {
                                let usage_type: String = row.try_get("usage_type")?;
                                let quantity: i64 = row.try_get("quantity")?;
                                add_to(&mut totals, &usage_type, quantity);
                            }
                        }
                        totals
                    }
                })
            }

            fn rollup<R: Row>(row: &R) -> Rollup
            where
                for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> NaiveDate: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> &'r str: sqlx::ColumnIndex<R>,
            {
                Rollup {
                    id: row.get("id"),
                    day: row.get("day"),
                    totals: UsageTotals {
                        stt_words: row.get("stt_words"),
                        tts_words: row.get("tts_words"),
                        calls: row.get("phone_calls"),
                    },
                }
            }

            pub(super) async fn unbilled(
                conn: &mut $conn,
                tenant: &str,
                before_day: NaiveDate,
                tz: Tz,
            ) -> Result<ByPeriod, sqlx::Error> {
                let free = free_intervals(conn, tenant).await?;
                let rollups = open_rollups(conn, tenant, before_day).await?;
                let mut rows = Vec::with_capacity(rollups.len());
                for r in rollups {
                    rows.push((r.day, billable_totals(conn, &r, &free, tz).await?));
                }
                Ok(by_period(rows))
            }

            pub(super) async fn claim_unbilled(
                conn: &mut $conn,
                tenant: &str,
                before_day: NaiveDate,
                tz: Tz,
                key: &str,
            ) -> Result<ByPeriod, sqlx::Error> {
                let at = time::now();
                // Record the key first: a concurrent claim with the same key waits here for this one
                // to commit, then finds the key taken and returns what this one claimed.
                let first: Option<String> = sqlx::query_scalar(
                    "INSERT INTO usage_claims (tenant_id, billed_by, claimed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, billed_by) DO NOTHING RETURNING billed_by",
                )
                .bind(tenant)
                .bind(key)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?;
                if first.is_none() {
                    return Ok(by_period(claimed_by(conn, tenant, key).await?));
                }
                let claimed = claim(conn, tenant, before_day, key, at).await?;
                // Read after the claim holds its rollups: every event committed into them is seen.
                let free = free_intervals(conn, tenant).await?;
                let mut rows = Vec::with_capacity(claimed.len());
                let mut changed = Vec::new();
                for r in claimed {
                    let billable = billable_totals(conn, &r, &free, tz).await?;
                    if billable != r.totals {
                        changed.push((r.id, billable));
                    }
                    rows.push((r.day, billable));
                }
                $set_billed(conn, &changed).await?;
                Ok(by_period(rows))
            }
        }
    };
}

// PostgreSQL: the tenant's rollups as they are now, the folded sums plus the tenant's own tail
// (`usage_tenant_rollups`, migration 0010: index-driven whatever the statistics). The claim
// (`usage_claim_rollups`) locks the open rollups in (day, shard) order, the order merges lock them in,
// and bills them as they are now. A day that straddles free time reads its events through
// `usage_rollup_events` (migration 0013), whose plan does not depend on statistics either. Called with the tenant's bucket held (no ingest in flight adds to
// these rollups) and the fold's mark held (no fold moves events from the tail into the sums meanwhile).
queries!(
    pg,
    sqlx::PgConnection,
    open_sql: "SELECT id, day, stt_words, tts_words, phone_calls
               FROM usage_tenant_rollups($1, '-infinity', $2, TRUE)",
    claim_sql: "SELECT id, day, stt_words, tts_words, phone_calls FROM usage_claim_rollups($1, $2, $3, $4)",
    events_sql: "SELECT occurred_at, usage_type, quantity FROM usage_rollup_events($1)",
    set_billed: set_billed_pg
);
// SQLite: the write transaction already excludes every other writer, and the rollups hold every event.
queries!(
    lite,
    sqlx::SqliteConnection,
    open_sql: "SELECT id, day, stt_words, tts_words, phone_calls FROM usage_rollups
               WHERE tenant_id = $1 AND billed_by IS NULL AND day < $2",
    claim_sql: "UPDATE usage_rollups_folded SET billed_by = $3, billed_at = $4, billed_stt_words = stt_words,
         billed_tts_words = tts_words, billed_phone_calls = phone_calls
     WHERE tenant_id = $1 AND day < $2 AND billed_by IS NULL
     RETURNING id, day, stt_words, tts_words, phone_calls",
    events_sql: "SELECT occurred_at, usage_type, quantity FROM usage_events WHERE rollup_id = $1
                 UNION ALL
                 SELECT e.occurred_at, e.usage_type, e.quantity
                 FROM usage_rollup_merges m JOIN usage_events e ON e.rollup_id = m.merged_id
                 WHERE m.into_id = $1",
    set_billed: set_billed_lite
);

/// Records what a claim bills of each rollup whose billable totals are not its whole quantities (days
/// in or straddling free time): one statement for all of them (a tenant in trial all month has thirty).
async fn set_billed_pg(
    conn: &mut sqlx::PgConnection,
    billed: &[(i64, UsageTotals)],
) -> Result<(), sqlx::Error> {
    if billed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = billed.iter().map(|(id, _)| *id).collect();
    let column =
        |f: fn(&UsageTotals) -> i64| -> Vec<i64> { billed.iter().map(|(_, t)| f(t)).collect() };
    // `id = ANY` is answered by the primary key whatever the statistics; each row finds its values by
    // its id's position (a claim has at most a few dozen).
    sqlx::query(
        "UPDATE usage_rollups_folded r
         SET billed_stt_words = ($2::int8[])[array_position($1::int8[], r.id)],
             billed_tts_words = ($3::int8[])[array_position($1::int8[], r.id)],
             billed_phone_calls = ($4::int8[])[array_position($1::int8[], r.id)]
         WHERE r.id = ANY ($1::int8[])",
    )
    .bind(&ids)
    .bind(column(|t| t.stt_words))
    .bind(column(|t| t.tts_words))
    .bind(column(|t| t.calls))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The same on SQLite, a statement per rollup (in the process: no round trips to save).
async fn set_billed_lite(
    conn: &mut sqlx::SqliteConnection,
    billed: &[(i64, UsageTotals)],
) -> Result<(), sqlx::Error> {
    for (id, totals) in billed {
        sqlx::query(
            "UPDATE usage_rollups_folded SET billed_stt_words = $2, billed_tts_words = $3,
                 billed_phone_calls = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(totals.stt_words)
        .bind(totals.tts_words)
        .bind(totals.calls)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// PostgreSQL: what a claim or a merge of a tenant's rollups holds until it commits, each statement
/// given the tenant's bucket ([`super::ingest::bucket`]) as `$1`. The bucket, exclusively: ingests of its
/// tenants wait (and those in flight are waited for), so no event is being added to a rollup that is
/// claimed or merged away; its generation moves on, so that no ingest uses a rollup id it read before.
/// Then the fold's mark, shared: no fold moves events from the tail into the sums while they are read and
/// updated.
pub(crate) const HOLD_ROLLUPS: [&str; 3] = [
    "SELECT pg_advisory_xact_lock(7301, $1)",
    "UPDATE usage_rollup_buckets SET generation = generation + 1 WHERE bucket = $1",
    "SELECT 1 FROM usage_fold WHERE $1::int4 IS NOT NULL FOR SHARE",
];

async fn hold_rollups(conn: &mut sqlx::PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
    for sql in HOLD_ROLLUPS {
        sqlx::query(sql)
            .bind(super::ingest::bucket(tenant))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn day_of(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// Billable usage in open rollups of local days before the day of `before`, by period.
///
/// For the period P's run, `before` is P's end; the dashboard passes the current period's end.
pub async fn unbilled(
    db: &Db,
    tenant: &TenantId,
    before: DateTime<Utc>,
    tz: Tz,
) -> Result<ByPeriod, sqlx::Error> {
    let day = day_of(before, tz);
    match db {
        Db::Postgres(pool) => {
            pg::unbilled(&mut *pool.acquire().await?, tenant.as_str(), day, tz).await
        }
        Db::Sqlite(pool) => {
            lite::unbilled(&mut *pool.acquire().await?, tenant.as_str(), day, tz).await
        }
    }
}

/// The monthly run's claim: marks every open rollup of `tenant` before the day of `before` as billed by
/// `billed_by` and returns their billable totals by period, in one transaction.
///
/// Idempotent by `billed_by` (recorded in `usage_claims`): calling again with the same key returns the
/// same totals and claims nothing more, even if the first claim found nothing; usage that arrived since
/// waits, in new open buckets, for the next key.
pub async fn claim_unbilled(
    db: &Db,
    tenant: &TenantId,
    before: DateTime<Utc>,
    tz: Tz,
    billed_by: &str,
) -> Result<ByPeriod, sqlx::Error> {
    let day = day_of(before, tz);
    let t = tenant.as_str();
    // BEGIN IMMEDIATE on SQLite, as `begin_write!` does: the claim is a writer from its first read.
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            hold_rollups(&mut tx, t).await?;
            let totals = pg::claim_unbilled(&mut tx, t, day, tz, billed_by).await?;
            tx.commit().await?;
            Ok(totals)
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let totals = lite::claim_unbilled(&mut tx, t, day, tz, billed_by).await?;
            tx.commit().await?;
            Ok(totals)
        }
    }
}

/// The sums of a tenant's rollups of a period, `$1` the tenant, `$2` and `$3` the period's days.
macro_rules! recorded_sql {
    ($from:literal) => {
        concat!(
            "SELECT CAST(COALESCE(SUM(stt_words), 0) AS BIGINT),
                    CAST(COALESCE(SUM(tts_words), 0) AS BIGINT),
                    CAST(COALESCE(SUM(phone_calls), 0) AS BIGINT) ",
            $from
        )
    };
}
const RECORDED_PG: &str = recorded_sql!("FROM usage_tenant_rollups($1, $2, $3, FALSE)");
const RECORDED_LITE: &str =
    recorded_sql!("FROM usage_rollups WHERE tenant_id = $1 AND day >= $2 AND day < $3");

/// All usage recorded for `tenant` in `period`, billed or not, free or not (the dashboard's
/// `current_period_usage`), from the rollups.
pub async fn recorded(
    db: &Db,
    tenant: &TenantId,
    period: BillingPeriod,
) -> Result<UsageTotals, sqlx::Error> {
    // PostgreSQL: the tenant's rollups with its own tail (`usage_tenant_rollups`, migration 0010).
    let sql = match db {
        Db::Postgres(_) => RECORDED_PG,
        Db::Sqlite(_) => RECORDED_LITE,
    };
    let (stt_words, tts_words, calls): (i64, i64, i64) = crate::with_pool!(db, pool => {
        sqlx::query_as(sql)
            .bind(tenant.as_str())
            .bind(period.first_day())
            .bind(period.end_day())
            .fetch_one(pool)
            .await
    })?;
    Ok(UsageTotals {
        stt_words,
        tts_words,
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, d, h, 0, 0).unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, d).unwrap()
    }

    #[test]
    fn a_trial_frees_only_its_own_window() {
        let f = FreeIntervals::new([], [(t(3, 12), t(10, 12))]);
        assert!(!f.contains(t(1, 0)), "before the trial: billable");
        assert!(!f.contains(t(3, 11)));
        assert!(f.contains(t(3, 12)));
        assert!(f.contains(t(10, 11)));
        assert!(!f.contains(t(10, 12)));
        assert_eq!(f.coverage(day(2), chrono_tz::UTC), DayCoverage::Billable);
        assert_eq!(f.coverage(day(3), chrono_tz::UTC), DayCoverage::Partial);
        assert_eq!(f.coverage(day(9), chrono_tz::UTC), DayCoverage::Free);
        assert_eq!(f.coverage(day(10), chrono_tz::UTC), DayCoverage::Partial);
        assert_eq!(f.coverage(day(11), chrono_tz::UTC), DayCoverage::Billable);
        // A second subscription's trial does not reach back over the gap between them.
        let two = FreeIntervals::new([], [(t(1, 0), t(5, 0)), (t(20, 0), t(25, 0))]);
        assert!(!two.contains(t(10, 0)));
        assert!(two.contains(t(21, 0)));
    }

    #[test]
    fn demo_intervals_merge_and_open_ends_run_forever() {
        let f = FreeIntervals::new([(t(3, 0), Some(t(5, 0))), (t(5, 0), Some(t(6, 12)))], []);
        assert_eq!(f.0.len(), 1, "touching intervals merge");
        assert_eq!(f.coverage(day(4), chrono_tz::UTC), DayCoverage::Free);
        assert_eq!(f.coverage(day(5), chrono_tz::UTC), DayCoverage::Free);
        assert_eq!(f.coverage(day(6), chrono_tz::UTC), DayCoverage::Partial);
        assert_eq!(f.coverage(day(2), chrono_tz::UTC), DayCoverage::Billable);
        let open = FreeIntervals::new([(t(20, 0), None)], [(t(1, 0), t(2, 0))]);
        assert!(open.contains(t(31, 23)));
        assert!(!open.contains(t(15, 0)));
        assert!(open.contains(t(1, 0)));
        assert_eq!(open.coverage(day(25), chrono_tz::UTC), DayCoverage::Free);
        // A zero-length demo interval frees nothing.
        assert!(FreeIntervals::new([(t(3, 0), Some(t(3, 0)))], []).is_empty());
    }

    #[test]
    fn coverage_uses_local_days() {
        // Trial ends at 03:00 UTC on Oct 10 = 23:00 on Oct 9 in New York: Oct 9 local is partial.
        let f = FreeIntervals::new([], [(t(1, 0), t(10, 3))]);
        let ny = chrono_tz::America::New_York;
        assert_eq!(f.coverage(day(9), ny), DayCoverage::Partial);
        assert_eq!(f.coverage(day(10), ny), DayCoverage::Billable);
        assert_eq!(f.coverage(day(9), chrono_tz::UTC), DayCoverage::Free);
    }
}
