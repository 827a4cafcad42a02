//! The operators' two monthly reports: usage by organization and revenue by organization.

use crate::domain::{BillingPeriod, Cents};

pub use crate::db::monthly_reports::{
    revenue_by_organization, usage_by_organization, RevenueRow, UsageRow,
};

/// The usage report as a table for a terminal.
pub fn usage_table(month: BillingPeriod, rows: &[UsageRow]) -> String {
    use crate::domain::group_thousands as n;
    let g = |v: i64| n(v.max(0) as u64);
    let mut out = format!(
        "Usage by organization, {month}\n{:<38} {:<24} {:>14} {:>14} {:>10}\n",
        "TENANT", "NAME", "STT WORDS", "TTS WORDS", "CALLS"
    );
    let (mut s, mut t, mut c) = (0, 0, 0);
    for r in rows {
        out.push_str(&format!(
            "{:<38} {:<24} {:>14} {:>14} {:>10}\n",
            r.tenant_id,
            truncate(&r.name, 24),
            g(r.stt_words),
            g(r.tts_words),
            g(r.calls)
        ));
        (s, t, c) = (s + r.stt_words, t + r.tts_words, c + r.calls);
    }
    out.push_str(&format!(
        "{:<38} {:<24} {:>14} {:>14} {:>10}\n{} organization(s)\n",
        "TOTAL",
        "",
        g(s),
        g(t),
        g(c),
        rows.len()
    ));
    out
}

/// The revenue report as a table for a terminal.
pub fn revenue_table(month: BillingPeriod, rows: &[RevenueRow]) -> String {
    let mut out = format!(
        "Revenue by organization, {month} (paid invoices)\n{:<38} {:<24} {:>8} {:>16}\n",
        "TENANT", "NAME", "INVOICES", "REVENUE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<38} {:<24} {:>8} {:>16}\n",
            r.tenant_id,
            truncate(&r.name, 24),
            r.invoices,
            r.revenue_cents.to_string()
        ));
    }
    let total: Cents = rows.iter().map(|r| r.revenue_cents).sum();
    let count: i64 = rows.iter().map(|r| r.invoices).sum();
    out.push_str(&format!(
        "{:<38} {:<24} {:>8} {:>16}\n{} organization(s)\n",
        "TOTAL",
        "",
        count,
        total.to_string(),
        rows.len()
    ));
    out
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_total_their_rows() {
        let month: BillingPeriod = "2026-10".parse().unwrap();
        let rows = vec![
            UsageRow {
                tenant_id: "a".into(),
                name: "Acme".into(),
                stt_words: 12_345,
                tts_words: 1,
                calls: 2,
            },
            UsageRow {
                tenant_id: "b".into(),
                name: "A very long organization name indeed".into(),
                stt_words: 5,
                tts_words: 0,
                calls: 0,
            },
        ];
        let t = usage_table(month, &rows);
        assert!(t.contains("12,345"), "{t}");
        assert!(t.contains("12,350"), "{t}");
        assert!(t.contains("A very long organizatio…"), "{t}");
        let r = revenue_table(
            month,
            &[RevenueRow {
                tenant_id: "a".into(),
                name: "Acme".into(),
                invoices: 2,
                revenue_cents: Cents(61_033),
            }],
        );
        assert!(r.contains("$610.33"), "{r}");
    }
}
