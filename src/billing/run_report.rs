//! The run report, as `bill --json` prints it and the runs route returns it.

use crate::domain::{BillingPeriod, Cents};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportLine {
    pub description: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Billed {
    pub tenant_id: String,
    /// None in a dry run.
    pub stripe_invoice_id: Option<String>,
    pub lines: Vec<ReportLine>,
    pub total_cents: i64,
    /// How the charge went: `paid`, `processing` (a bank debit: neither paid nor failed until the bank
    /// answers), `declined`, `action_required` (the bank asks the customer to confirm), `refused`
    /// (Stripe would not charge it at all, e.g. no payment method: the invoice stays open), `sent`
    /// (emailed), or, when the invoice was settled otherwise before the charge, `void` or
    /// `uncollectible` (counted in none of the totals below). Absent in a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub tenant_id: String,
    /// `already_billed` (an earlier run invoiced the tenant for the period), `demo`, `no_subscription`,
    /// `no_usage`, `trial_only`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failed {
    pub tenant_id: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    pub tenants_billed: u64,
    pub billed_cents: i64,
    /// Of `billed_cents`: what the run's charges paid at once (sent invoices are in none of these three).
    #[serde(default)]
    pub paid_cents: i64,
    /// Of `billed_cents`: bank debits still processing, neither paid nor failed until the bank answers.
    #[serde(default)]
    pub processing_cents: i64,
    /// Of `billed_cents`: not paid: declined, refused, or waiting for the customer to confirm with the
    /// bank.
    #[serde(default)]
    pub unpaid_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunReport {
    pub period: BillingPeriod,
    pub dry_run: bool,
    pub billed: Vec<Billed>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
    pub totals: Totals,
}

impl RunReport {
    pub fn new(period: BillingPeriod, dry_run: bool) -> RunReport {
        RunReport {
            period,
            dry_run,
            billed: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Sorts by tenant and computes the totals, so equal runs give equal reports.
    pub fn finish(mut self) -> RunReport {
        self.billed.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        self.skipped.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        self.failed.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        let cents = |outcomes: &[&str]| {
            self.billed
                .iter()
                .filter(|b| b.payment.as_deref().is_some_and(|p| outcomes.contains(&p)))
                .map(|b| b.total_cents)
                .sum()
        };
        self.totals = Totals {
            tenants_billed: self.billed.len() as u64,
            billed_cents: self.billed.iter().map(|b| b.total_cents).sum(),
            paid_cents: cents(&["paid"]),
            processing_cents: cents(&["processing"]),
            unpaid_cents: cents(&["declined", "action_required", "refused"]),
        };
        self
    }

    /// A readable table for the terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let kind = if self.dry_run { "Dry run" } else { "Run" };
        let _ = writeln!(out, "{kind} for {}\n", self.period);
        if !self.billed.is_empty() {
            let _ = writeln!(out, "{:<38} {:>12}  INVOICE", "BILLED", "TOTAL");
            for b in &self.billed {
                let inv = b.stripe_invoice_id.as_deref().unwrap_or("(dry run)");
                let payment = b
                    .payment
                    .as_deref()
                    .map(|p| format!(" ({})", p.replace('_', " ")))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<38} {:>12}  {inv}{payment}",
                    b.tenant_id,
                    Cents(b.total_cents).to_string()
                );
                for l in &b.lines {
                    let _ = writeln!(
                        out,
                        "    {:<60} {:>12}",
                        l.description,
                        Cents(l.amount_cents).to_string()
                    );
                }
            }
            out.push('\n');
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "{:<38} REASON", "SKIPPED");
            for s in &self.skipped {
                let _ = writeln!(out, "{:<38} {}", s.tenant_id, s.reason);
            }
            out.push('\n');
        }
        if !self.failed.is_empty() {
            let _ = writeln!(out, "{:<38} ERROR (a re-run finishes these)", "FAILED");
            for f in &self.failed {
                let _ = writeln!(out, "{:<38} {}", f.tenant_id, f.error);
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} tenant(s) billed, {} in total; {} skipped; {} failed",
            self.totals.tenants_billed,
            Cents(self.totals.billed_cents),
            self.skipped.len(),
            self.failed.len()
        );
        if !self.dry_run && self.totals.billed_cents > 0 {
            let _ = writeln!(
                out,
                "paid {}, bank debits processing {}, not paid {}",
                Cents(self.totals.paid_cents),
                Cents(self.totals.processing_cents),
                Cents(self.totals.unpaid_cents)
            );
        }
        out
    }
}
