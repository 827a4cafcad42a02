//! `POST/GET /api/admin/tenants`: the organizations the service bills.

use crate::db::tenants::{AddTenantError, Tenant};
use crate::domain::{Subdomain, TenantId};
use crate::http::auth::SuperAdmin;
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::ApiJson;
use crate::state::AppState;
use crate::tenants;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, add))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    /// The platform's tenant id (a UUID there), at most 64 characters.
    #[schema(pattern = r"^[!-~]{1,64}$", example = "acme")]
    id: String,
    /// The organization's name, 1 to 200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "Acme Funeral Home"
    )]
    name: String,
    /// A DNS label: 1 to 63 lowercase letters, digits and inner hyphens.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    subdomain: String,
}

#[derive(Serialize, ToSchema)]
struct TenantList {
    tenants: Vec<Tenant>,
}

/// Add a tenant (an organization to bill).
///
/// Roles: super_admin.
#[utoipa::path(post, path = "/api/admin/tenants", tag = "admin",
    security(("bearer" = [])),
    request_body = NewTenant,
    responses(
        (status = 201, description = "The tenant, added.", body = Tenant),
        (status = 409, description = "The id or the subdomain is taken (`tenant_exists`).", body = ApiError),
        (status = 422, description = "A field is missing or invalid (`invalid_tenant`, `invalid_json`).", body = ApiError),
    ))]
async fn add(
    State(state): State<AppState>,
    SuperAdmin(caller): SuperAdmin,
    ApiJson(body): ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let id = TenantId::parse(&body.id)
        .map_err(|e| ApiError::unprocessable(ErrorCode::InvalidTenant, format!("id: {e}.")))?;
    let name = body.name.trim();
    // Control characters have no place in a name (and PostgreSQL's text cannot hold NUL).
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            ErrorCode::InvalidTenant,
            "name: give the organization's name, 1 to 200 characters, without control characters.",
        ));
    }
    let subdomain = Subdomain::parse(&body.subdomain).map_err(|e| {
        ApiError::unprocessable(ErrorCode::InvalidTenant, format!("subdomain: {e}."))
    })?;
    let tenant = tenants::add(&state.db, &caller.actor(), &id, name, &subdomain)
        .await
        .map_err(|e| match e {
            AddTenantError::Db(e) => ApiError::from(e),
            dup => ApiError::conflict(
                ErrorCode::TenantExists,
                format!("{}: choose another.", capitalize(&dup.to_string())),
            ),
        })?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// List the tenants.
///
/// Roles: super_admin.
#[utoipa::path(get, path = "/api/admin/tenants", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "Every tenant.", body = TenantList)))]
async fn list(State(state): State<AppState>, _admin: SuperAdmin) -> ApiResult<Json<TenantList>> {
    Ok(Json(TenantList {
        tenants: tenants::list(&state.db).await?,
    }))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
