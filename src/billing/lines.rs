//! What an invoice for a tenant and period carries: pure functions over claimed usage.

use crate::domain::BillingPeriod;
use crate::usage::billable::ByPeriod;
use crate::usage::rating::{self, Billed, Rates};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the tenant's other invoices already billed, by the period whose usage they billed.
pub type BilledByPeriod = BTreeMap<BillingPeriod, Billed>;

/// One line of the invoice, before it exists in Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedLine {
    /// Position on the invoice; part of the line's idempotency key.
    pub line_no: i32,
    /// The period whose usage the line bills (the run's own, or an earlier one for late usage).
    pub usage_period: BillingPeriod,
    pub kind: &'static str,
    pub description: String,
    pub quantity: i64,
    pub amount_cents: i64,
}

/// The lines for the run of `period`: its own usage first, then each earlier period's late usage in order.
/// `billed` is what the tenant's other invoices billed of each period, so that a period billed in slices
/// is rounded once (see `rating::rate_slice`).
pub fn lines(
    period: BillingPeriod,
    usage: &ByPeriod,
    billed: &BilledByPeriod,
    rates: &Rates,
) -> Vec<PlannedLine> {
    let mut out = Vec::new();
    let own = usage.get(&period).into_iter().map(|t| (period, None, t));
    let late = usage
        .iter()
        .filter(|(p, _)| **p < period)
        .map(|(p, t)| (*p, Some(*p), t));
    for (usage_period, late_label, totals) in own.chain(late) {
        let before = billed.get(&usage_period).copied().unwrap_or_default();
        for line in rating::lines(late_label, totals, &before, rates) {
            out.push(PlannedLine {
                line_no: out.len() as i32 + 1,
                usage_period,
                kind: line.kind.as_str(),
                description: line.description,
                quantity: line.quantity,
                amount_cents: line.amount.0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::rating::UsageTotals;

    const RATES: Rates = Rates {
        voice_cents_per_1000_words: 100,
        call_cents: 100,
    };

    fn p(s: &str) -> BillingPeriod {
        s.parse().unwrap()
    }

    #[test]
    fn own_lines_first_then_late_periods_in_order() {
        let mut usage = ByPeriod::new();
        usage.insert(
            p("2026-10"),
            UsageTotals {
                stt_words: 10_000,
                tts_words: 2_345,
                calls: 17,
            },
        );
        usage.insert(
            p("2026-08"),
            UsageTotals {
                stt_words: 0,
                tts_words: 0,
                calls: 2,
            },
        );
        usage.insert(
            p("2026-09"),
            UsageTotals {
                stt_words: 290,
                tts_words: 0,
                calls: 0,
            },
        );
        let lines = lines(p("2026-10"), &usage, &BilledByPeriod::new(), &RATES);
        let text: Vec<(&str, i64)> = lines
            .iter()
            .map(|l| (l.description.as_str(), l.amount_cents))
            .collect();
        assert_eq!(
            text,
            vec![
                ("Voice Usage: 12,345 words (STT: 10,000, TTS: 2,345)", 1_235),
                ("Phone Calls: 17 calls", 1_700),
                ("Late usage for 2026-08: Phone Calls: 2 calls", 200),
                (
                    "Late usage for 2026-09: Voice Usage: 290 words (STT: 290, TTS: 0)",
                    29
                ),
            ]
        );
        assert_eq!(
            lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn usage_under_half_a_cent_makes_no_line() {
        let mut usage = ByPeriod::new();
        usage.insert(
            p("2026-10"),
            UsageTotals {
                stt_words: 4,
                tts_words: 0,
                calls: 0,
            },
        );
        assert!(lines(p("2026-10"), &usage, &BilledByPeriod::new(), &RATES).is_empty());
    }

    #[test]
    fn late_voice_bills_the_period_rounded_once() {
        let mut usage = ByPeriod::new();
        let words = |stt_words| UsageTotals {
            stt_words,
            tts_words: 0,
            calls: 0,
        };
        usage.insert(p("2026-08"), words(5));
        usage.insert(p("2026-09"), words(2));
        usage.insert(p("2026-10"), words(290));
        let mut billed = BilledByPeriod::new();
        // 2026-08: 1,005 words billed 101 cents; 2026-09: 1,004 words billed 100 cents.
        billed.insert(
            p("2026-08"),
            Billed {
                voice_words: 1_005,
                voice_cents: crate::domain::Cents(101),
            },
        );
        billed.insert(
            p("2026-09"),
            Billed {
                voice_words: 1_004,
                voice_cents: crate::domain::Cents(100),
            },
        );
        let lines = lines(p("2026-10"), &usage, &billed, &RATES);
        let text: Vec<(&str, i64, i32)> = lines
            .iter()
            .map(|l| (l.description.as_str(), l.amount_cents, l.line_no))
            .collect();
        assert_eq!(
            text,
            vec![
                ("Voice Usage: 290 words (STT: 290, TTS: 0)", 29, 1),
                (
                    "Late usage for 2026-09: Voice Usage: 2 words (STT: 2, TTS: 0)",
                    1,
                    2
                ),
            ]
        );
        assert_eq!(lines[1].usage_period, p("2026-09"));
        assert_eq!(lines[1].quantity, 2);
    }
}
