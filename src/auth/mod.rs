//! Authentication and authorization: the platform's HS256 JWTs, verified once per request.
//!
//! Extractors say who may call a handler: [`TenantUser`], [`TenantAdmin`], [`SuperAdmin`], [`UsageWriter`].
//! A missing or bad token is 401; a valid token whose role may not do this is 403.

mod extract;
pub mod jwt;

pub use extract::{AccessReader, Caller, SuperAdmin, TenantAdmin, TenantUser, UsageWriter};
pub use jwt::{Claims, Role};
