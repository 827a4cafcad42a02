//! The service driven over HTTP, on SQLite and on PostgreSQL: one test binary for the whole API.

mod helpers;

mod auth;
mod billing_run;
mod health;
mod hostile_input;
mod metrics;
mod openapi;
mod overview;
mod pages;
mod stripe_setup;
mod subscriptions;
mod tenants;
mod usage;
mod usage_claims;
mod usage_crash;
mod usage_reports;
mod webhooks;
