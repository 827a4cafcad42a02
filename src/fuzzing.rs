//! Hostile input: the parsers that read what strangers send, driven with arbitrary bytes.
//!
//! Each function feeds one input to the same code the routes use and checks what must hold whatever the
//! input; it panics only when that fails. The cargo-fuzz targets in `fuzz/` call them (`scripts/fuzz.sh`),
//! and the property tests below run them on random and near-valid input in every `cargo test`.

use crate::stripe::{self, webhook};
use crate::usage::validate::{self, MAX_BATCH, MAX_FUTURE_SKEW, MAX_QUANTITY};
use chrono::{TimeZone, Utc};
use serde_json::Value;

const SECRET: &str = "whsec_fuzz";

/// Splits an input at its first newline: a header line, then a body.
fn header_and_body(data: &[u8]) -> (String, &[u8]) {
    let cut = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..cut]).into_owned();
    (header, data.get(cut + 1..).unwrap_or_default())
}

/// `Stripe-Signature`: the first line is the header, the rest the body.
pub fn stripe_signature(data: &[u8]) {
    let (header, body) = header_and_body(data);
    let parsed = webhook::parse_header(&header);
    if let Ok(h) = &parsed {
        assert!(!h.v1.is_empty(), "a parsed header has a v1 signature");
    }
    // Nobody without the secret signs correctly: at any clock, this is refused.
    let mut clocks = vec![0, 1_700_000_000, i64::MIN, i64::MAX];
    clocks.extend(parsed.as_ref().map(|h| h.timestamp));
    for now in clocks {
        assert!(webhook::verify(body, Some(&header), &[SECRET], now).is_err());
    }
    assert!(webhook::verify(body, Some(&header), &[""], 0).is_err());
    // Whatever the timestamp and body, what we sign we accept, and only with the same secret.
    let t = parsed.map_or(1_700_000_000, |h| h.timestamp);
    let signed = webhook::sign(body, SECRET, t);
    assert_eq!(webhook::verify(body, Some(&signed), &[SECRET], t), Ok(()));
    assert!(webhook::verify(body, Some(&signed), &["whsec_other"], t).is_err());
}

/// The webhook body, as the route decodes it once the signature holds, then as the event's handlers
/// read its object.
pub fn webhook_event(data: &[u8]) {
    let t = 1_700_000_000;
    let signed = webhook::sign(data, SECRET, t);
    assert_eq!(webhook::verify(data, Some(&signed), &[SECRET], t), Ok(()));
    let Ok(event) = webhook::decode_event(data) else {
        return;
    };
    let _ = event.data.object.get("id").and_then(Value::as_str);
    let _ = crate::subscriptions::sync::ts(Some(event.created));
    let object = event.data.object;
    let _ = serde_json::from_value::<stripe::Subscription>(object.clone());
    let _ = serde_json::from_value::<stripe::Invoice>(object.clone());
    let _ = serde_json::from_value::<stripe::CheckoutSession>(object);
}

/// The body of `POST /api/usage/events`, decoded both ways the route does: the typed decoding takes
/// only batches the tree's checks find wholly valid, and decodes them to the same events.
pub fn usage_batch(data: &[u8]) {
    let received_at = Utc.with_ymd_and_hms(2026, 10, 5, 12, 0, 0).unwrap();
    let fast = validate::decode_valid_batch(data, received_at);
    let Ok(body) = crate::http::extract::parse_json::<Value>(data) else {
        assert!(
            fast.is_none(),
            "the typed decoding took a body that is not JSON"
        );
        return;
    };
    let Ok(batch) = validate::decode_batch(&body, received_at) else {
        assert!(fast.is_none(), "the typed decoding took an unusable batch");
        return;
    };
    if let Some(fast) = fast {
        assert!(
            batch.problems.is_empty(),
            "the typed decoding took an invalid batch"
        );
        assert_eq!(fast.events, batch.events);
        assert_eq!((fast.total, &fast.indexes), (batch.total, &batch.indexes));
    }
    assert!((1..=MAX_BATCH).contains(&batch.total));
    assert_eq!(batch.events.len(), batch.indexes.len());
    assert!(batch.indexes.windows(2).all(|w| w[0] < w[1]));
    // Every event is either valid or has a problem, never both, never neither.
    for i in 0..batch.total {
        let valid = batch.indexes.binary_search(&i).is_ok();
        let problem = batch.problems.iter().any(|(j, _)| *j == i);
        assert!(
            valid != problem,
            "event {i}: valid {valid}, problem {problem}"
        );
    }
    for e in &batch.events {
        assert!((1..=MAX_QUANTITY).contains(&e.quantity));
        assert!(e.occurred_at <= received_at + MAX_FUTURE_SKEW);
        assert!(!e.event_id.trim().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Near-valid `Stripe-Signature` lines, with odd timestamps, over arbitrary bodies.
    fn signature_input() -> impl Strategy<Value = Vec<u8>> {
        (
            "(t=-?[0-9]{1,20}|v1=[0-9a-f]{0,70}|v0=[a-z]*|[a-z0-9=]{0,8}|\\s*)(,(t=-?[0-9]{1,20}|v1=[0-9a-f]{0,66}|x=y)){0,4}",
            proptest::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(header, body)| {
                let mut data = header.into_bytes();
                data.push(b'\n');
                data.extend(body);
                data
            })
    }

    fn json_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z_0-9:.+-]{0,12}".prop_map(Value::from),
            "(19|20|99)[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|[+-][0-2][0-9]:[0-5][0-9])"
                .prop_map(Value::from),
            prop_oneof![Just("stt_words"), Just("tts_words"), Just("phone_calls")].prop_map(Value::from),
        ]
    }

    /// Batches shaped like real ones, with any value in any field.
    fn batch_input() -> impl Strategy<Value = Vec<u8>> {
        let event = proptest::collection::btree_map(
            prop_oneof![
                Just("event_id".to_owned()),
                Just("tenant_id".to_owned()),
                Just("type".to_owned()),
                Just("quantity".to_owned()),
                Just("occurred_at".to_owned()),
                Just("metadata".to_owned()),
                "[a-z]{1,4}",
            ],
            json_scalar(),
            0..7,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()));
        proptest::collection::vec(prop_oneof![event, json_scalar()], 0..20).prop_map(|events| {
            serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
        })
    }

    /// Batches of events that are mostly valid, each field sometimes another valid value, sometimes an
    /// invalid one or one of another JSON type: the typed decoding takes many of them whole.
    fn near_valid_batch_input() -> impl Strategy<Value = Vec<u8>> {
        /// A valid value four times in five.
        fn pick(
            valid: Vec<Option<Value>>,
            invalid: Vec<Option<Value>>,
        ) -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                4 => proptest::sample::select(valid),
                1 => proptest::sample::select(invalid),
            ]
        }
        use serde_json::json;
        let event = (
            pick(
                vec![Some(json!("call-1")), Some(json!("réunion \"q\" \\ ☎"))],
                vec![
                    Some(json!("  ")),
                    Some(json!("a\u{7}b")),
                    Some(json!(7)),
                    None,
                ],
            ),
            pick(
                vec![Some(json!("acme")), Some(json!(r"acme\eu"))],
                vec![Some(json!("a b")), Some(json!(null)), None],
            ),
            pick(
                vec![Some(json!("stt_words")), Some(json!("tts_words"))],
                vec![Some(json!("phone_calls")), Some(json!("sms"))],
            ),
            pick(
                vec![Some(json!(1)), Some(json!(40))],
                vec![
                    Some(json!(1.0)),
                    Some(json!(2.5)),
                    Some(json!(0)),
                    Some(json!("3")),
                    Some(json!(1_000_000_001)),
                ],
            ),
            pick(
                vec![
                    None,
                    Some(json!(null)),
                    Some(json!("2026-10-05T08:00:00.1234567-04:00")),
                ],
                vec![
                    Some(json!("2026-10-07T12:00:01Z")),
                    Some(json!("yesterday")),
                    Some(json!(5)),
                ],
            ),
            pick(
                vec![
                    None,
                    Some(json!(null)),
                    Some(json!({"z": 1, "a": ["x\n", true]})),
                ],
                vec![Some(json!([1])), Some(json!("s"))],
            ),
            // A field the batch's types do not know sends the batch down the tree's path: rarely.
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(id, tenant, kind, quantity, at, metadata, extra)| {
                let mut m = serde_json::Map::new();
                for (k, v) in [
                    ("event_id", id),
                    ("tenant_id", tenant),
                    ("type", kind),
                    ("quantity", quantity),
                    ("occurred_at", at),
                    ("metadata", metadata),
                ] {
                    if let Some(v) = v {
                        m.insert(k.to_owned(), v);
                    }
                }
                if extra {
                    m.insert("extra".to_owned(), json!({"ignored": true}));
                }
                Value::Object(m)
            });
        proptest::collection::vec(event, 1..6).prop_map(|events| {
            serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
        })
    }

    /// Events shaped like Stripe's, with any value in the fields our types read.
    fn event_input() -> impl Strategy<Value = Vec<u8>> {
        let object = proptest::collection::btree_map(
            prop_oneof![
                Just("id".to_owned()),
                Just("object".to_owned()),
                Just("status".to_owned()),
                Just("customer".to_owned()),
                Just("subscription".to_owned()),
                Just("metadata".to_owned()),
                Just("items".to_owned()),
                Just("lines".to_owned()),
                Just("current_period_start".to_owned()),
                Just("created".to_owned()),
                Just("amount_due".to_owned()),
                "[a-z_]{1,10}",
            ],
            json_scalar(),
            0..10,
        );
        (any::<i64>(), "[a-z.]{0,30}", object).prop_map(|(created, kind, object)| {
            serde_json::to_vec(&serde_json::json!({
                "id": "evt_1", "type": kind, "created": created, "data": {"object": object}
            }))
            .unwrap()
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn stripe_signature_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            stripe_signature(&data);
        }

        #[test]
        fn stripe_signature_on_near_valid_headers(data in signature_input()) {
            stripe_signature(&data);
        }

        #[test]
        fn webhook_event_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            webhook_event(&data);
        }

        #[test]
        fn webhook_event_on_event_shapes(data in event_input()) {
            webhook_event(&data);
        }

        #[test]
        fn usage_batch_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            usage_batch(&data);
        }

        #[test]
        fn usage_batch_on_batch_shapes(data in batch_input()) {
            usage_batch(&data);
        }

        #[test]
        fn usage_batch_on_near_valid_batches(data in near_valid_batch_input()) {
            usage_batch(&data);
        }
    }

    /// The fuzz targets' seeds, crashes found once among them, pass here too.
    #[test]
    fn fuzz_seed_files_pass() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 3] = [
            ("stripe_signature", stripe_signature),
            ("webhook_event", webhook_event),
            ("usage_batch", usage_batch),
        ];
        for (target, run) in targets {
            let files = std::fs::read_dir(seeds.join(target)).expect("a seed folder per target");
            let mut count = 0;
            for file in files {
                run(&std::fs::read(file.unwrap().path()).unwrap());
                count += 1;
            }
            assert!(count > 0, "no seed for {target}");
        }
    }

    #[test]
    fn seeds_pass() {
        for seed in [
            &b"t=1700000000,v1=00ff\n{}"[..],
            b"t=-9223372036854775808,v1=00\n{}",
            b"t=9223372036854775807,v1=00\n",
        ] {
            stripe_signature(seed);
        }
        webhook_event(br#"{"id":"evt_1","type":"customer.subscription.updated","created":-9223372036854775808,"data":{"object":{"id":"sub_1"}}}"#);
        usage_batch(br#"{"events":[{"event_id":"e","tenant_id":"t","type":"stt_words","quantity":1,"occurred_at":"9999-12-31T23:59:59+23:59"}]}"#);
    }
}
