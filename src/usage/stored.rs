//! Which event ids are stored already: a read of the primary key, for callers that re-read a source and
//! would otherwise send its events again only to have them counted as duplicates.

use crate::db::Db;
use std::collections::HashSet;

/// The ids among `ids` that `usage_events` holds.
pub async fn event_ids(db: &Db, ids: &[&str]) -> Result<HashSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<String> = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT event_id FROM usage_events WHERE event_id = ANY($1)")
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(pool) => {
            let json = serde_json::to_string(ids).expect("strings serialize");
            sqlx::query_scalar(
                "SELECT event_id FROM usage_events WHERE event_id IN (SELECT value FROM json_each($1))",
            )
            .bind(json)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(found.into_iter().collect())
}
