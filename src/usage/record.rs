//! A decoded batch recorded as `POST /api/usage/events` takes it: stored in one transaction, or refused
//! with every problem, unknown tenants included. An unknown tenant is found out by the store (the batch
//! fails as a whole), and only then named with a query; a tenant registered in between makes the batch
//! valid, and it is stored on a second try.

use super::batcher::Batcher;
use super::{validate, IngestOutcome, NewEvent};
use crate::db::Db;
use chrono::{DateTime, Utc};

/// What became of a batch.
#[derive(Debug)]
pub enum Recorded {
    Stored(IngestOutcome),
    /// Nothing stored: each problem with the index of the event it is about.
    Refused(Vec<(usize, String)>),
}

/// Records `batch` (its events at `indexes` of the request), unless `problems` (found decoding it)
/// already refuse it, in which case its unknown tenants are added to them.
pub async fn record_batch(
    batcher: &Batcher,
    db: &Db,
    batch: &[NewEvent],
    indexes: &[usize],
    mut problems: Vec<(usize, String)>,
    received_at: DateTime<Utc>,
) -> Result<Recorded, sqlx::Error> {
    if problems.is_empty() {
        match batcher.ingest(batch, received_at).await {
            Ok(outcome) => return Ok(Recorded::Stored(outcome)),
            // A foreign key failed: some tenant is unknown. Only now is it worth a query to say which.
            Err(e) if validate::is_unknown_tenant(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let unknown = validate::unknown_tenants(db, batch.iter().map(|e| &e.tenant_id)).await?;
    for (event, i) in batch.iter().zip(indexes) {
        if unknown.contains(event.tenant_id.as_str()) {
            let id = event.tenant_id.as_str();
            problems.push((*i, format!("events[{i}].tenant_id: no tenant {id:?}")));
        }
    }
    if !problems.is_empty() {
        return Ok(Recorded::Refused(problems));
    }
    // The missing tenant was added in between: the batch is valid now.
    Ok(Recorded::Stored(batcher.ingest(batch, received_at).await?))
}
