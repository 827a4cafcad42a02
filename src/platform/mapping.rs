//! What a row of the platform's `usage_records` is billed as (pure): API.md, "The platform's data".
//!
//! How the platform writes those rows (techwiz42/thanotopolis at 23d725c):
//! - every row goes through `UsageTrackingService.record_usage` (backend/app/services/usage_service.py:21-52),
//!   which sets `usage_type`, `amount` and `additional_data` (never `usage_metadata`); `created_at` and
//!   `usage_date` are both the server's `now()` (backend/app/models/models.py:271-272);
//! - `stt_words` / `tts_words`: a word count, one row per utterance (the Deepgram voice agent,
//!   backend/app/api/telephony_voice_agent.py:941-975, with `call_id` in `additional_data`; the web voice
//!   paths, backend/app/api/voice_streaming.py:168,319,400,464 and streaming_stt.py:164,362; the Twilio
//!   media stream, backend/app/api/telephony_websocket.py:509,739);
//! - `telephony_minutes`: one row per call, `amount` its whole minutes (often 0), `call_id` in
//!   `additional_data`, written by two paths that can both run for one call: the voice agent at the call's
//!   end (telephony_voice_agent.py:1236-1247) and `TelephonyService._record_call_usage` on Twilio's
//!   completed status (backend/app/services/telephony_service.py:600-606, reached from the status webhook
//!   backend/app/api/telephony.py:575 and from telephony_websocket.py:204); its check for the voice agent's
//!   row (telephony_service.py:341-359) races with the voice agent's write;
//! - `phone_calls`: `record_phone_call` (usage_service.py:161-188), `amount` 1, `call_id` possibly null;
//!   no caller at 23d725c, but its rows are calls all the same;
//! - `tokens` (usage_service.py:54-86) and `api_calls` (models.py:254, schemas.py:332): not billed.

use crate::usage::validate;
use crate::usage::{NewEvent, UsageType};
use chrono::{DateTime, Utc};
use std::fmt;

/// A row of `usage_records` as the follower reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The row's id (a UUID, as text).
    pub id: String,
    pub tenant_id: String,
    pub usage_type: String,
    /// `amount`, numeric(10,4), as PostgreSQL prints it (`12.0000`).
    pub amount: String,
    /// `call_id` from `additional_data`, else from `usage_metadata` (calls only).
    pub call_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a row is billed as.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// One usage event, ready for ingestion.
    Event(NewEvent),
    /// A type we do not bill (`tokens`, `api_calls`, anything unrelated to words or calls), or no words.
    NotBilled,
    /// Cannot be billed as it is: kept back, counted and tried again.
    Held(Hold),
}

/// Why a row is held back, with the sentence an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: HoldReason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldReason {
    /// Words that are not a whole number, or a negative amount.
    InvalidAmount,
    /// A type we do not know whose name says it may be billable (`voice_words`, `stt_word`, ...).
    UnknownType,
    /// A tenant that is not registered here (the platform does not have it, or it could not be registered).
    UnknownTenant,
    /// A value our ingestion refuses (an id it cannot take, a time far in the future).
    Invalid,
}

impl HoldReason {
    pub const ALL: [HoldReason; 4] = [
        HoldReason::InvalidAmount,
        HoldReason::UnknownType,
        HoldReason::UnknownTenant,
        HoldReason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::InvalidAmount => "invalid_amount",
            HoldReason::UnknownType => "unknown_type",
            HoldReason::UnknownTenant => "unknown_tenant",
            HoldReason::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> HoldReason {
        HoldReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or(HoldReason::Invalid)
    }
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn held(reason: HoldReason, detail: String) -> Mapped {
    Mapped::Held(Hold { reason, detail })
}

/// The types a call is recorded as: one row per call.
pub const CALL_TYPES: [&str; 2] = ["phone_calls", "telephony_minutes"];

/// Types the platform writes that are not billed.
const NOT_BILLED: [&str; 2] = ["tokens", "api_calls"];

/// Parts of a type's name that say it may be words or calls: such an unknown type is held, not ignored.
const BILLABLE_HINTS: [&str; 8] = [
    "word", "call", "stt", "tts", "phone", "telephon", "voice", "speech",
];

/// The event id of a row that is not a call, or of a call that names no call id.
pub fn record_event_id(record_id: &str) -> String {
    format!("usage_records:{record_id}")
}

/// The event id of a call: the same whichever path (or client) records it.
pub fn call_event_id(call_id: &str) -> String {
    format!("call:{call_id}")
}

/// A whole, non-negative number of words from `amount` as PostgreSQL prints a numeric (`12.0000`).
pub fn whole_words(amount: &str) -> Option<i64> {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b == b'0')
    {
        return None;
    }
    int.parse().ok()
}

/// What `row` is billed as; `known_tenant` says whether its tenant is registered here.
pub fn map_row(
    row: &UsageRow,
    known_tenant: impl Fn(&str) -> bool,
    received_at: DateTime<Utc>,
) -> Mapped {
    let kind = row.usage_type.as_str();
    let (usage_type, event_id, quantity, metadata) = if kind == "stt_words" || kind == "tts_words" {
        let usage_type = if kind == "stt_words" {
            UsageType::SttWords
        } else {
            UsageType::TtsWords
        };
        match whole_words(&row.amount) {
            Some(0) => return Mapped::NotBilled,
            Some(words) => (usage_type, record_event_id(&row.id), words, None),
            None => {
                return held(
                    HoldReason::InvalidAmount,
                    format!(
                        "{kind} amount {} is not a whole number of words; correct the row on the platform",
                        row.amount
                    ),
                )
            }
        }
    } else if CALL_TYPES.contains(&kind) {
        let event_id = match row.call_id.as_deref() {
            Some(call) if !call.is_empty() => call_event_id(call),
            _ => record_event_id(&row.id),
        };
        let metadata = serde_json::json!({"usage_record_id": row.id, "usage_type": kind});
        (UsageType::PhoneCalls, event_id, 1, Some(metadata))
    } else if NOT_BILLED.contains(&kind) || !looks_billable(kind) {
        return Mapped::NotBilled;
    } else {
        return held(
            HoldReason::UnknownType,
            format!(
                "usage type {kind:?} is not one we bill (stt_words, tts_words, phone_calls, telephony_minutes) \
                 but its name says it may be; correct the row's type on the platform"
            ),
        );
    };
    if !known_tenant(&row.tenant_id) {
        return held(
            HoldReason::UnknownTenant,
            format!(
                "tenant {} is not registered here (the platform has no such organization, or it could not be \
                 registered: see `platform status`)",
                row.tenant_id
            ),
        );
    }
    match validate::event(
        &event_id,
        &row.tenant_id,
        usage_type,
        quantity,
        row.created_at,
        metadata.as_ref(),
        received_at,
    ) {
        Ok(event) => Mapped::Event(event),
        Err(e) => held(
            HoldReason::Invalid,
            format!("{} ({event_id}): {}", e.field, e.message),
        ),
    }
}

fn looks_billable(kind: &str) -> bool {
    let lower = kind.to_ascii_lowercase();
    BILLABLE_HINTS.iter().any(|h| lower.contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    fn row(kind: &str, amount: &str, call: Option<&str>) -> UsageRow {
        UsageRow {
            id: "0b6d3c1e-8f1a-4a57-9f7e-2d9e3c4b5a61".into(),
            tenant_id: "5f0c2b7a-1d3e-4f6a-8b9c-0d1e2f3a4b5c".into(),
            usage_type: kind.into(),
            amount: amount.into(),
            call_id: call.map(Into::into),
            created_at: now() - chrono::Duration::minutes(3),
        }
    }

    fn map(r: &UsageRow) -> Mapped {
        map_row(r, |_| true, now())
    }

    #[test]
    fn words_are_their_amount_under_the_row_id() {
        let Mapped::Event(e) = map(&row("stt_words", "12.0000", Some("c1"))) else {
            panic!("an event")
        };
        assert_eq!(
            e.event_id,
            "usage_records:0b6d3c1e-8f1a-4a57-9f7e-2d9e3c4b5a61"
        );
        assert_eq!(e.usage_type, UsageType::SttWords);
        assert_eq!(e.quantity, 12);
        assert_eq!(e.occurred_at, now() - chrono::Duration::minutes(3));
        assert_eq!(e.metadata, None);
        let Mapped::Event(e) = map(&row("tts_words", "7", None)) else {
            panic!("an event")
        };
        assert_eq!((e.usage_type, e.quantity), (UsageType::TtsWords, 7));
    }

    #[test]
    fn a_call_is_one_event_named_for_its_call() {
        for kind in CALL_TYPES {
            for amount in ["0.0000", "1.0000", "14.0000"] {
                let Mapped::Event(e) = map(&row(kind, amount, Some("call-9"))) else {
                    panic!("an event")
                };
                assert_eq!(e.event_id, "call:call-9");
                assert_eq!((e.usage_type, e.quantity), (UsageType::PhoneCalls, 1));
                assert!(e.metadata.unwrap().contains(kind));
            }
        }
        let Mapped::Event(e) = map(&row("phone_calls", "1.0000", None)) else {
            panic!("an event")
        };
        assert_eq!(
            e.event_id,
            record_event_id("0b6d3c1e-8f1a-4a57-9f7e-2d9e3c4b5a61")
        );
        let Mapped::Event(e) = map(&row("phone_calls", "1.0000", Some(""))) else {
            panic!("an event")
        };
        assert!(e.event_id.starts_with("usage_records:"));
    }

    #[test]
    fn other_types_are_not_billed_unless_their_name_says_they_may_be() {
        for kind in ["tokens", "api_calls", "storage_bytes", "emails"] {
            assert_eq!(map(&row(kind, "5.0000", None)), Mapped::NotBilled, "{kind}");
        }
        for kind in [
            "voice_words",
            "stt_word",
            "TTS_WORDS",
            "phone_call",
            "speech_seconds",
        ] {
            let Mapped::Held(h) = map(&row(kind, "5.0000", None)) else {
                panic!("{kind} is held")
            };
            assert_eq!(h.reason, HoldReason::UnknownType, "{kind}");
        }
    }

    #[test]
    fn fractional_or_negative_words_are_held_and_none_is_nothing() {
        for amount in ["12.5000", "-3.0000", "0.0001", "", "1e3"] {
            let Mapped::Held(h) = map(&row("stt_words", amount, None)) else {
                panic!("{amount:?} is held")
            };
            assert_eq!(h.reason, HoldReason::InvalidAmount);
            assert!(h.detail.contains("whole number"), "{}", h.detail);
        }
        assert_eq!(map(&row("tts_words", "0.0000", None)), Mapped::NotBilled);
    }

    #[test]
    fn an_unknown_tenant_or_an_id_ingestion_refuses_is_held() {
        let r = row("stt_words", "3.0000", None);
        let Mapped::Held(h) = map_row(&r, |_| false, now()) else {
            panic!("held")
        };
        assert_eq!(h.reason, HoldReason::UnknownTenant);
        // Not billed stays not billed, whatever the tenant.
        assert_eq!(
            map_row(&row("tokens", "3", None), |_| false, now()),
            Mapped::NotBilled
        );
        let long = "x".repeat(300);
        let Mapped::Held(h) = map(&row("telephony_minutes", "2.0000", Some(&long))) else {
            panic!("held")
        };
        assert_eq!(h.reason, HoldReason::Invalid);
        assert!(h.detail.starts_with("event_id"), "{}", h.detail);
        let mut future = row("stt_words", "3.0000", None);
        future.created_at = now() + chrono::Duration::days(3);
        let Mapped::Held(h) = map(&future) else {
            panic!("held")
        };
        assert_eq!(h.reason, HoldReason::Invalid);
    }

    #[test]
    fn whole_words_reads_numerics_as_postgres_prints_them() {
        assert_eq!(whole_words("12.0000"), Some(12));
        assert_eq!(whole_words("12"), Some(12));
        assert_eq!(whole_words("0.0000"), Some(0));
        assert_eq!(whole_words("999999.0000"), Some(999_999));
        assert_eq!(whole_words("12.0100"), None);
        assert_eq!(whole_words("-1.0000"), None);
        assert_eq!(whole_words(".0"), None);
    }

    /// The cases the Python package's tests check too (clients/python): one mapping, two implementations.
    #[test]
    fn the_shared_cases_map_as_listed() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/platform/mapping_cases.json"))
                .unwrap();
        for case in cases.as_array().unwrap() {
            let r = &case["row"];
            let row = UsageRow {
                id: r["id"].as_str().unwrap().into(),
                tenant_id: "5f0c2b7a-1d3e-4f6a-8b9c-0d1e2f3a4b5c".into(),
                usage_type: r["usage_type"].as_str().unwrap().into(),
                amount: r["amount"].as_str().unwrap().into(),
                call_id: r["call_id"].as_str().map(Into::into),
                created_at: now(),
            };
            let expect = &case["expect"];
            match map(&row) {
                Mapped::Event(e) => {
                    assert_eq!(expect["event_id"], e.event_id.as_str(), "{case}");
                    assert_eq!(expect["type"], e.usage_type.as_str(), "{case}");
                    assert_eq!(expect["quantity"], e.quantity, "{case}");
                }
                Mapped::NotBilled => assert_eq!(expect, "not_billed", "{case}"),
                Mapped::Held(h) => assert_eq!(expect["held"], h.reason.as_str(), "{case}"),
            }
        }
    }

    #[test]
    fn hold_reasons_round_trip() {
        for r in HoldReason::ALL {
            assert_eq!(HoldReason::parse(r.as_str()), r);
        }
    }
}
