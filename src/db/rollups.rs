//! Reads of the usage rollups that are not the usage path's own (which lives in `usage::ingest` and
//! `usage::billable`).

use super::Db;
use crate::with_pool;
use chrono::NaiveDate;

/// The first local day with any usage recorded.
pub async fn first_day(db: &Db) -> Result<Option<NaiveDate>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT MIN(day) FROM usage_rollups").fetch_one(pool).await
    })
}
