//! `USAGE_EVENTS_PER_SECOND_PER_TOKEN`: an optional limit on how fast one caller may report events.
//!
//! A token bucket per caller: it holds up to a second's worth of events (and at least one full batch,
//! so that a batch can always pass once the bucket is full) and refills continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimit {
    per_second: f64,
    capacity: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `per_second` 0 means no limit.
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            capacity: f64::from(per_second).max(super::validate::MAX_BATCH as f64),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` from `caller`'s bucket, or says how many seconds to wait before retrying.
    pub fn take(&self, caller: &str, events: usize) -> Result<(), u64> {
        self.take_at(caller, events, Instant::now())
    }

    fn take_at(&self, caller: &str, events: usize, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        let (tokens, at) = buckets
            .entry(caller.to_owned())
            .or_insert((self.capacity, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.capacity);
        *at = now;
        let need = events as f64;
        if *tokens >= need {
            *tokens -= need;
            Ok(())
        } else {
            Err(((need - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zero_means_no_limit() {
        let l = RateLimit::new(0);
        assert!(l.take("a", 1_000_000).is_ok());
    }

    #[test]
    fn buckets_refill_per_caller() {
        let l = RateLimit::new(100);
        let t0 = Instant::now();
        // A full batch passes once, even above the per-second rate.
        assert!(l.take_at("svc", 1000, t0).is_ok());
        assert_eq!(l.take_at("svc", 100, t0), Err(1));
        assert!(l.take_at("other", 10, t0).is_ok(), "callers are apart");
        assert_eq!(l.take_at("svc", 500, t0), Err(5));
        assert!(l.take_at("svc", 100, t0 + Duration::from_secs(1)).is_ok());
    }
}
