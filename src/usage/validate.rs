//! Checking usage events as callers send them (the API's JSON, an import file's rows).
//!
//! Every problem of an event is reported, by field, so that a caller can fix a whole batch at once.

use super::{NewEvent, UsageType};
use crate::db::Db;
use crate::domain::TenantId;
use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use serde_json::Value;
use std::collections::HashSet;

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;
pub const MAX_EVENT_ID_CHARS: usize = 200;
/// Metadata is kept for the audit trail, not for analytics: a few fields, not a payload.
pub const MAX_METADATA_BYTES: usize = 4096;
/// A bound far above any real event that keeps every sum of quantities far from overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// How far ahead of our clock an `occurred_at` may be (clock skew between services).
pub const MAX_FUTURE_SKEW: Duration = Duration::days(1);

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// Raw field values, before checking, from JSON or from a file's columns.
#[derive(Debug, Default)]
pub struct RawEvent<'a> {
    pub event_id: Option<&'a Value>,
    pub tenant_id: Option<&'a Value>,
    pub usage_type: Option<&'a Value>,
    pub quantity: Option<&'a Value>,
    pub occurred_at: Option<&'a Value>,
    pub metadata: Option<&'a Value>,
}

impl<'a> RawEvent<'a> {
    pub fn from_json(v: &'a Value) -> Result<RawEvent<'a>, FieldError> {
        let obj = v
            .as_object()
            .ok_or_else(|| FieldError::new("", "must be an object"))?;
        Ok(RawEvent {
            event_id: obj.get("event_id"),
            tenant_id: obj.get("tenant_id"),
            usage_type: obj.get("type"),
            quantity: obj.get("quantity"),
            occurred_at: obj.get("occurred_at"),
            metadata: obj.get("metadata"),
        })
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// Checks one event's fields (not yet whether its tenant exists: see [`unknown_tenants`]).
pub fn check(raw: &RawEvent<'_>, received_at: DateTime<Utc>) -> Result<NewEvent, Vec<FieldError>> {
    let mut errors = Vec::new();

    let event_id = match text(raw.event_id) {
        Some(id)
            if !id.trim().is_empty()
                && id.chars().count() <= MAX_EVENT_ID_CHARS
                && !id.chars().any(char::is_control) =>
        {
            Some(id.to_owned())
        }
        _ => {
            errors.push(FieldError::new(
                "event_id",
                format!(
                    "must be a non-empty string of at most {MAX_EVENT_ID_CHARS} characters, \
                     without control characters"
                ),
            ));
            None
        }
    };

    let tenant_id = match text(raw.tenant_id).map(TenantId::parse) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            errors.push(FieldError::new("tenant_id", e));
            None
        }
        None => {
            errors.push(FieldError::new("tenant_id", "must be a string"));
            None
        }
    };

    let usage_type = match text(raw.usage_type).map(str::parse::<UsageType>) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            errors.push(FieldError::new("type", e));
            None
        }
        None => {
            errors.push(FieldError::new(
                "type",
                "must be one of stt_words, tts_words, phone_calls",
            ));
            None
        }
    };

    let quantity = match raw.quantity.and_then(crate::error::as_whole_number) {
        Some(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q),
        _ => {
            errors.push(FieldError::new(
                "quantity",
                "must be a whole number >= 1 (and at most 1,000,000,000)",
            ));
            None
        }
    };
    if usage_type == Some(UsageType::PhoneCalls) && quantity.is_some_and(|q| q != 1) {
        errors.push(FieldError::new(
            "quantity",
            "must be 1 for phone_calls (one event per call, with the call's id as event_id)",
        ));
    }

    let occurred_at = match raw.occurred_at {
        None | Some(Value::Null) => Some(received_at),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                let t = t.with_timezone(&Utc).trunc_subsecs(6);
                let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
                if t > received_at + MAX_FUTURE_SKEW {
                    errors.push(FieldError::new(
                        "occurred_at",
                        "is more than a day in the future",
                    ));
                    None
                } else if t < earliest {
                    errors.push(FieldError::new("occurred_at", "is before the year 2000"));
                    None
                } else {
                    Some(t)
                }
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "occurred_at",
                    "must be an RFC 3339 timestamp with offset, e.g. 2026-10-05T14:30:00Z",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "occurred_at",
                "must be an RFC 3339 timestamp string",
            ));
            None
        }
    };

    let metadata = match raw.metadata {
        None | Some(Value::Null) => Some(None),
        Some(v @ Value::Object(_)) => {
            let s = v.to_string();
            if s.len() > MAX_METADATA_BYTES {
                errors.push(FieldError::new(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
                None
            } else {
                Some(Some(s))
            }
        }
        Some(_) => {
            errors.push(FieldError::new("metadata", "must be a JSON object"));
            None
        }
    };

    match (
        event_id,
        tenant_id,
        usage_type,
        quantity,
        occurred_at,
        metadata,
    ) {
        (
            Some(event_id),
            Some(tenant_id),
            Some(usage_type),
            Some(quantity),
            Some(occurred_at),
            Some(metadata),
        ) if errors.is_empty() => Ok(NewEvent {
            event_id,
            tenant_id,
            usage_type,
            quantity,
            occurred_at,
            metadata,
        }),
        _ => Err(errors),
    }
}

/// A usage batch as `POST /api/usage/events` receives it, checked event by event.
#[derive(Debug, Default)]
pub struct Batch {
    /// How many events the batch holds, valid or not.
    pub total: usize,
    /// The valid events, in order, with their index in the batch.
    pub events: Vec<NewEvent>,
    pub indexes: Vec<usize>,
    /// Every problem, as `(index, "events[i].field: message")`, in index order.
    pub problems: Vec<(usize, String)>,
}

/// Decodes the body `{"events": [...]}`: `Err` with a sentence when the batch itself is unusable (not that
/// shape, empty, too big), else every event checked (tenants are not looked up here).
pub fn decode_batch(body: &Value, received_at: DateTime<Utc>) -> Result<Batch, String> {
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or("events: send {\"events\": [...]}, an array of usage events.")?;
    if events.is_empty() {
        return Err("events: the batch is empty; send at least one event.".into());
    }
    if events.len() > MAX_BATCH {
        return Err(format!(
            "events: at most {MAX_BATCH} events per batch, got {}; split the batch.",
            events.len()
        ));
    }
    let mut batch = Batch {
        total: events.len(),
        events: Vec::with_capacity(events.len()),
        indexes: Vec::with_capacity(events.len()),
        problems: Vec::new(),
    };
    for (i, value) in events.iter().enumerate() {
        let checked = RawEvent::from_json(value)
            .map_err(|e| vec![e])
            .and_then(|raw| check(&raw, received_at));
        match checked {
            Ok(event) => {
                batch.events.push(event);
                batch.indexes.push(i);
            }
            Err(errors) => batch.problems.extend(errors.into_iter().map(|e| {
                let field = if e.field.is_empty() {
                    String::new()
                } else {
                    format!(".{}", e.field)
                };
                (i, format!("events[{i}]{field}: {}", e.message))
            })),
        }
    }
    Ok(batch)
}

/// Whether a storage error is a foreign key failure: in ingestion, an event naming an unknown tenant.
pub fn is_unknown_tenant(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

/// Of the given tenant ids, those that name no tenant.
pub async fn unknown_tenants<'a>(
    db: &Db,
    ids: impl IntoIterator<Item = &'a TenantId>,
) -> Result<HashSet<String>, sqlx::Error> {
    let wanted: HashSet<&str> = ids.into_iter().map(TenantId::as_str).collect();
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let list: Vec<&str> = wanted.iter().copied().collect();
    let known: Vec<String> = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = ANY($1)")
                .bind(&list)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(pool) => {
            let json = serde_json::to_string(&list).expect("strings serialize");
            sqlx::query_scalar(
                "SELECT id FROM tenants WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(json)
            .fetch_all(pool)
            .await?
        }
    };
    let known: HashSet<&str> = known.iter().map(String::as_str).collect();
    Ok(wanted
        .into_iter()
        .filter(|id| !known.contains(id))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap()
    }

    fn fields(v: Value) -> Vec<&'static str> {
        let raw = RawEvent::from_json(&v).unwrap();
        match check(&raw, now()) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_good_event_passes_and_defaults_its_time() {
        let v = json!({"event_id": "e1", "tenant_id": "t1", "type": "stt_words", "quantity": 12});
        let e = check(&RawEvent::from_json(&v).unwrap(), now()).unwrap();
        assert_eq!(e.occurred_at, now());
        assert_eq!(e.quantity, 12);
        assert_eq!(e.usage_type, UsageType::SttWords);
        assert_eq!(e.metadata, None);
        let v = json!({"event_id": "e1", "tenant_id": "t1", "type": "phone_calls", "quantity": 1,
                       "occurred_at": "2026-10-05T08:00:00-04:00", "metadata": {"call": "c1"}});
        let e = check(&RawEvent::from_json(&v).unwrap(), now()).unwrap();
        assert_eq!(
            e.occurred_at,
            Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap()
        );
        assert_eq!(e.metadata.as_deref(), Some(r#"{"call":"c1"}"#));
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = json!({"event_id": "e1", "tenant_id": "t1", "type": "stt_words", "quantity": 3});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(fields(with("quantity", json!(0))), ["quantity"]);
        assert_eq!(fields(with("quantity", json!(1.5))), ["quantity"]);
        assert_eq!(fields(with("quantity", json!("3"))), ["quantity"]);
        assert_eq!(fields(with("type", json!("sms"))), ["type"]);
        assert_eq!(fields(with("event_id", json!(""))), ["event_id"]);
        assert_eq!(
            fields(with("event_id", json!("x".repeat(201)))),
            ["event_id"]
        );
        assert_eq!(
            fields(with("event_id", json!("x".repeat(200)))),
            Vec::<&str>::new()
        );
        assert_eq!(fields(with("tenant_id", json!("a b"))), ["tenant_id"]);
        assert_eq!(
            fields(with("occurred_at", json!("yesterday"))),
            ["occurred_at"]
        );
        assert_eq!(
            fields(with("occurred_at", json!("2026-10-07T12:00:01Z"))),
            ["occurred_at"]
        );
        assert_eq!(fields(with("metadata", json!([1]))), ["metadata"]);
        assert_eq!(
            fields(with("metadata", json!({"x": "y".repeat(5000)}))),
            ["metadata"]
        );
        let call =
            json!({"event_id": "c", "tenant_id": "t1", "type": "phone_calls", "quantity": 2});
        assert_eq!(fields(call), ["quantity"]);
        assert_eq!(
            fields(json!({"quantity": -1})),
            ["event_id", "tenant_id", "type", "quantity"]
        );
    }
}
