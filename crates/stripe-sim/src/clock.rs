//! The simulator clock: real time plus an offset that `/_sim/clock/advance` grows. While due
//! transitions are processed the clock is pinned to each transition's moment so the objects and
//! events it creates carry that time.

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};

#[derive(Debug, Default, Clone)]
pub struct Clock {
    offset: i64,
    pinned: Option<i64>,
}

pub fn real_now() -> i64 {
    Utc::now().timestamp()
}

impl Clock {
    pub fn now(&self) -> i64 {
        self.pinned.unwrap_or_else(|| real_now() + self.offset)
    }

    pub fn pin(&mut self, t: i64) {
        self.pinned = Some(t);
    }

    pub fn unpin(&mut self) {
        self.pinned = None;
    }

    /// Move "now" to `t` (never backwards).
    pub fn set(&mut self, t: i64) {
        let cur = self.now();
        if t > cur {
            self.offset += t - cur;
        }
    }
}

/// `anchor` plus `n` billing intervals, computed from the anchor each time so month-end
/// anchors clamp per month (Jan 31 -> Feb 28 -> Mar 31) as Stripe does.
pub fn add_intervals(anchor: i64, interval: &str, count: u32, n: u32) -> i64 {
    let dt = match Utc.timestamp_opt(anchor, 0).single() {
        Some(d) => d,
        None => return anchor,
    };
    let steps = count.max(1) * n;
    let out: Option<DateTime<Utc>> = match interval {
        "day" => Some(dt + chrono::Duration::days(steps as i64)),
        "week" => Some(dt + chrono::Duration::days(7 * steps as i64)),
        "year" => dt.checked_add_months(Months::new(12 * steps)),
        _ => dt.checked_add_months(Months::new(steps)),
    };
    out.map(|d| d.timestamp()).unwrap_or(anchor)
}

pub fn rfc3339(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn human_date(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map(|d| format!("{} {}, {}", month_name(d.month()), d.day(), d.year()))
        .unwrap_or_default()
}

fn month_name(m: u32) -> &'static str {
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ][(m.clamp(1, 12) - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_end_clamps_per_month() {
        let jan31 = Utc
            .with_ymd_and_hms(2026, 1, 31, 10, 0, 0)
            .unwrap()
            .timestamp();
        let feb = add_intervals(jan31, "month", 1, 1);
        assert_eq!(rfc3339(feb), "2026-02-28T10:00:00Z");
        let mar = add_intervals(jan31, "month", 1, 2);
        assert_eq!(rfc3339(mar), "2026-03-31T10:00:00Z");
    }
}
