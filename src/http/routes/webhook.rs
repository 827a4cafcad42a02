//! `POST /api/billing/webhook`: Stripe's events, verified on the raw body, then received
//! (`billing::webhook::receive`: recorded once, applied).

use crate::billing::webhook::{receive as receive_event, Delivery};
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics;
use crate::state::AppState;
use crate::stripe::webhook::{self as signature, SignatureError};
use crate::stripe::Event;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

#[derive(Serialize, ToSchema)]
struct Received {
    received: bool,
    /// Present (true) when the event had been applied before: Stripe delivered it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// Stripe's webhook: subscription, checkout and invoice events, verified by their signature.
///
/// Stripe only: the `Stripe-Signature` header (signed with STRIPE_WEBHOOK_SECRET) is the credential.
/// Each event is applied once however often it is delivered.
#[utoipa::path(post, path = "/api/billing/webhook", tag = "stripe",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<HMAC-SHA256 hex>`, as Stripe signs.")),
    request_body(content = Object, description = "A Stripe event, exactly as Stripe sent it (the signature covers the raw bytes).", content_type = "application/json"),
    responses(
        (status = 200, description = "Received (and applied, or applied before).", body = Received),
        (status = 400, description = "The signature is missing, wrong or stale (`invalid_signature`), or the body is not a Stripe event (`invalid_event`).", body = ApiError),
        (status = 500, description = "Applying the event failed (`webhook_failed`); Stripe delivers it again later.", body = ApiError),
    ))]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    // Several secrets, comma-separated, let an operator roll the endpoint's secret without downtime.
    let secrets: Vec<&str> = state
        .settings
        .stripe
        .webhook_secret
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
        return Err(ApiError::bad_request(ErrorCode::InvalidSignature, detail));
    }
    let event: Event = signature::decode_event(&body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidEvent,
            format!("The body is not a Stripe event: {e}."),
        )
    })?;
    match receive_event(&state, &event).await {
        Ok(Delivery::Duplicate) => {
            metrics::webhook(&event.event_type, "duplicate");
            Ok(Json(Received {
                received: true,
                duplicate: Some(true),
            }))
        }
        Ok(Delivery::Applied { tenant, outcome }) => {
            metrics::webhook(&event.event_type, outcome);
            tracing::info!(event = %event.id, kind = %event.event_type, outcome, tenant_id = tenant.as_deref().unwrap_or(""), "webhook");
            Ok(Json(Received {
                received: true,
                duplicate: None,
            }))
        }
        Err(e) => {
            metrics::webhook(&event.event_type, "failed");
            // A 5xx makes Stripe deliver again later; the event stays unapplied until then.
            let mut err: ApiError = e.into();
            if err.status.is_client_error() {
                err = ApiError::internal(anyhow::anyhow!("{}", err.detail));
            }
            Err(err.with_code(ErrorCode::WebhookFailed))
        }
    }
}
