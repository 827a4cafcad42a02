//! A client-side limit on requests per second, shared by every task using the client, so that a run over
//! thousands of tenants stays under Stripe's own limit instead of collecting 429s.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second == 0` means no limit.
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            interval: (per_second > 0).then(|| Duration::from_secs(1) / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot: slots are handed out evenly spaced, first come first served.
    pub async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Stripe's documented limits (docs.stripe.com/rate-limits): the global one (25/s in test mode, 100/s
/// live, as configured), 25/s for each endpoint (a method and a path, ids counted together) unless
/// stated otherwise, and 20/s for the Search API as a whole. Each is a maximum, so a request waits for
/// its endpoint's slot, then for a global one.
#[derive(Debug)]
pub struct StripeLimits {
    global: RateLimiter,
    per_endpoint: u32,
    endpoints: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<RateLimiter>>>,
    search: RateLimiter,
}

/// Stripe's default limit for one endpoint.
const ENDPOINT_PER_SECOND: u32 = 25;
/// Stripe's limit for the Search API.
const SEARCH_PER_SECOND: u32 = 20;

impl StripeLimits {
    /// `global == 0` turns every limit off (a server without Stripe's limits, e.g. in tests).
    pub fn new(global: u32) -> StripeLimits {
        StripeLimits {
            global: RateLimiter::new(global),
            per_endpoint: if global == 0 {
                0
            } else {
                global.min(ENDPOINT_PER_SECOND)
            },
            endpoints: Default::default(),
            search: RateLimiter::new(if global == 0 {
                0
            } else {
                global.min(SEARCH_PER_SECOND)
            }),
        }
    }

    /// Waits until a request to `method path` may go.
    pub async fn acquire(&self, method: &str, path: &str) {
        if self.per_endpoint > 0 {
            let endpoint = format!("{method} {}", crate::metrics::endpoint_pattern(path));
            let limiter = self
                .endpoints
                .lock()
                .expect("endpoint limits")
                .entry(endpoint)
                .or_insert_with(|| std::sync::Arc::new(RateLimiter::new(self.per_endpoint)))
                .clone();
            limiter.acquire().await;
            if path.trim_end_matches('/').ends_with("/search") {
                self.search.acquire().await;
            }
        }
        self.global.acquire().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_endpoint_is_held_to_25_per_second_within_a_larger_global_limit() {
        let limits = std::sync::Arc::new(StripeLimits::new(100));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let l = limits.clone();
            tasks.push(tokio::spawn(async move {
                // Different ids: the same endpoint.
                l.acquire("POST", &format!("invoices/in_{i}X/pay")).await;
                Instant::now()
            }));
        }
        let mut last = start;
        for t in tasks {
            last = last.max(t.await.unwrap());
        }
        // 50 requests at 25/s: the last starts 1.96 s after the first (not 0.49 s at 100/s).
        assert!(
            last - start >= Duration::from_millis(1_950),
            "{:?}",
            last - start
        );
        // Another endpoint is not held back by that one.
        let t = Instant::now();
        limits.acquire("GET", "customers/cus_1A").await;
        assert!(Instant::now() - t < Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn searches_share_20_per_second() {
        let limits = std::sync::Arc::new(StripeLimits::new(100));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let l = limits.clone();
            let path = if i % 2 == 0 {
                "customers/search"
            } else {
                "invoices/search"
            };
            tasks.push(tokio::spawn(async move {
                l.acquire("GET", path).await;
                Instant::now()
            }));
        }
        let mut last = start;
        for t in tasks {
            last = last.max(t.await.unwrap());
        }
        assert!(
            last - start >= Duration::from_millis(1_900),
            "{:?}",
            last - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        // 20 requests at 10/s: the last starts 1.9 s after the first.
        assert_eq!(times[19] - start, Duration::from_millis(1900));
        assert_eq!(times[0] - start, Duration::ZERO);
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
