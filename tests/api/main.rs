//! The service driven over HTTP, on SQLite and on PostgreSQL: one test binary for the whole API.

mod helpers;

mod auth;
mod health;
mod tenants;
mod usage;
mod usage_claims;
mod usage_crash;
mod usage_reports;
