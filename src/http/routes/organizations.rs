//! `GET /api/admin/organizations/{tenant_id}/billing`: one organization's dashboard for a super admin,
//! with its name and subdomain (the platform's organization billing page).

use crate::dashboard::{for_organization, DashboardError, OrganizationBilling};
use crate::domain::TenantId;
use crate::http::auth::SuperAdmin;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiPath;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(organization_billing))
}

/// One organization's billing dashboard, with `organization_id`, `organization_name` and `subdomain`.
///
/// Roles: super_admin. The fields are the tenant view of `GET /api/billing/dashboard`.
#[utoipa::path(get, path = "/api/admin/organizations/{tenant_id}/billing", tag = "admin",
    security(("bearer" = [])),
    params(
        ("tenant_id" = String, Path, pattern = r"^[!-~]{1,64}$", example = "acme", description = "The organization's tenant id (the platform's UUID)."),
    ),
    responses(
        (status = 200, description = "The organization's dashboard as of now.", body = OrganizationBilling),
        (status = 404, description = "No registered organization has that id (`tenant_not_found`).", body = ApiError),
    ))]
async fn organization_billing(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<OrganizationBilling>> {
    // An id that could not be a tenant's names no organization: the same answer as an unknown one.
    let id = TenantId::parse(&tenant_id)
        .map_err(|_| ApiError::from(DashboardError::TenantNotFound(tenant_id.clone())))?;
    Ok(Json(for_organization(&state, &id).await?))
}
