//! The monthly run: bill each tenant's unbilled usage as invoice items on one Stripe invoice per tenant
//! and period, exactly once, whatever fails.
//!
//! The money path: `usage::billable::claim_unbilled` marks the usage a tenant's invoice will carry
//! (idempotent by the invoice's key) → `lines` turns it into invoice lines → `ledger` records them → `run` makes the
//! Stripe calls step by step, each with an idempotency key derived from tenant, period and step, recording
//! each step in the ledger so a re-run moves on instead of repeating.

pub mod attempts;
pub mod collect;
pub mod health;
pub mod lease;
pub mod ledger;
pub mod lines;
pub mod run;
pub mod run_log;
pub mod run_report;
pub mod scheduler;
pub mod start;
pub mod webhook;

pub use run::{run_period, RunOptions};
pub use run_report::RunReport;
