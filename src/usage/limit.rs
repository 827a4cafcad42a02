//! `USAGE_EVENTS_PER_SECOND_PER_TOKEN`: a token bucket per caller token that counts events, not requests.
//!
//! - A bucket holds one second's worth of events and refills continuously. A batch passes when the bucket
//!   holds its size (or is full, for a batch bigger than a second's worth: the bucket then goes into debt,
//!   so the long-run rate still holds and no batch is refused forever).
//! - Buckets are keyed by a SHA-256 digest of the token's verified claims, never by the token itself, so
//!   nothing secret is kept in memory longer than the request.
//! - Memory is bounded: a bucket that has refilled completely is the same as no bucket, so idle ones are
//!   dropped; past a hard cap the least recently used go first.

use crate::auth::Claims;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets above this count trigger a sweep of the idle ones (at most once a second).
const SWEEP_ABOVE: usize = 4_096;
/// Buckets never exceed this count; beyond it the least recently used are dropped.
const MAX_BUCKETS: usize = 100_000;

/// Identifies a caller by its token's identity claims (not its expiry): a service that renews its token
/// keeps its bucket instead of getting a fresh budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 16]);

impl TokenKey {
    pub fn of(claims: &Claims) -> TokenKey {
        let mut h = Sha256::new();
        // Length-prefixed so that no two different claim sets hash the same input.
        for part in [
            claims.sub.as_bytes(),
            claims.tenant_id.as_bytes(),
            claims.role.as_bytes(),
            claims.email.as_deref().unwrap_or("").as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        TokenKey(key)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Events that may be sent now; negative after a batch bigger than the capacity.
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct EventLimiter {
    per_second: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<TokenKey, Bucket>,
    last_sweep: Option<Instant>,
}

/// Over the limit: how long until the same batch would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub per_second: u32,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl EventLimiter {
    /// `per_second == 0` turns the limit off.
    pub fn new(per_second: u32) -> EventLimiter {
        EventLimiter {
            per_second,
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0
    }

    /// Takes `events` from the token's bucket, or says how long to wait; nothing is taken when refused.
    pub fn check(&self, key: TokenKey, events: usize) -> Result<(), Limited> {
        self.check_at(key, events, Instant::now())
    }

    pub fn check_at(&self, key: TokenKey, events: usize, now: Instant) -> Result<(), Limited> {
        if !self.enabled() || events == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_second);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.sweep(now, rate);
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        let events = events as f64;
        let needed = events.min(rate);
        if bucket.tokens >= needed {
            bucket.tokens -= events;
            return Ok(());
        }
        Err(Limited {
            per_second: self.per_second,
            retry_after: Duration::from_secs_f64((needed - bucket.tokens) / rate),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap().buckets.len()
    }
}

impl State {
    fn sweep(&mut self, now: Instant, rate: f64) {
        if self.buckets.len() <= SWEEP_ABOVE
            || self
                .last_sweep
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        // A bucket that has refilled is no different from a fresh one: forgetting it changes nothing.
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < rate
        });
        if self.buckets.len() >= MAX_BUCKETS {
            let mut times: Vec<Instant> = self.buckets.values().map(|b| b.updated).collect();
            let cut = times.len() - MAX_BUCKETS / 2;
            let (_, oldest_kept, _) = times.select_nth_unstable(cut);
            let oldest_kept = *oldest_kept;
            self.buckets.retain(|_, b| b.updated >= oldest_kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> TokenKey {
        TokenKey([n; 16])
    }

    #[test]
    fn off_when_zero() {
        let l = EventLimiter::new(0);
        for _ in 0..10 {
            assert!(l.check(key(1), 1000).is_ok());
        }
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn counts_events_and_refills_over_time() {
        let l = EventLimiter::new(100);
        let t0 = Instant::now();
        assert!(l.check_at(key(1), 60, t0).is_ok());
        let refused = l.check_at(key(1), 50, t0).unwrap_err();
        // 40 left, 50 needed: 10 events at 100/s is 0.1 s, sent as 1 s.
        assert!(
            refused.retry_after.abs_diff(Duration::from_millis(100)) < Duration::from_millis(1)
        );
        assert_eq!(refused.retry_after_secs(), 1);
        // A refusal takes nothing: 40 still pass.
        assert!(l.check_at(key(1), 40, t0).is_ok());
        assert!(l.check_at(key(1), 1, t0).is_err());
        assert!(l
            .check_at(key(1), 50, t0 + Duration::from_millis(500))
            .is_ok());
        // Another token has its own bucket.
        assert!(l.check_at(key(2), 100, t0).is_ok());
    }

    #[test]
    fn a_batch_bigger_than_a_second_passes_on_a_full_bucket_then_waits_it_off() {
        let l = EventLimiter::new(100);
        let t0 = Instant::now();
        assert!(l.check_at(key(1), 1000, t0).is_ok());
        // 900 events of debt, then 1 needed: 9.01 s at 100/s.
        let refused = l.check_at(key(1), 1, t0).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 10);
        assert!(l.check_at(key(1), 1, t0 + Duration::from_secs(9)).is_err());
        assert!(l.check_at(key(1), 1, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn same_claims_same_key_other_claims_other_key() {
        let c = Claims {
            sub: "svc".into(),
            tenant_id: "platform".into(),
            role: "service".into(),
            exp: 100,
            email: None,
        };
        assert_eq!(TokenKey::of(&c), TokenKey::of(&c.clone()));
        // A renewed token (new expiry) is the same caller, with the same budget.
        let mut renewed = c.clone();
        renewed.exp = 101;
        assert_eq!(TokenKey::of(&c), TokenKey::of(&renewed));
        let mut other = c.clone();
        other.role = "super_admin".into();
        assert_ne!(TokenKey::of(&c), TokenKey::of(&other));
        let mut shifted = c.clone();
        shifted.sub = "svcp".into();
        shifted.tenant_id = "latform".into();
        assert_ne!(TokenKey::of(&c), TokenKey::of(&shifted));
    }

    #[test]
    fn idle_buckets_are_forgotten_and_memory_is_bounded() {
        let l = EventLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..(SWEEP_ABOVE as u32 + 10) {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            l.check_at(TokenKey(k), 5, t0).unwrap();
        }
        assert_eq!(l.len(), SWEEP_ABOVE + 10);
        // One second later every bucket has refilled: the next call sweeps them all away.
        l.check_at(key(255), 1, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn the_hard_cap_drops_the_least_recently_used() {
        let l = EventLimiter::new(1);
        let t0 = Instant::now();
        let mut state = l.state.lock().unwrap();
        for i in 0..MAX_BUCKETS as u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            state.buckets.insert(
                TokenKey(k),
                Bucket {
                    tokens: -1000.0,
                    updated: t0 + Duration::from_millis(u64::from(i)),
                },
            );
        }
        state.sweep(t0 + Duration::from_secs(200), 1.0);
        assert_eq!(state.buckets.len(), MAX_BUCKETS / 2);
        assert!(state.buckets.values().all(
            |b| b.updated >= t0 + Duration::from_millis((MAX_BUCKETS - MAX_BUCKETS / 2) as u64)
        ));
    }
}
