//! The service driven over HTTP, on SQLite and on PostgreSQL: one test binary for the whole API.

mod helpers;

mod access;
mod admin_pages;
mod auth;
mod billing_crash;
mod billing_health;
mod billing_page;
mod billing_run;
mod hardening;
mod health;
mod hostile_input;
mod logs;
mod metrics;
mod migrations;
mod openapi;
mod overview;
mod pages;
mod platform_db;
mod platform_follow;
mod platform_import;
mod replicas;
mod stripe_setup;
mod stripe_sync;
mod subscriptions;
mod tenants;
mod usage;
mod usage_claims;
mod usage_crash;
mod usage_fold;
mod usage_reports;
mod web_session;
mod webhooks;
