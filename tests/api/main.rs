//! The service driven over HTTP, on SQLite and on PostgreSQL: one test binary for the whole API.

mod helpers;

mod auth;
mod health;
mod overview;
mod pages;
mod subscriptions;
mod tenants;
mod usage;
mod usage_claims;
mod webhooks;
