//! `GET /api/billing/dashboard`: the tenant's billing as of now (see `crate::dashboard`).

use crate::auth::TenantUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dashboard::{load, Dashboard};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dashboard))
}

/// The tenant's billing dashboard: subscription, recent invoices, this period's usage and upcoming
/// charges.
///
/// Roles: any role of the tenant (member, user, org_admin, admin); super_admin for any tenant with
/// `?tenant_id=`. A demo tenant gets `is_demo: true`, `demo_message`, no subscription and zero charges.
#[utoipa::path(get, path = "/api/billing/dashboard", tag = "billing",
    security(("bearer" = [])),
    params(super::billing::TenantParam),
    responses(
        (status = 200, description = "The dashboard as of now.", body = Dashboard),
        (status = 404, description = "The tenant is not registered (`tenant_not_found`).", body = ApiError),
        (status = 422, description = "`tenant_id` is not a valid tenant id (`invalid_tenant_id`).", body = ApiError),
    ))]
async fn dashboard(State(state): State<AppState>, user: TenantUser) -> ApiResult<Json<Dashboard>> {
    Ok(Json(load(&state, &user.tenant_id).await?))
}
