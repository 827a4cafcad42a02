//! Axum extractors that turn the `Authorization` header into a checked caller: who may call a handler
//! ([`TenantUser`], [`TenantAdmin`], [`SuperAdmin`], [`UsageWriter`], [`AccessReader`]). A missing or bad
//! token is 401; a valid token whose role may not do this is 403.

use super::error::{ApiError, ErrorCode};
use crate::auth::jwt::{self, JwtError};
use crate::auth::{Caller, Role};
use crate::domain::TenantId;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("Send a bearer token: Authorization: Bearer <JWT>.")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("The Authorization header must be `Bearer <JWT>`.")
            })?;
        let now = chrono::Utc::now().timestamp();
        let claims = jwt::verify_for(
            token,
            state.jwt_secret.expose().as_bytes(),
            now,
            &state.settings.auth.jwt_expected,
        )
        .map_err(|e| match e {
            JwtError::Expired => ApiError::unauthorized("The token has expired; sign in again."),
            other => ApiError::unauthorized(format!("The token was rejected: {other}.")),
        })?;
        let role = claims.role().ok_or_else(|| {
            ApiError::forbidden(format!(
                "The role {:?} may not use the billing service.",
                claims.role
            ))
        })?;
        let caller = Caller { claims, role };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Resolves which tenant a tenant route acts on: the token's own, or for a super admin `?tenant_id=`.
fn target_tenant(parts: &Parts, caller: &Caller) -> Result<TenantId, ApiError> {
    target_tenant_for(parts, caller, &[Role::SuperAdmin])
}

/// As [`target_tenant`], with the roles that may name any tenant in `?tenant_id=`.
fn target_tenant_for(
    parts: &Parts,
    caller: &Caller,
    may_name_any: &[Role],
) -> Result<TenantId, ApiError> {
    let requested = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "tenant_id")
            .map(|(_, v)| v.into_owned())
    });
    let raw = match requested {
        Some(t) if may_name_any.contains(&caller.role) => t,
        Some(t) if t != caller.claims.tenant_id => {
            return Err(ApiError::forbidden(
                "Only a super admin may act on another tenant (tenant_id).",
            ))
        }
        _ => caller.claims.tenant_id.clone(),
    };
    TenantId::parse(&raw)
        .map_err(|e| ApiError::unprocessable(ErrorCode::InvalidTenantId, format!("{e}.")))
}

/// A caller who may read a tenant's billing, and the tenant it acts on.
#[derive(Debug, Clone)]
pub struct TenantUser {
    pub caller: Caller,
    pub tenant_id: TenantId,
}

impl FromRequestParts<AppState> for TenantUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.role.reads_tenant() {
            return Err(ApiError::forbidden(
                "Service tokens may only report usage; they cannot read billing.",
            ));
        }
        let tenant_id = target_tenant(parts, &caller)?;
        Ok(TenantUser { caller, tenant_id })
    }
}

/// A caller who may ask whether a tenant has access: any role of the tenant, and the platform's
/// services or a super admin for any tenant with `?tenant_id=`.
#[derive(Debug, Clone)]
pub struct AccessReader {
    pub caller: Caller,
    pub tenant_id: TenantId,
}

impl FromRequestParts<AppState> for AccessReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant_id = target_tenant_for(parts, &caller, &[Role::SuperAdmin, Role::Service])?;
        Ok(AccessReader { caller, tenant_id })
    }
}

/// A caller who may manage a tenant's billing (org_admin, admin, super_admin).
#[derive(Debug, Clone)]
pub struct TenantAdmin {
    pub caller: Caller,
    pub tenant_id: TenantId,
}

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.role.manages_tenant() {
            return Err(ApiError::forbidden(
                "Only an organization admin may manage billing.",
            ));
        }
        let tenant_id = target_tenant(parts, &caller)?;
        Ok(TenantAdmin { caller, tenant_id })
    }
}

/// The platform's super admin.
#[derive(Debug, Clone)]
pub struct SuperAdmin(pub Caller);

impl FromRequestParts<AppState> for SuperAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::SuperAdmin {
            return Err(ApiError::forbidden("Only a super admin may do this."));
        }
        Ok(SuperAdmin(caller))
    }
}

/// A caller who may report usage: the platform's services, or a super admin.
#[derive(Debug, Clone)]
pub struct UsageWriter(pub Caller);

impl FromRequestParts<AppState> for UsageWriter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !matches!(caller.role, Role::Service | Role::SuperAdmin) {
            return Err(ApiError::forbidden(
                "Only service or super admin tokens may report usage.",
            ));
        }
        Ok(UsageWriter(caller))
    }
}
