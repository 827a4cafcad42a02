//! `POST /api/usage/events`: the voice and telephony services report usage here.

use crate::domain::time;
use crate::http::auth::UsageWriter;
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::{parse_json, ApiBody};
use crate::state::AppState;
use crate::usage::limit::TokenKey;
use crate::usage::record::{record_batch, Recorded};
use crate::usage::validate;
use crate::usage::IngestOutcome;
use axum::extract::State;
use axum::Json;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_events))
}

const INVALID: ErrorCode = ErrorCode::InvalidUsageEvents;

// The body is decoded and checked by hand (every problem of every event is reported, by index), so
// these two types only document its shape. Their limits are `usage::validate`'s (utoipa takes only
// literals there): tests/api/openapi.rs holds the document to those constants.

/// A batch of usage events: all stored, or none.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UsageBatch {
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<UsageEvent>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct UsageEvent {
    /// The idempotency key: the same `event_id` again is a duplicate, counted once. For phone calls,
    /// the call's id.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "call-7f3a"
    )]
    event_id: String,
    #[schema(pattern = r"^[!-~]{1,64}$", example = "acme")]
    tenant_id: String,
    #[schema(rename = "type", inline)]
    usage_type: UsageTypeDoc,
    /// Words for `stt_words` and `tts_words`; 1 for `phone_calls`.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    quantity: i64,
    /// When it happened (RFC 3339 with offset); it decides the billing period. Default: when received.
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A small JSON object (at most 4,096 bytes) kept for the audit trail.
    metadata: Option<serde_json::Map<String, Value>>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum UsageTypeDoc {
    SttWords,
    TtsWords,
    PhoneCalls,
}

/// Report usage: speech-to-text and text-to-speech words, and phone calls.
///
/// Roles: service, super_admin. Validates the whole batch (nothing is stored unless every event is
/// valid, an unknown tenant included), stores it in one transaction and answers only after the
/// commit: the dashboard read right after shows the events.
#[utoipa::path(post, path = "/api/usage/events", tag = "usage",
    security(("bearer" = [])),
    request_body = UsageBatch,
    responses(
        (status = 200, description = "Stored: how many were new and how many were duplicates.", body = IngestOutcome),
        (status = 413, description = "The body is larger than 2 MiB (`body_too_large`).", body = ApiError),
        (status = 422, description = "The batch is rejected; `detail` names each bad index and why (`invalid_usage_events`, `invalid_json`).", body = ApiError),
        (status = 429, description = "This token is over USAGE_EVENTS_PER_SECOND_PER_TOKEN (`rate_limited`); nothing was stored; retry after the `Retry-After` seconds.", body = ApiError),
    ))]
async fn post_events(
    State(state): State<AppState>,
    UsageWriter(caller): UsageWriter,
    ApiBody(body): ApiBody,
) -> ApiResult<Json<IngestOutcome>> {
    let received_at = time::now();
    let decoded = match validate::decode_valid_batch(&body, received_at) {
        Some(batch) => batch,
        None => validate::decode_batch(&parse_json::<Value>(&body)?, received_at)
            .map_err(|detail| ApiError::unprocessable(INVALID, detail))?,
    };
    let validate::Batch {
        total,
        events: batch,
        indexes,
        problems,
    } = decoded;
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
    let recorded = record_batch(
        &state.usage,
        &state.db,
        &batch,
        &indexes,
        problems,
        received_at,
    )
    .await?;
    let outcome = match recorded {
        Recorded::Stored(outcome) => outcome,
        Recorded::Refused(problems) => return Err(rejected(problems, total)),
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
