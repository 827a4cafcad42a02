//! Prometheus metrics, kept in process and rendered in the text exposition format at `/metrics`.
//!
//! A small registry of our own instead of a metrics crate: a handful of counters and histograms with
//! low-cardinality labels (route patterns, never raw paths or ids), and gauges of the database's state
//! that are read when `/metrics` is scraped rather than kept here (every replica reports the same).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Latency buckets in seconds, from a fast database read to a slow Stripe call.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "http_requests_total",
        "counter",
        "HTTP requests by method, route pattern and status.",
    ),
    (
        "http_request_duration_seconds",
        "histogram",
        "HTTP request latency by method and route pattern.",
    ),
    (
        "usage_events_total",
        "counter",
        "Usage events received, by outcome (accepted or duplicate).",
    ),
    (
        "webhooks_total",
        "counter",
        "Stripe webhooks received, by event type and outcome.",
    ),
    (
        "stripe_requests_total",
        "counter",
        "Calls to Stripe by method, endpoint and outcome (status, ok or network).",
    ),
    (
        "stripe_request_duration_seconds",
        "histogram",
        "Latency of calls to Stripe by method and endpoint.",
    ),
    (
        "billing_runs_total",
        "counter",
        "Monthly billing runs by outcome.",
    ),
    (
        "billing_tenants_total",
        "counter",
        "Tenants processed by billing runs, by outcome (billed, skipped, failed).",
    ),
    (
        "billing_orphan_claims",
        "gauge",
        "Usage claims by the monthly run with no ledger entry for their tenant and period (claimed, never invoiced).",
    ),
    (
        "billing_unfinished_periods",
        "gauge",
        "Closed billing periods left unfinished: invoices stopped part-way, a last run that did not complete, or never run with usage waiting.",
    ),
    (
        "platform_rows_held",
        "gauge",
        "Rows of the platform's usage_records held back because they cannot be billed as they are (platform status says why).",
    ),
    (
        "platform_follow_lag_seconds",
        "gauge",
        "Seconds between now and the time up to which every row of the platform's usage_records has been taken.",
    ),
    (
        "platform_rows_swept_total",
        "counter",
        "Rows of the platform's usage_records found by the follower's sweep: committed too long after their usage_date for the re-read of PLATFORM_LOOKBACK_S.",
    ),
];

/// A gauge's value as read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub value: f64,
}

/// The billing health gauges (see `billing::health`).
pub fn billing_health(orphan_claims: usize, unfinished_periods: usize) -> [Gauge; 2] {
    [
        Gauge {
            name: "billing_orphan_claims",
            value: orphan_claims as f64,
        },
        Gauge {
            name: "billing_unfinished_periods",
            value: unfinished_periods as f64,
        },
    ]
}

/// The platform follower's values read at scrape time (see `platform::status`); the rows found by the
/// sweep are a counter kept in the database.
pub fn platform_follow(rows_held: i64, lag_seconds: f64, rows_swept: i64) -> [Gauge; 3] {
    [
        Gauge {
            name: "platform_rows_held",
            value: rows_held as f64,
        },
        Gauge {
            name: "platform_follow_lag_seconds",
            value: lag_seconds,
        },
        Gauge {
            name: "platform_rows_swept_total",
            value: rows_swept as f64,
        },
    ]
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn inc(name: &'static str, labels: Labels, by: u64) {
    let mut r = registry().lock().expect("metrics lock");
    *r.counters.entry((name, labels)).or_default() += by;
}

fn observe(name: &'static str, labels: Labels, d: Duration) {
    let secs = d.as_secs_f64();
    let mut r = registry().lock().expect("metrics lock");
    let h = r.histograms.entry((name, labels)).or_default();
    for (i, le) in BUCKETS.iter().enumerate() {
        if secs <= *le {
            h.buckets[i] += 1;
        }
    }
    h.count += 1;
    h.sum += secs;
}

pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    inc(
        "http_requests_total",
        vec![
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ],
        1,
    );
    observe(
        "http_request_duration_seconds",
        vec![("method", method.to_owned()), ("route", route.to_owned())],
        elapsed,
    );
}

pub fn usage_events(accepted: u64, duplicates: u64) {
    if accepted > 0 {
        inc(
            "usage_events_total",
            vec![("outcome", "accepted".into())],
            accepted,
        );
    }
    if duplicates > 0 {
        inc(
            "usage_events_total",
            vec![("outcome", "duplicate".into())],
            duplicates,
        );
    }
}

pub fn webhook(event_type: &str, outcome: &str) {
    inc(
        "webhooks_total",
        vec![
            ("type", event_type.to_owned()),
            ("outcome", outcome.to_owned()),
        ],
        1,
    );
}

pub fn stripe_call(method: &str, path: &str, outcome: &str, elapsed: Duration) {
    let endpoint = endpoint_pattern(path);
    inc(
        "stripe_requests_total",
        vec![
            ("method", method.to_owned()),
            ("endpoint", endpoint.clone()),
            ("outcome", outcome.to_owned()),
        ],
        1,
    );
    observe(
        "stripe_request_duration_seconds",
        vec![("method", method.to_owned()), ("endpoint", endpoint)],
        elapsed,
    );
}

pub fn billing_run(outcome: &str) {
    inc(
        "billing_runs_total",
        vec![("outcome", outcome.to_owned())],
        1,
    );
}

pub fn billing_tenant(outcome: &str) {
    inc(
        "billing_tenants_total",
        vec![("outcome", outcome.to_owned())],
        1,
    );
}

/// `invoices/in_123/finalize` -> `/v1/invoices/{id}/finalize`: object ids would explode the label space.
pub(crate) fn endpoint_pattern(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut out = String::from("/v1");
    for seg in path.trim_start_matches('/').split('/') {
        out.push('/');
        let looks_like_id = seg.contains('_')
            && seg
                .chars()
                .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
        out.push_str(if looks_like_id { "{id}" } else { seg });
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The text exposition format, without gauges.
pub fn render() -> String {
    render_with(&[])
}

/// The text exposition format, with the gauges read for this scrape. A gauge that could not be read
/// is left out (its HELP and TYPE stay), so an alert can tell "unknown" from 0.
pub fn render_with(gauges: &[Gauge]) -> String {
    let r = registry().lock().expect("metrics lock");
    let mut out = String::new();
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in gauges.iter().filter(|g| g.name == *name) {
            let _ = writeln!(out, "{} {}", g.name, g.value);
        }
        for ((n, labels), v) in r.counters.iter().filter(|((n, _), _)| n == name) {
            let _ = writeln!(out, "{n}{} {v}", label_text(labels, None));
        }
        for ((n, labels), h) in r.histograms.iter().filter(|((n, _), _)| n == name) {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {}",
                    label_text(labels, Some(("le", &le.to_string()))),
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{n}_bucket{} {}",
                label_text(labels, Some(("le", "+Inf"))),
                h.count
            );
            let _ = writeln!(out, "{n}_sum{} {}", label_text(labels, None), h.sum);
            let _ = writeln!(out, "{n}_count{} {}", label_text(labels, None), h.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hide_object_ids() {
        assert_eq!(
            endpoint_pattern("invoices/in_1Pgc6tB7WZ01zgkW/finalize"),
            "/v1/invoices/{id}/finalize"
        );
        assert_eq!(endpoint_pattern("customers"), "/v1/customers");
        assert_eq!(
            endpoint_pattern("checkout/sessions"),
            "/v1/checkout/sessions"
        );
    }

    #[test]
    fn renders_counters_and_histograms() {
        stripe_call("POST", "invoiceitems", "ok", Duration::from_millis(3));
        let text = render();
        assert!(text.contains("# TYPE stripe_requests_total counter"));
        assert!(text.contains(
            r#"stripe_requests_total{method="POST",endpoint="/v1/invoiceitems",outcome="ok"}"#
        ));
        assert!(text.contains(r#"stripe_request_duration_seconds_bucket{method="POST",endpoint="/v1/invoiceitems",le="0.005"}"#));
    }

    #[test]
    fn renders_gauges_given_at_scrape_time() {
        let text = render_with(&billing_health(1, 0));
        assert!(text.contains("# TYPE billing_orphan_claims gauge\nbilling_orphan_claims 1\n"));
        assert!(text.contains("\nbilling_unfinished_periods 0\n"));
        // Not read: declared, without a sample.
        let text = render();
        assert!(text.contains("# TYPE billing_orphan_claims gauge"));
        assert!(!text.contains("\nbilling_orphan_claims "));
    }
}
