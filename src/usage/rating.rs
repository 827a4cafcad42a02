//! Rating: usage totals to cents and invoice line descriptions. Pure functions, no I/O.
//!
//! The rule (API.md, billing rules): voice words are `stt + tts`, charged
//! `words * VOICE_PRICE_CENTS_PER_1000_WORDS / 1000` rounded half up on the period's total; calls are
//! `calls * CALL_PRICE_CENTS`. A line whose amount is zero is not billed. A period billed in slices (its own
//! run, then late usage on later runs) is still rounded once: each voice slice bills the rounding of the
//! period's whole billable total less what earlier slices billed.

use crate::config::Settings;
use crate::domain::{group_thousands, BillingPeriod, Cents};
use serde::Serialize;
use std::ops::AddAssign;

/// The usage prices, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub voice_cents_per_1000_words: i64,
    pub call_cents: i64,
}

impl Rates {
    pub fn from_settings(settings: &Settings) -> Rates {
        Rates {
            voice_cents_per_1000_words: settings.billing.voice_price_cents_per_1000_words,
            call_cents: settings.billing.call_price_cents,
        }
    }
}

/// Usage quantities of one tenant over some span (a period, or the part of it not yet billed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    pub stt_words: i64,
    pub tts_words: i64,
    pub calls: i64,
}

impl UsageTotals {
    /// Adds `quantity` of `usage_type` to the field that type feeds.
    pub fn add(&mut self, usage_type: super::UsageType, quantity: i64) {
        use super::UsageType::*;
        match usage_type {
            SttWords => self.stt_words += quantity,
            TtsWords => self.tts_words += quantity,
            PhoneCalls => self.calls += quantity,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stt_words == 0 && self.tts_words == 0 && self.calls == 0
    }

    pub fn words(&self) -> i64 {
        self.stt_words + self.tts_words
    }
}

impl AddAssign for UsageTotals {
    fn add_assign(&mut self, rhs: UsageTotals) {
        self.stt_words += rhs.stt_words;
        self.tts_words += rhs.tts_words;
        self.calls += rhs.calls;
    }
}

/// What a span of usage costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Charges {
    pub voice_words: i64,
    pub voice_cents: Cents,
    pub calls: i64,
    pub call_cents: Cents,
    pub total: Cents,
}

/// What earlier invoices already billed of one period's voice usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Billed {
    /// Every word their claims took, including slices too small to make a line.
    pub voice_words: i64,
    /// What their voice lines carried.
    pub voice_cents: Cents,
}

/// Prices a span's totals. Rounding happens once, on the total words, never per event.
pub fn rate(totals: &UsageTotals, rates: &Rates) -> Charges {
    rate_slice(totals, &Billed::default(), rates)
}

/// Prices a slice of one period's usage of which earlier invoices billed `billed`. Voice is the period's
/// whole billable total (`billed` plus this slice) rounded once, less what was billed: however a period is
/// sliced, its slices add up to its total rounded once. `voice_words` stays the slice's own.
pub fn rate_slice(totals: &UsageTotals, billed: &Billed, rates: &Rates) -> Charges {
    let voice_words = totals.words();
    let whole = Cents::rate_half_up(
        billed.voice_words + voice_words,
        rates.voice_cents_per_1000_words,
        1000,
    );
    // More can have been billed than the whole now rounds to (the price went down, or slices were billed
    // under the old per-slice rounding): nothing is credited back.
    let voice_cents = Cents((whole.0 - billed.voice_cents.0).max(0));
    // A per-unit price is the same rule with a denominator of one: exact, in i128.
    let call_cents = Cents::rate_half_up(totals.calls, rates.call_cents, 1);
    Charges {
        voice_words,
        voice_cents,
        calls: totals.calls,
        call_cents,
        total: voice_cents + call_cents,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Voice,
    Calls,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Voice => "voice",
            LineKind::Calls => "calls",
        }
    }

    pub fn parse(s: &str) -> Option<LineKind> {
        match s {
            "voice" => Some(LineKind::Voice),
            "calls" => Some(LineKind::Calls),
            _ => None,
        }
    }
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// Words for a voice line, calls for a calls line.
    pub quantity: i64,
    pub amount: Cents,
}

/// The invoice lines for one period's usage: `late_period` is `None` for the period being billed, or the
/// earlier period whose late usage these lines carry (their descriptions then say so); `billed` is what
/// earlier invoices billed of that period (see `rate_slice`). Descriptions count the slice's own words.
/// Lines whose amount is zero are left out.
pub fn lines(
    late_period: Option<BillingPeriod>,
    totals: &UsageTotals,
    billed: &Billed,
    rates: &Rates,
) -> Vec<Line> {
    let charges = rate_slice(totals, billed, rates);
    let prefix = late_period
        .map(|p| format!("Late usage for {p}: "))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(2);
    if !charges.voice_cents.is_zero() {
        out.push(Line {
            kind: LineKind::Voice,
            description: format!(
                "{prefix}Voice Usage: {} words (STT: {}, TTS: {})",
                thousands(charges.voice_words),
                thousands(totals.stt_words),
                thousands(totals.tts_words)
            ),
            quantity: charges.voice_words,
            amount: charges.voice_cents,
        });
    }
    if !charges.call_cents.is_zero() {
        let noun = if charges.calls == 1 { "call" } else { "calls" };
        out.push(Line {
            kind: LineKind::Calls,
            description: format!("{prefix}Phone Calls: {} {noun}", thousands(charges.calls)),
            quantity: charges.calls,
            amount: charges.call_cents,
        });
    }
    out
}

fn thousands(n: i64) -> String {
    group_thousands(n.max(0) as u64)
}

/// What one invoice's usage lines bill, by kind: its own period's and its late lines together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvoicedUsage {
    pub voice_words: i64,
    pub voice_cents: Cents,
    pub calls: i64,
    pub call_cents: Cents,
}

impl InvoicedUsage {
    pub fn add(&mut self, kind: LineKind, quantity: i64, amount: Cents) {
        match kind {
            LineKind::Voice => {
                self.voice_words += quantity;
                self.voice_cents += amount;
            }
            LineKind::Calls => {
                self.calls += quantity;
                self.call_cents += amount;
            }
        }
    }

    /// Read back from the lines' descriptions and amounts, for an invoice whose lines we have but not
    /// the run's record of them (rebuilt from Stripe, or made by the platform's own billing, whose
    /// descriptions had the same form). Lines of any other kind count nothing.
    pub fn from_descriptions<'a>(lines: impl IntoIterator<Item = (&'a str, i64)>) -> InvoicedUsage {
        let mut usage = InvoicedUsage::default();
        for (description, amount) in lines {
            if let Some((kind, quantity)) = parse_description(description) {
                usage.add(kind, quantity, Cents(amount));
            }
        }
        usage
    }
}

/// The kind and quantity a usage line's description states: the inverse of [`lines`]' descriptions
/// (`Voice Usage: 12,345 words (...)`, `Phone Calls: 17 calls`, either after `Late usage for YYYY-MM: `).
pub fn parse_description(description: &str) -> Option<(LineKind, i64)> {
    let text = match description.strip_prefix("Late usage for ") {
        Some(rest) => rest.split_once(": ")?.1,
        None => description,
    };
    let (kind, rest, unit) = if let Some(rest) = text.strip_prefix("Voice Usage: ") {
        (LineKind::Voice, rest, " word")
    } else if let Some(rest) = text.strip_prefix("Phone Calls: ") {
        (LineKind::Calls, rest, " call")
    } else {
        return None;
    };
    let (number, _) = rest.split_once(unit)?;
    let digits: String = number.chars().filter(|c| *c != ',').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT: Rates = Rates {
        voice_cents_per_1000_words: 100,
        call_cents: 100,
    };

    fn totals(stt: i64, tts: i64, calls: i64) -> UsageTotals {
        UsageTotals {
            stt_words: stt,
            tts_words: tts,
            calls,
        }
    }

    #[test]
    fn worked_examples() {
        assert_eq!(
            rate(&totals(10_000, 2_345, 0), &DEFAULT).voice_cents,
            Cents(1235)
        );
        assert_eq!(rate(&totals(290, 0, 0), &DEFAULT).voice_cents, Cents(29));
        assert_eq!(rate(&totals(4, 0, 0), &DEFAULT).voice_cents, Cents(0));
        let c = rate(&totals(150, 140, 17), &DEFAULT);
        assert_eq!(c.voice_words, 290);
        assert_eq!(c.call_cents, Cents(1700));
        assert_eq!(c.total, Cents(1729));
    }

    #[test]
    fn descriptions_are_exact() {
        let l = lines(
            None,
            &totals(10_000, 2_345, 17),
            &Billed::default(),
            &DEFAULT,
        );
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].description,
            "Voice Usage: 12,345 words (STT: 10,000, TTS: 2,345)"
        );
        assert_eq!(l[0].amount, Cents(1235));
        assert_eq!(l[0].quantity, 12_345);
        assert_eq!(l[0].kind, LineKind::Voice);
        assert_eq!(l[1].description, "Phone Calls: 17 calls");
        assert_eq!(l[1].amount, Cents(1700));
        assert_eq!(l[1].kind, LineKind::Calls);

        let one = lines(None, &totals(0, 0, 1), &Billed::default(), &DEFAULT);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].description, "Phone Calls: 1 call");

        let late = lines(
            Some("2026-09".parse().unwrap()),
            &totals(0, 0, 2),
            &Billed::default(),
            &DEFAULT,
        );
        assert_eq!(
            late[0].description,
            "Late usage for 2026-09: Phone Calls: 2 calls"
        );
        let late = lines(
            Some("2026-09".parse().unwrap()),
            &totals(200, 90, 0),
            &Billed::default(),
            &DEFAULT,
        );
        assert_eq!(
            late[0].description,
            "Late usage for 2026-09: Voice Usage: 290 words (STT: 200, TTS: 90)"
        );
        assert_eq!(late[0].amount, Cents(29));
    }

    #[test]
    fn zero_amounts_make_no_line() {
        assert!(lines(None, &totals(3, 1, 0), &Billed::default(), &DEFAULT).is_empty());
        assert!(lines(None, &UsageTotals::default(), &Billed::default(), &DEFAULT).is_empty());
        let free_calls = Rates {
            voice_cents_per_1000_words: 100,
            call_cents: 0,
        };
        assert!(lines(None, &totals(0, 0, 5), &Billed::default(), &free_calls).is_empty());
        assert_eq!(
            lines(None, &totals(1_000_000, 0, 0), &Billed::default(), &DEFAULT)[0].description,
            "Voice Usage: 1,000,000 words (STT: 1,000,000, TTS: 0)"
        );
    }

    fn billed(voice_words: i64, voice_cents: i64) -> Billed {
        Billed {
            voice_words,
            voice_cents: Cents(voice_cents),
        }
    }

    #[test]
    fn a_late_slice_bills_the_whole_rounded_once_less_what_was_billed() {
        let p = Some("2026-09".parse().unwrap());
        // 1,005 words billed 101 cents: 5 more make 1,010, still 101: no line.
        assert!(lines(p, &totals(5, 0, 0), &billed(1_005, 101), &DEFAULT).is_empty());
        assert_eq!(
            rate_slice(&totals(5, 0, 0), &billed(1_005, 101), &DEFAULT).voice_cents,
            Cents(0)
        );
        // 1,004 words billed 100 cents: 2 more make 1,006, 101: one cent, described by the slice's words.
        let l = lines(p, &totals(1, 1, 0), &billed(1_004, 100), &DEFAULT);
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].description,
            "Late usage for 2026-09: Voice Usage: 2 words (STT: 1, TTS: 1)"
        );
        assert_eq!((l[0].quantity, l[0].amount), (2, Cents(1)));
        // Words that made no line still count: 1,000 (100), then 4 (0), then 1 is 1,005: one cent.
        assert_eq!(
            rate_slice(&totals(1, 0, 0), &billed(1_004, 100), &DEFAULT).voice_cents,
            Cents(1)
        );
        // Calls are exact whatever voice billed before.
        let c = rate_slice(&totals(5, 0, 3), &billed(1_005, 101), &DEFAULT);
        assert_eq!((c.call_cents, c.total), (Cents(300), Cents(300)));
        // Billed beyond the whole (a lower price now): no credit.
        assert_eq!(
            rate_slice(&totals(5, 0, 0), &billed(1_005, 102), &DEFAULT).voice_cents,
            Cents(0)
        );
    }

    #[test]
    fn descriptions_read_back_with_the_platforms_own() {
        let read = |d: &str| parse_description(d);
        assert_eq!(
            read("Voice Usage: 12,345 words (STT: 10,000, TTS: 2,345)"),
            Some((LineKind::Voice, 12_345))
        );
        assert_eq!(read("Phone Calls: 1 call"), Some((LineKind::Calls, 1)));
        assert_eq!(
            read("Late usage for 2026-09: Phone Calls: 1,002 calls"),
            Some((LineKind::Calls, 1_002))
        );
        // The platform's own billing wrote `Phone Calls: {n} calls` without separators.
        assert_eq!(read("Phone Calls: 17 calls"), Some((LineKind::Calls, 17)));
        for other in [
            "Thanotopolis Platform Subscription",
            "Voice Usage: many words",
            "Phone Calls: calls",
            "Late usage for 2026-09",
            "",
        ] {
            assert_eq!(read(other), None, "{other:?}");
        }
        let usage = InvoicedUsage::from_descriptions([
            ("Voice Usage: 1,500 words (STT: 1,000, TTS: 500)", 150),
            ("Phone Calls: 2 calls", 200),
            (
                "Late usage for 2026-09: Voice Usage: 290 words (STT: 290, TTS: 0)",
                29,
            ),
            (
                "1 × Thanotopolis Platform Subscription (at $299.00 / month)",
                29_900,
            ),
        ]);
        assert_eq!(
            usage,
            InvoicedUsage {
                voice_words: 1_790,
                voice_cents: Cents(179),
                calls: 2,
                call_cents: Cents(200),
            }
        );
    }

    /// The exact value of `words * rate / 1000` as a fraction, rounded half up by comparing
    /// remainders: an independent statement of the rule.
    fn exact_half_up(words: i64, rate: i64) -> i64 {
        let n = words as i128 * rate as i128;
        let (q, r) = (n / 1000, n % 1000);
        // The fraction r/1000 is at least one half iff 2r >= 1000.
        (q + i128::from(2 * r >= 1000)) as i64
    }

    proptest! {
        #[test]
        fn voice_cents_match_the_exact_rational(
            stt in 0i64..=10_000_000_000,
            tts in 0i64..=10_000_000_000,
            rate_cents in 0i64..=100_000,
        ) {
            let rates = Rates { voice_cents_per_1000_words: rate_cents, call_cents: 100 };
            let c = rate(&totals(stt, tts, 0), &rates);
            prop_assert_eq!(c.voice_cents, Cents(exact_half_up(stt + tts, rate_cents)));
            // Never more than half a cent away from the exact amount.
            let exact_milli = (stt + tts) as i128 * rate_cents as i128;
            let diff = (c.voice_cents.0 as i128 * 1000 - exact_milli).abs();
            prop_assert!(diff <= 500);
        }

        #[test]
        fn totals_add_up_and_lines_carry_them(
            stt in 0i64..=1_000_000_000,
            tts in 0i64..=1_000_000_000,
            calls in 0i64..=1_000_000,
            voice_rate in 0i64..=10_000,
            call_rate in 0i64..=10_000,
            late in proptest::option::of((2000i32..=2100, 1u32..=12)),
        ) {
            let rates = Rates { voice_cents_per_1000_words: voice_rate, call_cents: call_rate };
            let t = totals(stt, tts, calls);
            let c = rate(&t, &rates);
            prop_assert_eq!(c.call_cents, Cents(calls * call_rate));
            prop_assert_eq!(c.total, c.voice_cents + c.call_cents);
            let period = late.map(|(y, m)| BillingPeriod::new(y, m).unwrap());
            let ls = lines(period, &t, &Billed::default(), &rates);
            let sum: Cents = ls.iter().map(|l| l.amount).sum();
            prop_assert_eq!(sum, c.total);
            prop_assert!(ls.iter().all(|l| !l.amount.is_zero()));
            for l in &ls {
                match period {
                    Some(p) => {
                        let prefix = format!("Late usage for {p}: ");
                        prop_assert!(l.description.starts_with(&prefix));
                    }
                    None => prop_assert!(!l.description.starts_with("Late")),
                }
            }
        }

        /// Every line `lines` writes reads back as its own kind and quantity.
        #[test]
        fn descriptions_read_back_as_written(
            stt in 0i64..=1_000_000_000,
            tts in 0i64..=1_000_000_000,
            calls in 0i64..=1_000_000,
            late in proptest::option::of((2000i32..=2100, 1u32..=12)),
        ) {
            let period = late.map(|(y, m)| BillingPeriod::new(y, m).unwrap());
            for l in lines(period, &totals(stt, tts, calls), &Billed::default(), &DEFAULT) {
                prop_assert_eq!(parse_description(&l.description), Some((l.kind, l.quantity)));
            }
        }

        /// However a period's words are split into slices billed one after another, the slices' amounts
        /// add up to the whole rounded once, and each slice's line (if any) carries its own words.
        #[test]
        fn slices_of_a_period_add_up_to_the_whole_rounded_once(
            slices in proptest::collection::vec((0i64..=5_000, 0i64..=5_000), 1..12),
            rate_cents in 0i64..=10_000,
        ) {
            let rates = Rates { voice_cents_per_1000_words: rate_cents, call_cents: 100 };
            let period = Some(BillingPeriod::new(2026, 9).unwrap());
            let mut so_far = Billed::default();
            for (stt, tts) in &slices {
                let t = totals(*stt, *tts, 0);
                let ls = lines(period, &t, &so_far, &rates);
                let amount: Cents = ls.iter().map(|l| l.amount).sum();
                prop_assert_eq!(amount, rate_slice(&t, &so_far, &rates).voice_cents);
                prop_assert!(amount.0 >= 0);
                prop_assert!(ls.iter().all(|l| !l.amount.is_zero() && l.quantity == stt + tts));
                so_far.voice_words += stt + tts;
                so_far.voice_cents += amount;
                prop_assert_eq!(
                    so_far.voice_cents,
                    Cents(exact_half_up(so_far.voice_words, rate_cents))
                );
            }
            let whole: i64 = slices.iter().map(|(s, t)| s + t).sum();
            prop_assert_eq!(so_far.voice_cents, rate(&totals(whole, 0, 0), &rates).voice_cents);
        }

        /// Rating the sum never differs from rating per event by more than the rounding of each part:
        /// and it is the sum that is billed.
        #[test]
        fn rounding_is_on_the_total(words in proptest::collection::vec(1i64..1000, 1..50)) {
            let total: i64 = words.iter().sum();
            let c = rate(&totals(total, 0, 0), &DEFAULT);
            prop_assert_eq!(c.voice_cents.0, (total * 100 + 500) / 1000);
        }
    }
}
