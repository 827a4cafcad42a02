//! `GET /api/billing/access`: whether the platform should let a tenant in, from its billing state.

use crate::domain::time::now;
use crate::http::auth::AccessReader;
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use crate::subscriptions::access::{self, AccessReason};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(access))
}

#[derive(Serialize, ToSchema)]
struct AccessAnswer {
    tenant_id: String,
    allowed: bool,
    reason: AccessReason,
    /// When access ends unless something changes (trial end, period end, grace end); null when open-ended.
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// Whether the tenant may use the platform now, and why.
///
/// Roles: any role of the tenant; `service` and `super_admin` for any tenant with `?tenant_id=`.
/// Answered from our copy of the billing state, never from Stripe.
#[utoipa::path(get, path = "/api/billing/access", tag = "billing",
    security(("bearer" = [])),
    params(super::billing::TenantParam),
    responses(
        (status = 200, description = "The tenant's access.", body = AccessAnswer),
        (status = 404, description = "The tenant is not registered (`tenant_not_found`).", body = ApiError),
        (status = 422, description = "`tenant_id` is invalid (`invalid_tenant_id`).", body = ApiError),
    ))]
async fn access(
    State(state): State<AppState>,
    reader: AccessReader,
) -> ApiResult<Json<AccessAnswer>> {
    let grace = chrono::Duration::days(i64::from(state.settings.billing.past_due_grace_days));
    let answer = access::for_tenant(&state.db, &reader.tenant_id, grace, now())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::TenantNotFound,
                format!("No tenant has the id {:?}.", reader.tenant_id.as_str()),
            )
        })?;
    Ok(Json(AccessAnswer {
        tenant_id: reader.tenant_id.as_str().to_owned(),
        allowed: answer.allowed,
        reason: answer.reason,
        until: answer.until.map(crate::domain::time::rfc3339),
    }))
}
