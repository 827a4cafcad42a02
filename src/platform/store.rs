//! The follower's own tables in our database (migration 0009): its position, its lease, the rows it holds
//! back and the organizations it has seen. Every change of position is one transaction with the counters
//! and the held rows it concerns, made only by the lease's holder: after a crash at any point the state is
//! the one before or after a step, and the step is done again (ingestion is idempotent by event id).

use super::mapping::{Hold, HoldReason, UsageRow};
use super::source::Key;
use crate::db::Db;
use crate::domain::time::now;
use crate::{begin_write, with_pool};
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use std::collections::HashMap;

/// The follower's row.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowState {
    pub cursor: Key,
    /// The earliest `created_at` the follower (or an import) started from.
    pub started_at: DateTime<Utc>,
    /// The platform's snapshot of the last re-read and the key it covered.
    pub recheck: Option<(String, Key)>,
    pub rows_taken: i64,
    pub rows_late: i64,
    pub rows_released: i64,
    pub rows_not_billed: i64,
    /// Rows found by the sweep and stored (committed too late for the re-read).
    pub rows_swept: i64,
    pub sweep: SweepState,
    /// The platform's clock at the last read of its organizations after which every change was applied.
    pub tenants_read_at: Option<DateTime<Utc>>,
    pub holder: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_read_at: Option<DateTime<Utc>>,
    pub last_error: Option<(String, DateTime<Utc>)>,
    pub updated_at: DateTime<Utc>,
}

impl FollowState {
    /// Rows of `usage_records` whose usage is stored here: taken at the cursor, found late by the re-read
    /// or by the sweep, released.
    pub fn rows_ingested(&self) -> i64 {
        self.rows_taken + self.rows_late + self.rows_swept + self.rows_released
    }
}

/// The sweep (see `follow`): what it compares with, and the pass in progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepState {
    /// The platform's snapshot the next pass takes the rows it could not see from (the start of the
    /// previous pass, or of the first read), and when it was taken (our clock).
    pub since: Option<(String, DateTime<Utc>)>,
    pub pass: Option<SweepPass>,
    /// Rows scanned by the pass in progress, or by the last one.
    pub scanned: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
}

/// A sweep in progress: its starting snapshot, how far it has read, where it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPass {
    pub snapshot: String,
    pub at: Key,
    pub through: Key,
}

/// A held row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldRow {
    pub record_id: String,
    pub tenant_id: String,
    pub usage_type: String,
    pub amount: String,
    pub created_at: DateTime<Utc>,
    pub reason: HoldReason,
    pub detail: String,
    pub held_at: DateTime<Utc>,
}

impl HeldRow {
    pub fn new(row: &UsageRow, hold: Hold) -> HeldRow {
        HeldRow {
            record_id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            usage_type: row.usage_type.clone(),
            amount: row.amount.clone(),
            created_at: row.created_at,
            reason: hold.reason,
            detail: hold.detail,
            held_at: now(),
        }
    }
}

/// What one step read and did, to be recorded with the position it reached.
#[derive(Debug, Default)]
pub struct Step {
    /// Rows whose events were stored (new or already there).
    pub taken: i64,
    pub not_billed: i64,
    pub held: Vec<HeldRow>,
}

/// The row, if the follower has ever started.
pub async fn load(db: &Db) -> Result<Option<FollowState>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "SELECT cursor_at, cursor_id, started_at, recheck_snapshot, recheck_at, recheck_id, rows_taken,
                    rows_late, rows_released, rows_not_billed, rows_swept, sweep_snapshot, sweep_snapshot_at,
                    sweep_pass_snapshot, sweep_pos_at, sweep_pos_id, sweep_through_at, sweep_through_id,
                    sweep_scanned, sweep_started_at, sweep_done_at, tenants_read_at, holder, lease_until,
                    last_read_at, last_error, last_error_at, updated_at
             FROM platform_follow WHERE id = 1",
        )
        .fetch_optional(pool)
        .await
        .map(|row| row.map(|r| FollowState {
            cursor: Key { at: r.get("cursor_at"), id: r.get("cursor_id") },
            started_at: r.get("started_at"),
            recheck: match (r.get::<Option<String>, _>("recheck_snapshot"),
                            r.get::<Option<DateTime<Utc>>, _>("recheck_at"),
                            r.get::<Option<String>, _>("recheck_id")) {
                (Some(s), Some(at), Some(id)) => Some((s, Key { at, id })),
                _ => None,
            },
            rows_taken: r.get("rows_taken"),
            rows_late: r.get("rows_late"),
            rows_released: r.get("rows_released"),
            rows_not_billed: r.get("rows_not_billed"),
            rows_swept: r.get("rows_swept"),
            sweep: SweepState {
                since: match (r.get::<Option<String>, _>("sweep_snapshot"),
                              r.get::<Option<DateTime<Utc>>, _>("sweep_snapshot_at")) {
                    (Some(s), Some(at)) => Some((s, at)),
                    _ => None,
                },
                pass: match (r.get::<Option<String>, _>("sweep_pass_snapshot"),
                             r.get::<Option<DateTime<Utc>>, _>("sweep_pos_at"),
                             r.get::<Option<String>, _>("sweep_pos_id"),
                             r.get::<Option<DateTime<Utc>>, _>("sweep_through_at"),
                             r.get::<Option<String>, _>("sweep_through_id")) {
                    (Some(snapshot), Some(at), Some(id), Some(t_at), Some(t_id)) => Some(SweepPass {
                        snapshot,
                        at: Key { at, id },
                        through: Key { at: t_at, id: t_id },
                    }),
                    _ => None,
                },
                scanned: r.get("sweep_scanned"),
                started_at: r.get("sweep_started_at"),
                done_at: r.get("sweep_done_at"),
            },
            tenants_read_at: r.get("tenants_read_at"),
            holder: r.get("holder"),
            lease_until: r.get("lease_until"),
            last_read_at: r.get("last_read_at"),
            last_error: match (r.get::<Option<String>, _>("last_error"),
                               r.get::<Option<DateTime<Utc>>, _>("last_error_at")) {
                (Some(e), Some(at)) => Some((e, at)),
                _ => None,
            },
            updated_at: r.get("updated_at"),
        }))
    })
}

/// Creates the row starting at `start` if there is none; returns the row.
pub async fn init(db: &Db, start: DateTime<Utc>) -> Result<FollowState, sqlx::Error> {
    let at = now();
    let cursor = Key::before(start);
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO platform_follow (id, cursor_at, cursor_id, started_at, updated_at)
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(cursor.at)
        .bind(&cursor.id)
        .bind(start)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ())
    })?;
    Ok(load(db).await?.expect("inserted above"))
}

/// Moves the start back to `start` (usage from then on is read again; what is stored stays, by event id)
/// when it is earlier than where the follower started. Returns whether it moved.
pub async fn start_from(db: &Db, holder: &str, start: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let cursor = Key::before(start);
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE platform_follow SET cursor_at = $1, cursor_id = $2, started_at = $3, updated_at = $4
             WHERE id = 1 AND holder = $5 AND started_at > $3",
        )
        .bind(cursor.at)
        .bind(&cursor.id)
        .bind(start)
        .bind(now())
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

/// Takes the lease for `holder` if it is free, expired or already `holder`'s.
pub async fn acquire(db: &Db, holder: &str, ttl: Duration) -> Result<bool, sqlx::Error> {
    let at = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE platform_follow SET holder = $1, lease_until = $2
             WHERE id = 1 AND (holder IS NULL OR holder = $1 OR lease_until IS NULL OR lease_until < $3)",
        )
        .bind(holder)
        .bind(at + ttl)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

/// Gives the lease up (on shutdown), so another replica takes over at once.
pub async fn release(db: &Db, holder: &str) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE platform_follow SET lease_until = NULL WHERE id = 1 AND holder = $1")
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Records a failure to read the platform (shown by `platform status`).
pub async fn record_error(db: &Db, error: &str) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE platform_follow SET last_error = $1, last_error_at = $2 WHERE id = 1")
            .bind(error)
            .bind(now())
            .execute(pool)
            .await
            .map(|_| ())
    })
}

macro_rules! insert_held {
    ($tx:expr, $held:expr) => {
        for h in $held {
            sqlx::query(
                "INSERT INTO platform_held_rows
                     (record_id, tenant_id, usage_type, amount, created_at, reason, detail, held_at, checked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 ON CONFLICT (record_id) DO UPDATE SET reason = excluded.reason, detail = excluded.detail,
                     usage_type = excluded.usage_type, amount = excluded.amount, checked_at = excluded.checked_at",
            )
            .bind(&h.record_id)
            .bind(&h.tenant_id)
            .bind(&h.usage_type)
            .bind(&h.amount)
            .bind(h.created_at)
            .bind(h.reason.as_str())
            .bind(&h.detail)
            .bind(h.held_at)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Runs `$sql` (an update of the follower's row that names the holder) with its binds and records `$held` in
/// the same transaction; `Ok(false)`, with nothing written, when the holder no longer holds the lease.
macro_rules! update_with_held {
    ($db:expr, $sql:expr, [$($bind:expr),* $(,)?], $held:expr) => {
        begin_write!($db, pool, tx => {
            let moved = sqlx::query($sql)
                $(.bind($bind))*
                .execute(&mut *tx)
                .await?
                .rows_affected() == 1;
            if !moved {
                return Ok(false);
            }
            insert_held!(tx, $held);
            tx.commit().await?;
            Ok(true)
        })
    };
}

/// Records that every row up to `cursor` is behind, with what the step did; false (nothing written) if
/// `holder` no longer holds the lease.
pub async fn advance(
    db: &Db,
    holder: &str,
    cursor: &Key,
    step: &Step,
) -> Result<bool, sqlx::Error> {
    update_with_held!(
        db,
        "UPDATE platform_follow SET cursor_at = $1, cursor_id = $2, rows_taken = rows_taken + $3,
             rows_not_billed = rows_not_billed + $4, last_read_at = $5, last_error = NULL,
             last_error_at = NULL, updated_at = $5
         WHERE id = 1 AND holder = $6",
        [
            cursor.at,
            &cursor.id,
            step.taken,
            step.not_billed,
            now(),
            holder
        ],
        &step.held
    )
}

/// Records a re-read: its snapshot and the key it covered, with what it found.
pub async fn rechecked(
    db: &Db,
    holder: &str,
    snapshot: &str,
    through: &Key,
    step: &Step,
) -> Result<bool, sqlx::Error> {
    update_with_held!(
        db,
        "UPDATE platform_follow SET recheck_snapshot = $1, recheck_at = $2, recheck_id = $3,
             rows_late = rows_late + $4, rows_not_billed = rows_not_billed + $5, updated_at = $6
         WHERE id = 1 AND holder = $7",
        [
            snapshot,
            through.at,
            &through.id,
            step.taken,
            step.not_billed,
            now(),
            holder
        ],
        &step.held
    )
}

/// Records the platform's snapshot of the first read as where the first re-read and the first sweep
/// start from (rows below the cursor that commit after it are found by them), unless one is recorded;
/// `anchor` is the platform's clock at that read. False if `holder` no longer holds the lease.
pub async fn first_snapshot(
    db: &Db,
    holder: &str,
    snapshot: &str,
    anchor: &Key,
) -> Result<bool, sqlx::Error> {
    let at = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE platform_follow SET
                 recheck_snapshot = COALESCE(recheck_snapshot, $1),
                 recheck_at = CASE WHEN recheck_snapshot IS NULL THEN $2 ELSE recheck_at END,
                 recheck_id = CASE WHEN recheck_snapshot IS NULL THEN $3 ELSE recheck_id END,
                 sweep_snapshot_at = CASE WHEN sweep_snapshot IS NULL THEN $4 ELSE sweep_snapshot_at END,
                 sweep_snapshot = COALESCE(sweep_snapshot, $1), updated_at = $4
             WHERE id = 1 AND holder = $5",
        )
        .bind(snapshot)
        .bind(anchor.at)
        .bind(&anchor.id)
        .bind(at)
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

/// Starts a sweep pass: its snapshot, the key it starts after and the key it ends at.
pub async fn sweep_begin(db: &Db, holder: &str, pass: &SweepPass) -> Result<bool, sqlx::Error> {
    let at = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE platform_follow SET sweep_pass_snapshot = $1, sweep_pos_at = $2, sweep_pos_id = $3,
                 sweep_through_at = $4, sweep_through_id = $5, sweep_scanned = 0, sweep_started_at = $6,
                 updated_at = $6
             WHERE id = 1 AND holder = $7",
        )
        .bind(&pass.snapshot)
        .bind(pass.at.at)
        .bind(&pass.at.id)
        .bind(pass.through.at)
        .bind(&pass.through.id)
        .bind(at)
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

/// Records a batch of the sweep pass `pass`: how far it read (`reached`), the rows it scanned and what it
/// stored or held. When `done`, the pass's snapshot becomes what the next pass compares with.
pub async fn swept(
    db: &Db,
    holder: &str,
    pass: &SweepPass,
    reached: &Key,
    scanned: i64,
    done: bool,
    step: &Step,
) -> Result<bool, sqlx::Error> {
    let at = now();
    if done {
        return update_with_held!(
            db,
            "UPDATE platform_follow SET sweep_snapshot = sweep_pass_snapshot,
                 sweep_snapshot_at = sweep_started_at, sweep_pass_snapshot = NULL, sweep_pos_at = NULL,
                 sweep_pos_id = NULL, sweep_through_at = NULL, sweep_through_id = NULL, sweep_done_at = $1,
                 sweep_scanned = sweep_scanned + $2, rows_swept = rows_swept + $3, updated_at = $1
             WHERE id = 1 AND holder = $4 AND sweep_pass_snapshot = $5",
            [at, scanned, step.taken, holder, &pass.snapshot],
            &step.held
        );
    }
    update_with_held!(
        db,
        "UPDATE platform_follow SET sweep_pos_at = $1, sweep_pos_id = $2, sweep_scanned = sweep_scanned + $3,
             rows_swept = rows_swept + $4, updated_at = $5
         WHERE id = 1 AND holder = $6 AND sweep_pass_snapshot = $7",
        [
            reached.at,
            &reached.id,
            scanned,
            step.taken,
            at,
            holder,
            &pass.snapshot
        ],
        &step.held
    )
}

/// Records the platform's clock at a read of its organizations after which every change was applied.
pub async fn tenants_read(db: &Db, read_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE platform_follow SET tenants_read_at = $1 WHERE id = 1")
            .bind(read_at)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Held rows not checked since `before`, oldest check first.
pub async fn held_due(
    db: &Db,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<HeldRow>, sqlx::Error> {
    held_query(
        db,
        "WHERE checked_at < $1 ORDER BY checked_at, record_id LIMIT $2",
        Some(before),
        limit,
    )
    .await
}

/// Held rows, oldest first (for `platform status`).
pub async fn held(db: &Db, limit: i64) -> Result<Vec<HeldRow>, sqlx::Error> {
    held_query(db, "ORDER BY created_at, record_id LIMIT $1", None, limit).await
}

async fn held_query(
    db: &Db,
    tail: &str,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<HeldRow>, sqlx::Error> {
    let sql = format!(
        "SELECT record_id, tenant_id, usage_type, amount, created_at, reason, detail, held_at
         FROM platform_held_rows {tail}"
    );
    with_pool!(db, pool => {
        let mut q = sqlx::query(&sql);
        if let Some(b) = before {
            q = q.bind(b);
        }
        q.bind(limit).fetch_all(pool).await.map(|rows| {
            rows.iter()
                .map(|r| HeldRow {
                    record_id: r.get("record_id"),
                    tenant_id: r.get("tenant_id"),
                    usage_type: r.get("usage_type"),
                    amount: r.get("amount"),
                    created_at: r.get("created_at"),
                    reason: HoldReason::parse(r.get::<&str, _>("reason")),
                    detail: r.get("detail"),
                    held_at: r.get("held_at"),
                })
                .collect()
        })
    })
}

/// Held rows by reason.
pub async fn held_counts(db: &Db) -> Result<Vec<(HoldReason, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT reason, COUNT(*) FROM platform_held_rows GROUP BY reason ORDER BY reason",
        )
        .fetch_all(pool)
        .await
        .map(|rows| rows.into_iter().map(|(r, n)| (HoldReason::parse(&r), n)).collect())
    })
}

/// The outcome of trying held rows again.
#[derive(Debug, Default)]
pub struct Retried {
    /// Stored now: no longer held.
    pub released: Vec<String>,
    /// Now of a type that is not billed, or gone from the platform: no longer held.
    pub dropped_not_billed: Vec<String>,
    pub gone: Vec<String>,
    /// Still held (perhaps for another reason now).
    pub still: Vec<HeldRow>,
}

/// Records the retry of held rows in one transaction; false if `holder` lost the lease.
pub async fn retried(db: &Db, holder: &str, r: &Retried) -> Result<bool, sqlx::Error> {
    let at = now();
    begin_write!(db, pool, tx => {
        let ok = sqlx::query(
            "UPDATE platform_follow SET rows_released = rows_released + $1,
                 rows_not_billed = rows_not_billed + $2, updated_at = $3
             WHERE id = 1 AND holder = $4",
        )
        .bind(r.released.len() as i64)
        .bind(r.dropped_not_billed.len() as i64)
        .bind(at)
        .bind(holder)
        .execute(&mut *tx)
        .await?
        .rows_affected() == 1;
        if !ok {
            return Ok(false);
        }
        for id in r.released.iter().chain(&r.dropped_not_billed).chain(&r.gone) {
            sqlx::query("DELETE FROM platform_held_rows WHERE record_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let still: Vec<HeldRow> = r.still.iter().map(|h| HeldRow { held_at: at, ..h.clone() }).collect();
        insert_held!(tx, &still);
        tx.commit().await?;
        Ok(true)
    })
}

/// An organization of the platform as last applied here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub tenant_id: String,
    pub name: String,
    pub subdomain: String,
    pub is_demo: bool,
    pub demo_pending: Option<(bool, DateTime<Utc>)>,
    pub problem: Option<String>,
}

pub async fn followed(db: &Db) -> Result<HashMap<String, Followed>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "SELECT tenant_id, name, subdomain, is_demo, demo_pending, pending_at, problem FROM platform_tenants",
        )
        .fetch_all(pool)
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let f = Followed {
                        tenant_id: r.get("tenant_id"),
                        name: r.get("name"),
                        subdomain: r.get("subdomain"),
                        is_demo: r.get("is_demo"),
                        demo_pending: match (r.get::<Option<bool>, _>("demo_pending"),
                                             r.get::<Option<DateTime<Utc>>, _>("pending_at")) {
                            (Some(d), Some(at)) => Some((d, at)),
                            _ => None,
                        },
                        problem: r.get("problem"),
                    };
                    (f.tenant_id.clone(), f)
                })
                .collect()
        })
    })
}

/// Records (or replaces) what was last applied of an organization.
pub async fn save_followed(db: &Db, f: &Followed) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO platform_tenants (tenant_id, name, subdomain, is_demo, demo_pending, pending_at, problem, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name, subdomain = excluded.subdomain,
                 is_demo = excluded.is_demo, demo_pending = excluded.demo_pending,
                 pending_at = excluded.pending_at, problem = excluded.problem, seen_at = excluded.seen_at",
        )
        .bind(&f.tenant_id)
        .bind(&f.name)
        .bind(&f.subdomain)
        .bind(f.is_demo)
        .bind(f.demo_pending.map(|p| p.0))
        .bind(f.demo_pending.map(|p| p.1))
        .bind(&f.problem)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Whether someone other than `actor` switched the tenant's demo status here since `since`.
pub async fn demo_switched_by_others(
    db: &Db,
    tenant: &str,
    actor: &str,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND actor <> $2 AND at >= $3
               AND action IN ('tenant.demo_on', 'tenant.demo_off')",
        )
        .bind(tenant)
        .bind(actor)
        .bind(since)
        .fetch_one(pool)
        .await
        .map(|n| n > 0)
    })
}
