//! Checking usage events as callers send them (the API's JSON, an import file's rows).
//!
//! Every problem of an event is reported, by field, so that a caller can fix a whole batch at once.

use super::{NewEvent, UsageType};
use crate::db::Db;
use crate::domain::TenantId;
use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use serde_json::Value;
use std::borrow::Cow;
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

// One function per field rule, shared by the JSON tree's checks ([`check`]) and the typed decoding of a
// well-formed batch ([`decode_valid_batch`]): each rule lives here once.

fn event_id(id: Option<&str>) -> Result<String, FieldError> {
    match id {
        Some(id)
            if !id.trim().is_empty()
                && id.chars().count() <= MAX_EVENT_ID_CHARS
                && !id.chars().any(char::is_control) =>
        {
            Ok(id.to_owned())
        }
        _ => Err(FieldError::new(
            "event_id",
            format!(
                "must be a non-empty string of at most {MAX_EVENT_ID_CHARS} characters, \
                 without control characters"
            ),
        )),
    }
}

fn tenant_id(id: Option<&str>) -> Result<TenantId, FieldError> {
    match id.map(TenantId::parse) {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(FieldError::new("tenant_id", e)),
        None => Err(FieldError::new("tenant_id", "must be a string")),
    }
}

fn usage_type(t: Option<&str>) -> Result<UsageType, FieldError> {
    match t.map(str::parse::<UsageType>) {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(FieldError::new("type", e)),
        None => Err(FieldError::new(
            "type",
            "must be one of stt_words, tts_words, phone_calls",
        )),
    }
}

fn quantity(q: Option<i64>) -> Result<i64, FieldError> {
    match q {
        Some(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(q),
        _ => Err(FieldError::new(
            "quantity",
            "must be a whole number >= 1 (and at most 1,000,000,000)",
        )),
    }
}

/// A call is one event: its quantity is 1.
fn call_quantity(t: Option<UsageType>, q: Option<i64>) -> Result<(), FieldError> {
    if t == Some(UsageType::PhoneCalls) && q.is_some_and(|q| q != 1) {
        return Err(FieldError::new(
            "quantity",
            "must be 1 for phone_calls (one event per call, with the call's id as event_id)",
        ));
    }
    Ok(())
}

/// `None`: not given (or null), which means when it was received.
fn occurred_at(at: Option<&str>, received_at: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    let Some(at) = at else {
        return Ok(received_at);
    };
    let t = DateTime::parse_from_rfc3339(at).map_err(|_| {
        FieldError::new(
            "occurred_at",
            "must be an RFC 3339 timestamp with offset, e.g. 2026-10-05T14:30:00Z",
        )
    })?;
    let t = t.with_timezone(&Utc).trunc_subsecs(6);
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    if t > received_at + MAX_FUTURE_SKEW {
        Err(FieldError::new(
            "occurred_at",
            "is more than a day in the future",
        ))
    } else if t < earliest {
        Err(FieldError::new("occurred_at", "is before the year 2000"))
    } else {
        Ok(t)
    }
}

/// Stored as compact JSON with sorted keys, however it was written.
fn metadata(m: Option<&Value>) -> Result<Option<String>, FieldError> {
    match m {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let s = v.to_string();
            if s.len() > MAX_METADATA_BYTES {
                Err(FieldError::new(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(FieldError::new("metadata", "must be a JSON object")),
    }
}

/// The value, or `None` with its problem added to `errors`.
fn keep<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// Checks one event's fields (not yet whether its tenant exists: see [`unknown_tenants`]).
pub fn check(raw: &RawEvent<'_>, received_at: DateTime<Utc>) -> Result<NewEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let event_id = keep(&mut errors, event_id(text(raw.event_id)));
    let tenant_id = keep(&mut errors, tenant_id(text(raw.tenant_id)));
    let usage_type = keep(&mut errors, usage_type(text(raw.usage_type)));
    let given_quantity = raw.quantity.and_then(crate::domain::json::as_whole_number);
    let quantity = keep(&mut errors, quantity(given_quantity));
    keep(&mut errors, call_quantity(usage_type, quantity));
    let occurred_at = match raw.occurred_at {
        None | Some(Value::Null) => keep(&mut errors, occurred_at(None, received_at)),
        Some(Value::String(s)) => keep(&mut errors, occurred_at(Some(s), received_at)),
        Some(_) => keep(
            &mut errors,
            Err(FieldError::new(
                "occurred_at",
                "must be an RFC 3339 timestamp string",
            )),
        ),
    };
    let metadata = keep(&mut errors, metadata(raw.metadata));

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

/// One event from typed values (a row of the platform's `usage_records`, a client's call), checked by the
/// same field rules as the API's JSON: the first problem found.
pub fn event(
    event_id_raw: &str,
    tenant_id_raw: &str,
    usage_type: UsageType,
    quantity_raw: i64,
    occurred_at_raw: DateTime<Utc>,
    metadata_raw: Option<&Value>,
    received_at: DateTime<Utc>,
) -> Result<NewEvent, FieldError> {
    let quantity = quantity(Some(quantity_raw))?;
    call_quantity(Some(usage_type), Some(quantity))?;
    let occurred = occurred_at_raw.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    Ok(NewEvent {
        event_id: event_id(Some(event_id_raw))?,
        tenant_id: tenant_id(Some(tenant_id_raw))?,
        usage_type,
        quantity,
        occurred_at: occurred_at(Some(&occurred), received_at)?,
        metadata: metadata(metadata_raw)?,
    })
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

/// A batch as it is usually sent, decoded straight from the body's bytes (no JSON tree, strings
/// borrowed where they have no escapes).
///
/// Unknown fields are refused, not skipped: serde_json skips a value without checking it is valid
/// UTF-8 or free of lone surrogate escapes, so a skipped field could let through a body the tree's
/// decoding refuses. A batch with extra fields takes the tree's path, which ignores them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch<'a> {
    #[serde(borrow)]
    events: Vec<WireEvent<'a>>,
}

/// Each field in the type a valid event has; any other type, or another field, fails the decoding.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    usage_type: Option<Cow<'a, str>>,
    quantity: Option<i64>,
    #[serde(borrow)]
    occurred_at: Option<Cow<'a, str>>,
    metadata: Option<Value>,
}

impl WireEvent<'_> {
    fn check(&self, received_at: DateTime<Utc>) -> Result<NewEvent, FieldError> {
        let usage_type = usage_type(self.usage_type.as_deref())?;
        let quantity = quantity(self.quantity)?;
        call_quantity(Some(usage_type), Some(quantity))?;
        Ok(NewEvent {
            event_id: event_id(self.event_id.as_deref())?,
            tenant_id: tenant_id(self.tenant_id.as_deref())?,
            usage_type,
            quantity,
            occurred_at: occurred_at(self.occurred_at.as_deref(), received_at)?,
            metadata: metadata(self.metadata.as_ref())?,
        })
    }
}

/// The common case, fast: a batch whose every event is valid, decoded from the body without building
/// a JSON tree. `None` when anything is off (not JSON, a field of another type or name, a value out
/// of bounds, a number written `5.0`); then [`decode_batch`] decodes the tree and says what, event by
/// event, or accepts what this one is too strict for. Both apply the same field rules.
pub fn decode_valid_batch(body: &[u8], received_at: DateTime<Utc>) -> Option<Batch> {
    let wire: WireBatch<'_> = serde_json::from_slice(body).ok()?;
    if wire.events.is_empty() || wire.events.len() > MAX_BATCH {
        return None;
    }
    let events = wire
        .events
        .iter()
        .map(|e| e.check(received_at).ok())
        .collect::<Option<Vec<NewEvent>>>()?;
    Some(Batch {
        total: events.len(),
        indexes: (0..events.len()).collect(),
        events,
        problems: Vec::new(),
    })
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
    let known = crate::db::tenants::existing(db, &list).await?;
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

    /// The typed decoding agrees with the tree's checks: it takes a batch only when every event is
    /// valid, and then decodes each exactly as they do; anything else is left to them.
    #[test]
    fn the_fast_decoding_agrees_with_the_checks() {
        let good = vec![
            json!({"event_id": "e1", "tenant_id": "t1", "type": "stt_words", "quantity": 12}),
            json!({"event_id": "caf\u{e9} \"1\"", "tenant_id": "t1", "type": "phone_calls", "quantity": 1,
                   "occurred_at": "2026-10-05T08:00:00.1234567-04:00", "metadata": {"z": 1, "a": [true]}}),
            json!({"event_id": "e3", "tenant_id": "t2", "type": "tts_words", "quantity": 5,
                   "occurred_at": null, "metadata": null}),
        ];
        let slow_only = [
            json!({"event_id": "e4", "tenant_id": "t1", "type": "tts_words", "quantity": 5.0}),
            json!({"event_id": "e4", "tenant_id": "t1", "type": "tts_words", "quantity": 5,
                   "extra": "ignored"}),
        ];
        let bad = vec![
            json!({"event_id": "e5", "tenant_id": "t1", "type": "tts_words", "quantity": 0}),
            json!({"event_id": "", "tenant_id": "t1", "type": "tts_words", "quantity": 1}),
            json!({"event_id": "e6", "tenant_id": "t 1", "type": "tts_words", "quantity": 1}),
            json!({"event_id": "e7", "tenant_id": "t1", "type": "sms", "quantity": 1}),
            json!({"event_id": "e8", "tenant_id": "t1", "type": "phone_calls", "quantity": 2}),
            json!({"event_id": "e9", "tenant_id": "t1", "type": "stt_words", "quantity": 1,
                   "occurred_at": "2027-01-01T00:00:00Z"}),
            json!({"event_id": "e10", "tenant_id": "t1", "type": "stt_words", "quantity": 1,
                   "metadata": [1]}),
            json!({"event_id": 11, "tenant_id": "t1", "type": "stt_words", "quantity": 1}),
            json!({"tenant_id": "t1", "type": "stt_words", "quantity": 1}),
            json!("not an event"),
        ];
        let decode = |events: &[Value]| {
            let body = json!({ "events": events });
            let bytes = serde_json::to_vec(&body).unwrap();
            (
                decode_valid_batch(&bytes, now()),
                decode_batch(&body, now()).unwrap(),
            )
        };
        let (fast, slow) = decode(&good);
        let fast = fast.expect("a valid batch decodes fast");
        assert!(slow.problems.is_empty());
        assert_eq!(fast.events, slow.events);
        assert_eq!(fast.indexes, slow.indexes);
        assert_eq!(fast.total, 3);
        for e in slow_only.iter().chain(&bad) {
            let mut events = good.clone();
            events.insert(1, e.clone());
            let (fast, slow) = decode(&events);
            assert!(fast.is_none(), "{e} is left to the checks");
            let expect_problems = bad.contains(e);
            assert_eq!(!slow.problems.is_empty(), expect_problems, "{e}");
        }
        let empty = serde_json::to_vec(&json!({"events": []})).unwrap();
        assert!(decode_valid_batch(&empty, now()).is_none());
        assert!(decode_valid_batch(b"{\"events\": [", now()).is_none());
        // Bodies that are not JSON text only in a field nobody reads are still not JSON.
        let event = r#"{"event_id": "e1", "tenant_id": "t1", "type": "stt_words", "quantity": 1"#;
        let invalid_utf8 = [
            &br#"{"events": ["#[..],
            event.as_bytes(),
            b", \"x\": \"\xff\"}]}",
        ]
        .concat();
        let lone_surrogate = format!(r#"{{"events": [{event}, "x": "\ud800"}}]}}"#);
        let top_level = format!(r#"{{"x": "\ud800", "events": [{event}}}]}}"#);
        for body in [
            &invalid_utf8[..],
            lone_surrogate.as_bytes(),
            top_level.as_bytes(),
        ] {
            assert!(serde_json::from_slice::<Value>(body).is_err());
            assert!(decode_valid_batch(body, now()).is_none());
        }
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
