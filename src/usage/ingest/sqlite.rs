//! The SQLite path of ingestion: each group's open rollup upserted with the batch's sums, the events
//! inserted skipping stored ids, and the duplicates' quantities taken back out of their rollups.
//!
//! Multi-row `VALUES` in chunks (bound parameters stay well under SQLite's limit); the writer lock is
//! held from `BEGIN IMMEDIATE`, and each statement is an in-process call.

use super::{Inserted, Plan};
use crate::usage::rating::UsageTotals;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqliteConnection;
use std::collections::{HashMap, HashSet};

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
