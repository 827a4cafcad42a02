//! `platform status` and the follower's `/metrics` gauges, read from our database (every replica reports
//! the same).

use super::mapping::HoldReason;
use super::store::{self, FollowState, HeldRow};
use crate::db::Db;
use crate::domain::time::{now, rfc3339};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// What `platform status` prints.
#[derive(Debug)]
pub struct Status {
    pub follow: Option<FollowState>,
    pub held: Vec<(HoldReason, i64)>,
    /// The oldest held rows, at most [`Status::LISTED`].
    pub held_rows: Vec<HeldRow>,
    /// Organizations that could not be registered as the platform has them, with why.
    pub problems: Vec<(String, String)>,
    pub at: DateTime<Utc>,
}

impl Status {
    pub const LISTED: i64 = 50;

    pub async fn read(db: &Db) -> Result<Status, sqlx::Error> {
        let mut problems: Vec<(String, String)> = store::followed(db)
            .await?
            .into_values()
            .filter_map(|f| f.problem.map(|p| (f.tenant_id, p)))
            .collect();
        problems.sort();
        Ok(Status {
            follow: store::load(db).await?,
            held: store::held_counts(db).await?,
            held_rows: store::held(db, Status::LISTED).await?,
            problems,
            at: now(),
        })
    }

    pub fn held_total(&self) -> i64 {
        self.held.iter().map(|(_, n)| n).sum()
    }

    /// How far behind the platform's usage the follower is: from the time up to which every row is
    /// taken to now.
    pub fn lag_seconds(&self) -> Option<f64> {
        self.follow
            .as_ref()
            .map(|f| ((self.at - f.cursor.at).num_milliseconds() as f64 / 1000.0).max(0.0))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Some(f) = &self.follow else {
            return "The platform's database has not been followed here yet: set PLATFORM_DATABASE_URL and run \
                    `serve` (or `platform follow`), or `platform import --from URL --apply` first.\n"
                .into();
        };
        let lag = self.lag_seconds().unwrap_or_default();
        let _ = writeln!(
            out,
            "lag:            {lag:.1} s (every row created before {} is taken)",
            rfc3339(f.cursor.at)
        );
        let _ = writeln!(out, "following from: {}", rfc3339(f.started_at));
        let follower = match (&f.holder, f.lease_until) {
            (Some(h), Some(until)) if until > self.at => {
                format!("{h} (lease until {})", rfc3339(until))
            }
            _ => "none now".into(),
        };
        let _ = writeln!(out, "follower:       {follower}");
        if let Some(at) = f.last_read_at {
            let _ = writeln!(out, "last read:      {}", rfc3339(at));
        }
        if let Some((e, at)) = &f.last_error {
            let _ = writeln!(out, "last error:     {} at {}", e, rfc3339(*at));
        }
        let _ = writeln!(
            out,
            "rows ingested:  {} ({} at the cursor, {} committed late, {} found by the sweep, {} held then released)",
            f.rows_ingested(),
            f.rows_taken,
            f.rows_late,
            f.rows_swept,
            f.rows_released
        );
        let _ = writeln!(out, "sweep:          {}", sweep_line(f));
        let _ = writeln!(
            out,
            "rows not billed: {} (tokens and other types, no words)",
            f.rows_not_billed
        );
        let _ = writeln!(out, "rows held back:  {}", self.held_total());
        for (reason, n) in &self.held {
            let _ = writeln!(out, "  {reason}: {n}");
        }
        if !self.held_rows.is_empty() {
            let _ = writeln!(
                out,
                "\nheld rows (oldest first, at most {}):",
                Status::LISTED
            );
            for h in &self.held_rows {
                let _ = writeln!(
                    out,
                    "  {} {} tenant {} {} {}: {}",
                    h.record_id,
                    rfc3339(h.created_at),
                    h.tenant_id,
                    h.usage_type,
                    h.amount,
                    h.detail
                );
            }
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out, "\norganizations:");
            for (id, p) in &self.problems {
                let _ = writeln!(out, "  {id}: {p}");
            }
        }
        out
    }
}

/// Where the sweep is: the pass in progress, else the last one.
fn sweep_line(f: &FollowState) -> String {
    let sw = &f.sweep;
    match (&sw.pass, sw.started_at, sw.done_at) {
        (Some(pass), Some(started), _) => format!(
            "in progress since {}: {} rows read, at {} of {}",
            rfc3339(started),
            sw.scanned,
            rfc3339(pass.at.at),
            rfc3339(pass.through.at)
        ),
        (None, Some(started), Some(done)) => format!(
            "last from {} to {}: {} rows read; {} rows found by every sweep",
            rfc3339(started),
            rfc3339(done),
            sw.scanned,
            f.rows_swept
        ),
        _ => "none yet (one starts an hour after the first read, then every hour)".into(),
    }
}

/// The gauges `/metrics` adds when the follower has a row: held rows, the lag, rows found by the sweep.
pub async fn gauges(db: &Db) -> Result<Vec<crate::metrics::Gauge>, sqlx::Error> {
    let Some(f) = store::load(db).await? else {
        return Ok(Vec::new());
    };
    let held: i64 = store::held_counts(db).await?.iter().map(|(_, n)| n).sum();
    let lag = ((now() - f.cursor.at).num_milliseconds() as f64 / 1000.0).max(0.0);
    Ok(crate::metrics::platform_follow(held, lag, f.rows_swept).to_vec())
}
