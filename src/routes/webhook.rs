//! `POST /api/billing/webhook`: Stripe's events, verified on the raw body, recorded once, applied.

use crate::db::webhook_events::{self, Receipt};
use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::state::AppState;
use crate::stripe::webhook::{self as signature, SignatureError};
use crate::stripe::Event;
use crate::subscriptions::webhook::{self, Applied};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/billing/webhook", post(receive))
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    // Several secrets, comma-separated, let an operator roll the endpoint's secret without downtime.
    let secrets: Vec<&str> = state
        .settings
        .stripe_webhook_secret
        .expose()
        .split(',')
        .map(str::trim)
        .collect();
    if let Err(e) = signature::verify(&body, header, &secrets, chrono::Utc::now().timestamp()) {
        metrics::webhook("unknown", "bad_signature");
        tracing::warn!(error = %e, "webhook rejected");
        let detail = match e {
            SignatureError::NoSecret => {
                "Webhook signature verification failed: no webhook secret is configured.".to_owned()
            }
            other => format!("Webhook signature verification failed: {other}."),
        };
        return Err(ApiError::bad_request("invalid_signature", detail));
    }
    let event: Event = signature::decode_event(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_event",
            format!("The body is not a Stripe event: {e}."),
        )
    })?;
    let object_id = event.data.object.get("id").and_then(Value::as_str);
    let created = crate::subscriptions::sync::ts(Some(event.created))
        .unwrap_or_else(crate::domain::time::now);
    match webhook_events::receive(&state.db, &event.id, &event.event_type, object_id, created)
        .await?
    {
        Receipt::AlreadyApplied => {
            metrics::webhook(&event.event_type, "duplicate");
            return Ok(Json(json!({"received": true, "duplicate": true})));
        }
        Receipt::Apply => {}
    }
    match webhook::apply(&state, &event).await {
        Ok(applied) => {
            let (tenant, outcome) = match &applied {
                Applied::Synced(t) => (t.as_deref(), "applied"),
                Applied::Ignored => (None, "ignored"),
            };
            webhook_events::mark_applied(&state.db, &event.id, tenant).await?;
            metrics::webhook(&event.event_type, outcome);
            tracing::info!(event = %event.id, kind = %event.event_type, outcome, tenant_id = tenant.unwrap_or(""), "webhook");
            Ok(Json(json!({"received": true})))
        }
        Err(e) => {
            metrics::webhook(&event.event_type, "failed");
            // A 5xx makes Stripe deliver again later; the event stays unapplied until then.
            let mut err: ApiError = e.into();
            if err.status.is_client_error() {
                err = ApiError::internal(anyhow::anyhow!("{}", err.detail));
            }
            Err(err.with_code("webhook_failed"))
        }
    }
}
