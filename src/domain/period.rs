use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A billing period: one calendar month in the billing time zone, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BillingPeriod {
    year: i32,
    month: u32,
}

// Serialized as its `YYYY-MM` string (see the serde attributes), so documented as one.
impl utoipa::PartialSchema for BillingPeriod {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])$"))
            .description(Some(
                "A billing period: a calendar month in the billing time zone, YYYY-MM.",
            ))
            .examples([serde_json::json!("2026-09")])
            .into()
    }
}

impl utoipa::ToSchema for BillingPeriod {}

impl BillingPeriod {
    pub fn new(year: i32, month: u32) -> Result<BillingPeriod, String> {
        if !(1..=12).contains(&month) {
            return Err(format!("month must be 01 to 12, got {month:02}"));
        }
        if !(2000..=9999).contains(&year) {
            return Err(format!("year must be 2000 to 9999, got {year}"));
        }
        Ok(BillingPeriod { year, month })
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The period a local calendar day falls in.
    pub fn of_day(day: NaiveDate) -> BillingPeriod {
        BillingPeriod {
            year: day.year(),
            month: day.month(),
        }
    }

    /// The period an instant falls in, in the billing time zone.
    pub fn containing(instant: DateTime<Utc>, tz: Tz) -> BillingPeriod {
        BillingPeriod::of_day(instant.with_timezone(&tz).date_naive())
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid period")
    }

    /// The first day of the following period (the exclusive end).
    pub fn end_day(self) -> NaiveDate {
        self.next().first_day()
    }

    /// The last day that belongs to the period.
    pub fn last_day(self) -> NaiveDate {
        self.end_day().pred_opt().expect("valid date")
    }

    /// The month in words, as people read it: "November 2026".
    pub fn long_name(self) -> String {
        const MONTHS: [&str; 12] = [
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
        ];
        format!("{} {}", MONTHS[self.month as usize - 1], self.year)
    }

    pub fn next(self) -> BillingPeriod {
        if self.month == 12 {
            BillingPeriod {
                year: self.year + 1,
                month: 1,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn prev(self) -> BillingPeriod {
        if self.month == 1 {
            BillingPeriod {
                year: self.year - 1,
                month: 12,
            }
        } else {
            BillingPeriod {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The half-open instant range `[start, end)` of the period in the billing time zone.
    pub fn bounds(self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_midnight(self.first_day(), tz),
            local_midnight(self.end_day(), tz),
        )
    }
}

/// Midnight at the start of a local day, as a UTC instant. Where a time-zone change skips midnight,
/// the day starts at the first instant that exists.
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).expect("midnight");
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // A gap at midnight: step forward a minute at a time until the clock exists again.
            (1..=180)
                .find_map(|m| {
                    tz.from_local_datetime(&(naive + chrono::Duration::minutes(m)))
                        .earliest()
                })
                .expect("a time-zone gap is shorter than three hours")
                .with_timezone(&Utc)
        }
    }
}

impl FromStr for BillingPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("period must be written YYYY-MM, e.g. 2026-10; got {s:?}");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        BillingPeriod::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }
}

impl TryFrom<String> for BillingPeriod {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BillingPeriod> for String {
    fn from(p: BillingPeriod) -> String {
        p.to_string()
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p: BillingPeriod = "2026-10".parse().unwrap();
        assert_eq!(p.to_string(), "2026-10");
        assert_eq!(p.next().to_string(), "2026-11");
        assert_eq!(
            "2026-12"
                .parse::<BillingPeriod>()
                .unwrap()
                .next()
                .to_string(),
            "2027-01"
        );
        assert_eq!(
            "2026-01"
                .parse::<BillingPeriod>()
                .unwrap()
                .prev()
                .to_string(),
            "2025-12"
        );
        for bad in [
            "2026-13", "2026-1", "26-10", "2026/10", "", "2026-00", "abcd-ef",
        ] {
            assert!(bad.parse::<BillingPeriod>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_follow_the_time_zone() {
        let p: BillingPeriod = "2026-11".parse().unwrap();
        let (start, end) = p.bounds(chrono_tz::America::New_York);
        // EDT ends on 2026-11-01 at 02:00, so midnight of Nov 1 is still UTC-4; Dec 1 is UTC-5.
        assert_eq!(start.to_rfc3339(), "2026-11-01T04:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-01T05:00:00+00:00");
        let (s, e) = p.bounds(chrono_tz::UTC);
        assert_eq!(s.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-12-01T00:00:00+00:00");
    }

    #[test]
    fn containing_uses_local_calendar() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        assert_eq!(
            BillingPeriod::containing(t, chrono_tz::America::New_York).to_string(),
            "2026-10"
        );
        assert_eq!(
            BillingPeriod::containing(t, chrono_tz::UTC).to_string(),
            "2026-11"
        );
    }
}
