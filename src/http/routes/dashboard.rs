//! `GET /api/billing/dashboard`: the tenant's billing as of now (see `crate::dashboard`), or for a super
//! admin who names no tenant, every organization's (`crate::overview::all_organizations`).

use crate::auth::{Caller, Role};
use crate::dashboard::{load, unregistered, Dashboard, DashboardError};
use crate::http::auth::TenantUser;
use crate::http::error::{ApiError, ApiResult};
use crate::overview::all_organizations::{self as all, AllOrganizations};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dashboard))
}

/// A tenant's dashboard, or the all-organizations view (`view_type: "super_admin"`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DashboardView {
    Tenant(Box<Dashboard>),
    AllOrganizations(AllOrganizations),
}

/// The tenant's billing dashboard: subscription, recent invoices, this period's usage and upcoming
/// charges; for a super admin without `?tenant_id=`, every organization's billing.
///
/// Roles: any role of the tenant (member, user, org_admin, admin); super_admin for any tenant with
/// `?tenant_id=`, and without it the all-organizations view (`view_type: "super_admin"`, the platform's
/// super admin page). A demo tenant gets `is_demo: true`, `demo_message`, no subscription and zero
/// charges. A valid token of a tenant not registered here yet gets the empty view (no subscription,
/// no invoices, zero usage).
#[utoipa::path(get, path = "/api/billing/dashboard", tag = "billing",
    security(("bearer" = [])),
    params(super::billing::TenantParam),
    responses(
        (status = 200, description = "The dashboard as of now.", body = DashboardView),
        (status = 404, description = "A super admin's `?tenant_id=` names no registered tenant (`tenant_not_found`).", body = ApiError),
        (status = 422, description = "`tenant_id` is not a valid tenant id (`invalid_tenant_id`).", body = ApiError),
    ))]
async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    // A super admin's token need not name a tenant: its `tenant_id` is read only when the view is one
    // tenant's.
    user: Result<TenantUser, ApiError>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<DashboardView>> {
    let names_tenant = query
        .as_deref()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "tenant_id"));
    if caller.role == Role::SuperAdmin && !names_tenant {
        return Ok(Json(DashboardView::AllOrganizations(
            all::now(&state).await?,
        )));
    }
    let user = user?;
    let own = user.tenant_id.as_str() == user.caller.claims.tenant_id;
    match load(&state, &user.tenant_id).await {
        Ok(d) => Ok(Json(DashboardView::Tenant(Box::new(d)))),
        // The platform's page of an organization not registered here yet: its (empty) billing, not an
        // error the page would show as "Failed to fetch". A tenant named in `?tenant_id=` must exist.
        Err(DashboardError::TenantNotFound(_)) if own => {
            Ok(Json(DashboardView::Tenant(Box::new(unregistered(&state)))))
        }
        Err(e) => Err(e.into()),
    }
}
