//! Usage metering: ingest each event exactly once, keep per-day rollups, rate them, report them.
//!
//! - [`limit`]: `USAGE_EVENTS_PER_SECOND_PER_TOKEN`, events per second per caller token.
//! - [`ingest`]: a batch of events into `usage_events`, each in its rollup, in one transaction;
//!   [`batcher`] combines concurrent small requests into one such transaction.
//! - [`fold`]: adds stored events to their rollups' sums, set-based, after the requests (PostgreSQL;
//!   readers see the folded sums plus the events not folded yet).
//! - [`compact`]: merges the copies (shards) of a rollup that earlier versions wrote, once their day is
//!   over, so past days cost one rollup per key.
//! - [`rating`]: totals to cents and invoice lines (pure).
//! - [`billable`]: what is billable and not yet billed, and the monthly run's claim on it.
//! - [`report`]: usage and revenue by organization for a month.
//! - [`import`]: a CSV or JSON-lines file through [`ingest`].
//! - [`stored`]: which event ids are stored already (for callers that re-read their source).

pub mod batcher;
pub mod billable;
pub mod compact;
pub mod fold;
pub mod import;
pub mod ingest;
pub mod limit;
pub mod monthly_reports;
pub mod rating;
pub mod record;
pub mod stored;
pub mod validate;

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

pub use ingest::{ingest, IngestOutcome};

/// What a usage event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageType {
    // Declared in the order of their names so that the derived order equals SQL's `ORDER BY usage_type`.
    PhoneCalls,
    SttWords,
    TtsWords,
}

impl UsageType {
    pub const ALL: [UsageType; 3] = [
        UsageType::PhoneCalls,
        UsageType::SttWords,
        UsageType::TtsWords,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageType::PhoneCalls => "phone_calls",
            UsageType::SttWords => "stt_words",
            UsageType::TtsWords => "tts_words",
        }
    }
}

impl FromStr for UsageType {
    type Err = String;

    fn from_str(s: &str) -> Result<UsageType, String> {
        UsageType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("must be one of stt_words, tts_words, phone_calls; got {s:?}"))
    }
}

impl fmt::Display for UsageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds a stored event's quantity, its type as stored, to the totals field that type feeds.
pub(crate) fn add_to(totals: &mut rating::UsageTotals, usage_type: &str, quantity: i64) {
    // Ingestion stores only the three types; anything else is not usage we bill.
    if let Ok(t) = usage_type.parse::<UsageType>() {
        totals.add(t, quantity);
    }
}

/// A validated usage event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: String,
    pub tenant_id: crate::domain::TenantId,
    pub usage_type: UsageType,
    pub quantity: i64,
    pub occurred_at: DateTime<Utc>,
    /// The caller's metadata object as JSON text, kept for the audit trail.
    pub metadata: Option<String>,
}
