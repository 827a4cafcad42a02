//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers' annotations.

use crate::http::error::ApiError;
use crate::state::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The name of the bearer-token security scheme that operations refer to.
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Thanotopolis Billing API",
        description = "Stripe subscriptions, usage metering and the monthly invoice run of the Thanotopolis \
platform. All amounts are integer cents; all timestamps are RFC 3339, UTC.\n\n\
Authentication: `Authorization: Bearer <JWT>`, HS256, claims `sub`, `tenant_id`, `role`, `exp`, optional \
`email`. Roles: `member`, `user` (read their own tenant); `org_admin`, `admin` (read and manage their own \
tenant's billing); `super_admin` (everything, every tenant; may add `?tenant_id=` to tenant routes); \
`service` (usage ingestion only). A missing or bad token is a 401; a valid token that may not do something \
is a 403.\n\n\
Errors are JSON `{\"detail\", \"code\"}` (the `ApiError` schema).\n\n\
The web pages (`/billing`, `/admin/billing`, sign-in, `/api/docs`) are HTML for browsers and are not part \
of this document.",
        license(name = "MIT")
    ),
    tags(
        (name = "billing", description = "A tenant's subscription, invoices and dashboard."),
        (name = "usage", description = "Usage ingestion from the voice and telephony services."),
        (name = "admin", description = "Super-admin operations: tenants, billing runs, overview, reports."),
        (name = "stripe", description = "Stripe's webhook."),
        (name = "operations", description = "Probes, metrics and this document."),
    )
)]
struct ApiDoc;

/// The document's fixed parts; the routers add the paths.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The whole document: every route's operation, the schemas they use, the bearer scheme, and on each
/// operation that needs a token the 401 and 403 answers every such route gives.
pub fn document() -> OpenApi {
    let (_, mut api) = super::documented().split_for_parts();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("An HS256 JWT signed with the platform's JWT_SECRET."))
                .build(),
        ),
    );
    components
        .schemas
        .insert(ApiError::name().into_owned(), ApiError::schema());
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add_auth_responses(op);
            }
        }
    }
    api
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ApiError::name())))
                .build(),
        )
        .build()
}

fn add_auth_responses(op: &mut Operation) {
    let responses = &mut op.responses.responses;
    responses.entry("401".to_owned()).or_insert_with(|| {
        error_response("The bearer token is missing, malformed, expired or not signed with HS256 (`not_authenticated`).")
            .into()
    });
    responses.entry("403".to_owned()).or_insert_with(|| {
        error_response(
            "The token's role may not do this, or it names another tenant (`forbidden`).",
        )
        .into()
    });
}

/// The document as served, rendered once.
pub static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    let mut json = serde_json::to_string_pretty(&document()).expect("the document serializes");
    json.push('\n');
    json
});

/// The OpenAPI document of this API.
///
/// Anyone may read it; `/api/docs` renders it as a page.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json"))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.as_str(),
    )
}
