//! `Stripe-Signature` verification, exactly as Stripe signs: `t=<unix>,v1=<hex hmac-sha256(secret, "t.body")>`.
//!
//! Any matching `v1` passes, so a secret can be rolled while Stripe signs with both; timestamps further
//! than the tolerance from our clock, either way, fail (replays of old deliveries); an empty secret fails
//! everything: a missing configuration must never mean "accept all".

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far the signature's timestamp may be from our clock, in seconds, either way.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "no webhook secret is configured (STRIPE_WEBHOOK_SECRET), so no signature can be trusted"
    )]
    NoSecret,
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is more than {TOLERANCE_SECS} s from our clock")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// The parts of a `Stripe-Signature` header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<Vec<u8>>,
}

/// Parses `t=...,v1=...,v1=...,v0=...`; unknown schemes are ignored as Stripe's libraries do.
pub fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            "v1" => {
                // A signature that is not hex can never match; skip it rather than reject the header.
                if let Ok(bytes) = hex::decode(v) {
                    v1.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    Ok(SignatureHeader { timestamp, v1 })
}

/// Verifies `payload` against the header with any of `secrets` at time `now` (unix seconds).
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[&str],
    now: i64,
) -> Result<(), SignatureError> {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = parse_header(header.ok_or(SignatureError::Missing)?)?;
    // abs_diff, not `(now - t).abs()`: a hostile `t` near i64::MIN or MAX must not overflow.
    if now.abs_diff(header.timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(header.timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        for candidate in &header.v1 {
            // verify_slice compares in constant time.
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// Decodes a verified body into the event the webhook route applies.
pub fn decode_event(body: &[u8]) -> Result<super::Event, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Signs as Stripe does; used by tests and tools that replay events.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    #[test]
    fn accepts_a_fresh_matching_signature() {
        let h = sign(BODY, "whsec_a", 1_000);
        assert_eq!(verify(BODY, Some(&h), &["whsec_a"], 1_000), Ok(()));
        // 300 s either way is inside the tolerance; 301 is not.
        assert_eq!(verify(BODY, Some(&h), &["whsec_a"], 1_300), Ok(()));
        assert_eq!(verify(BODY, Some(&h), &["whsec_a"], 700), Ok(()));
        assert_eq!(
            verify(BODY, Some(&h), &["whsec_a"], 1_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(BODY, Some(&h), &["whsec_a"], 699),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn an_empty_secret_rejects_everything() {
        let h = sign(BODY, "", 1_000);
        assert_eq!(
            verify(BODY, Some(&h), &[""], 1_000),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(BODY, Some(&h), &[], 1_000),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn any_v1_may_match_so_secrets_can_roll() {
        let old = sign(BODY, "whsec_old", 1_000);
        let new = sign(BODY, "whsec_new", 1_000);
        let both = format!("{old},v1={},v0=deadbeef", new.split("v1=").nth(1).unwrap());
        assert_eq!(verify(BODY, Some(&both), &["whsec_new"], 1_000), Ok(()));
        assert_eq!(verify(BODY, Some(&both), &["whsec_old"], 1_000), Ok(()));
        assert_eq!(
            verify(BODY, Some(&both), &["whsec_other"], 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampering_and_garbage_fail() {
        let h = sign(BODY, "whsec_a", 1_000);
        assert_eq!(
            verify(b"{}", Some(&h), &["whsec_a"], 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(BODY, None, &["whsec_a"], 1_000),
            Err(SignatureError::Missing)
        );
        for extreme in [i64::MIN, i64::MAX] {
            let h = format!("t={extreme},v1=00");
            assert_eq!(
                verify(BODY, Some(&h), &["whsec_a"], 1_000),
                Err(SignatureError::Stale)
            );
        }
        for bad in ["", "t=abc,v1=00", "v1=00", "garbage", "t=1000"] {
            assert!(
                verify(BODY, Some(bad), &["whsec_a"], 1_000).is_err(),
                "{bad}"
            );
        }
    }
}
