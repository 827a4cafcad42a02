//! Thanotopolis billing: Stripe subscriptions, usage metering and the monthly invoice run.
//!
//! The module map is in `docs/ARCHITECTURE.md`.

pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod ct;
pub mod dashboard;
pub mod db;
pub mod detached;
pub mod domain;
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod overview;
pub mod platform;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod stripe;
pub mod subscriptions;
pub mod telemetry;
pub mod tenants;
pub mod usage;
