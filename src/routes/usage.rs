//! `POST /api/usage/events`: the voice and telephony services report usage here.

use crate::auth::UsageWriter;
use crate::domain::time;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use crate::usage::limit::TokenKey;
use crate::usage::validate;
use crate::usage::IngestOutcome;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/usage/events", post(post_events))
}

const INVALID: &str = "invalid_usage_events";

/// Validates the whole batch (nothing is stored unless every event is valid), stores it in one
/// transaction and answers only after the commit.
async fn post_events(
    State(state): State<AppState>,
    UsageWriter(caller): UsageWriter,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<IngestOutcome>> {
    let received_at = time::now();
    let validate::Batch {
        total,
        events: batch,
        indexes,
        mut problems,
    } = validate::decode_batch(&body, received_at)
        .map_err(|detail| ApiError::unprocessable(INVALID, detail))?;
    // Every event of a well-formed batch counts, valid or not: the limit bounds the work a token causes.
    if let Err(limited) = state.usage_limit.check(TokenKey::of(&caller.claims), total) {
        return Err(ApiError::too_many_requests(
            format!(
                "This token may send at most {} usage events per second, so this batch of {total} was \
                 not stored; retry after {} s.",
                limited.per_second,
                limited.retry_after_secs()
            ),
            limited.retry_after_secs(),
        ));
    }
    let outcome = if problems.is_empty() {
        match state.usage.ingest(&batch, received_at).await {
            Ok(outcome) => Some(outcome),
            // A foreign key failed: some tenant is unknown. Only now is it worth a query to say which.
            Err(e) if validate::is_unknown_tenant(&e) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => {
            let unknown =
                validate::unknown_tenants(&state.db, batch.iter().map(|e| &e.tenant_id)).await?;
            for (event, i) in batch.iter().zip(&indexes) {
                if unknown.contains(event.tenant_id.as_str()) {
                    let id = event.tenant_id.as_str();
                    problems.push((*i, format!("events[{i}].tenant_id: no tenant {id:?}")));
                }
            }
            if !problems.is_empty() {
                return Err(rejected(problems, total));
            }
            // The missing tenant was added in between: the batch is valid now.
            state.usage.ingest(&batch, received_at).await?
        }
    };
    crate::metrics::usage_events(outcome.accepted as u64, outcome.duplicates as u64);
    tracing::debug!(
        actor = %caller.actor(),
        accepted = outcome.accepted,
        duplicates = outcome.duplicates,
        "usage events stored"
    );
    Ok(Json(outcome))
}

/// The 422 for an invalid batch: every problem, in index order.
fn rejected(mut problems: Vec<(usize, String)>, total: usize) -> ApiError {
    problems.sort_by_key(|(i, _)| *i);
    let mut bad: Vec<usize> = problems.iter().map(|(i, _)| *i).collect();
    bad.dedup();
    let list: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
    ApiError::unprocessable(
        INVALID,
        format!(
            "{} of {total} events are invalid, so none was stored: {}.",
            bad.len(),
            list.join("; ")
        ),
    )
}
