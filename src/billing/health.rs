//! Billing health: what an operator must act on so that no usage is left uninvoiced. Shown on
//! `/admin/billing` and as gauges in `/metrics`; the definitions are in docs/OPERATIONS.md (Metrics).
//!
//! - An *orphan claim*: the run claimed a tenant's usage for a period (`usage_claims`) and no ledger entry
//!   of that tenant and period exists: it stopped between the two. Only a run of that period continues it.
//! - An *unfinished period*: a closed period whose ledger has entries short of `done`/`skipped`, whose last
//!   live run did not complete it, or which nobody ran though tenants with a subscription have usage in
//!   it waiting (a day after its end, when the scheduler should have run it).
//!
//! A period whose run is in progress (its lease held) is neither: its claims and steps are in flight.

use super::ledger::Step;
use crate::db::billing_health as store;
use crate::db::Db;
use crate::domain::BillingPeriod;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// How long after a period's end a run is expected to have started (the scheduler starts one within
/// minutes of the 1st) before a period nobody ran counts as unfinished.
pub const NEVER_RUN_GRACE_HOURS: i64 = 24;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Oldest claim first.
    pub orphan_claims: Vec<OrphanClaim>,
    /// Oldest period first: the order to run them in.
    pub unfinished_periods: Vec<UnfinishedPeriod>,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.orphan_claims.is_empty() && self.unfinished_periods.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrphanClaim {
    pub tenant_id: String,
    pub period: BillingPeriod,
    pub claimed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedPeriod {
    pub period: BillingPeriod,
    /// Tenants known to be left: entries short of done, tenants the last run failed, and tenants with a
    /// subscription and waiting usage in a period never run. 0 when only the run's own failure is known.
    pub tenants: usize,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Ledger entries at a step before `done` or `skipped`: invoices stopped part-way.
    InvoicesPartWay(usize),
    /// The last run failed as a whole, with its error if recorded.
    RunFailed(Option<String>),
    /// The last run is still marked running but nobody holds the period: its process ended.
    RunInterrupted,
    /// The last run finished and reported tenants it could not bill.
    TenantsFailed(usize),
    /// The last run ended without marking the period complete (e.g. its runner lost the lease).
    RunIncomplete,
    /// No live run ever took the period, and this many tenants with a subscription have usage in it.
    NeverRun(i64),
}

impl Reason {
    /// A sentence an operator reads on the admin page.
    pub fn describe(&self) -> String {
        let tenants = |n: usize| {
            if n == 1 {
                "1 tenant".to_owned()
            } else {
                format!("{n} tenants")
            }
        };
        match self {
            Reason::InvoicesPartWay(1) => "1 tenant's invoice stopped part-way".to_owned(),
            Reason::InvoicesPartWay(n) => format!("{n} tenants' invoices stopped part-way"),
            Reason::RunFailed(Some(e)) => format!("The last run failed: {e}"),
            Reason::RunFailed(None) => "The last run failed".to_owned(),
            Reason::RunInterrupted => "The last run stopped before it finished".to_owned(),
            Reason::TenantsFailed(n) => format!("The last run could not bill {}", tenants(*n)),
            Reason::RunIncomplete => "The last run did not complete the period".to_owned(),
            Reason::NeverRun(n) => format!(
                "Never run; {} with a subscription {} usage waiting in it",
                tenants(*n as usize),
                if *n == 1 { "has" } else { "have" }
            ),
        }
    }
}

/// What an operator runs to finish `period` (the same as the admin page's run form, live).
pub fn command(period: BillingPeriod) -> String {
    format!("thanotopolis-billing bill --period {period}")
}

/// How many months back the periods no run took are looked into.
pub const LOOKBACK_MONTHS: usize = 24;

/// Where a period that has been run stands, from its lease and latest live run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// The lease is held: a run is working on it now.
    InProgress,
    /// A run completed it (every tenant billed or skipped) after the latest run started.
    Complete,
    /// Otherwise: the latest run failed, stopped or left tenants failed.
    NotComplete,
}

fn run_state(p: &store::PeriodRun, now: DateTime<Utc>) -> RunState {
    if p.lease_until > now {
        return RunState::InProgress;
    }
    // Compared with the latest run's start, not its status: a run refused because another held the
    // period is recorded as failed, yet the other may have completed the period after it.
    match (p.completed_at, &p.last_run) {
        (Some(done), Some(last)) if done >= last.started_at => RunState::Complete,
        (Some(_), None) => RunState::Complete,
        _ => RunState::NotComplete,
    }
}

/// The last closed period whose end is more than the grace ago at `now`.
fn last_overdue_period(now: DateTime<Utc>, tz: Tz) -> BillingPeriod {
    let mut p = BillingPeriod::containing(now, tz).prev();
    while p.bounds(tz).1 + Duration::hours(NEVER_RUN_GRACE_HOURS) > now {
        p = p.prev();
    }
    p
}

/// The closed periods after the latest one a live run took (`from`), up to the current one, at most
/// [`LOOKBACK_MONTHS`] back. A run of a period claims all earlier usage too, as late usage, so periods
/// before the latest run need no look.
fn unrun_periods(from: BillingPeriod, current: BillingPeriod) -> Vec<BillingPeriod> {
    let mut out: Vec<BillingPeriod> =
        std::iter::successors(Some(current.prev()), |p| Some(p.prev()))
            .take(LOOKBACK_MONTHS)
            .take_while(|p| *p >= from)
            .collect();
    out.reverse();
    out
}

#[derive(Deserialize)]
struct StoredReport {
    #[serde(default)]
    failed: Vec<FailedTenant>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct FailedTenant {
    tenant_id: String,
}

#[derive(Default)]
struct Pending {
    tenants: BTreeSet<String>,
    uncounted: usize,
    reasons: Vec<Reason>,
}

/// The billing health at `now`.
///
/// Only periods that need a look are queried, so that a healthy system costs a read of the leases (a
/// row per period run) and of demo tenants' claims: the periods whose last run did not complete them
/// and those no run has taken yet. A run that completes a period has continued every claim and ledger
/// entry of it (a run resumes any entry short of `done`, and claims again, idempotently, for a tenant
/// without one), except for tenants it skips before looking: demo accounts, whose claims are read apart.
pub async fn check(db: &Db, tz: Tz, now: DateTime<Utc>) -> Result<Health, sqlx::Error> {
    let current = BillingPeriod::containing(now, tz);
    let (periods, demo_claims) = tokio::try_join!(
        store::run_periods(db, current),
        store::demo_claims_without_ledger(db),
    )?;
    let runs: BTreeMap<BillingPeriod, &store::PeriodRun> = periods
        .iter()
        .filter_map(|p| Some((p.period.parse().ok()?, p)))
        .collect();
    let in_progress = |p: BillingPeriod| {
        runs.get(&p)
            .is_some_and(|r| run_state(r, now) == RunState::InProgress)
    };
    let not_complete: Vec<BillingPeriod> = runs
        .iter()
        .filter(|(_, r)| run_state(r, now) == RunState::NotComplete)
        .map(|(p, _)| *p)
        .collect();
    let unrun = match runs.keys().next_back() {
        Some(latest) => unrun_periods(latest.next(), current),
        // Nothing was ever run: from the first usage on, if there is any before this period.
        None => match store::first_usage_day(db, current.first_day()).await? {
            Some(day) => unrun_periods(BillingPeriod::of_day(day), current),
            None => Vec::new(),
        },
    };

    let mut orphan_claims: Vec<OrphanClaim> = Vec::new();
    let mut pending: BTreeMap<BillingPeriod, Pending> = BTreeMap::new();
    for p in not_complete.iter().chain(&unrun) {
        for c in store::claims_without_ledger(db, *p).await? {
            orphan_claims.push(OrphanClaim {
                tenant_id: c.tenant_id,
                period: *p,
                claimed_at: c.claimed_at,
            });
        }
    }
    for c in demo_claims {
        let Ok(p) = c.period.parse::<BillingPeriod>() else {
            continue;
        };
        let seen = orphan_claims
            .iter()
            .any(|o| o.period == p && o.tenant_id == c.tenant_id);
        if !seen && !in_progress(p) {
            orphan_claims.push(OrphanClaim {
                tenant_id: c.tenant_id,
                period: p,
                claimed_at: c.claimed_at,
            });
        }
    }
    orphan_claims.sort_by(|a, b| {
        (a.claimed_at, &a.tenant_id, a.period).cmp(&(b.claimed_at, &b.tenant_id, b.period))
    });

    for p in &not_complete {
        let run = runs[p];
        let entry = pending.entry(*p).or_default();
        let stuck =
            store::entries_not_final(db, *p, [Step::Done.as_str(), Step::Skipped.as_str()]).await?;
        if !stuck.is_empty() {
            entry.reasons.push(Reason::InvoicesPartWay(stuck.len()));
            entry.tenants.extend(stuck);
        }
        let Some(last) = &run.last_run else {
            entry.reasons.push(Reason::RunIncomplete);
            continue;
        };
        // Only the report of a run that did not complete is read: the one place its failures are.
        let report: Option<StoredReport> = match last.status.as_str() {
            "running" => None,
            _ => store::run_report(db, &last.run_id)
                .await?
                .and_then(|json| serde_json::from_str(&json).ok()),
        };
        match (last.status.as_str(), report) {
            ("running", _) => entry.reasons.push(Reason::RunInterrupted),
            ("failed", r) => entry
                .reasons
                .push(Reason::RunFailed(r.and_then(|r| r.error))),
            (_, Some(r)) if !r.failed.is_empty() => {
                entry.reasons.push(Reason::TenantsFailed(r.failed.len()));
                entry
                    .tenants
                    .extend(r.failed.into_iter().map(|f| f.tenant_id));
            }
            _ => entry.reasons.push(Reason::RunIncomplete),
        }
    }

    let overdue = last_overdue_period(now, tz);
    for p in unrun.iter().filter(|p| **p <= overdue) {
        let n = store::subscribed_with_open_usage(db, p.first_day(), p.end_day()).await?;
        if n > 0 {
            let entry = pending.entry(*p).or_default();
            entry.uncounted += n as usize;
            entry.reasons.push(Reason::NeverRun(n));
        }
    }

    let unfinished_periods = pending
        .into_iter()
        .filter(|(_, e)| !e.reasons.is_empty())
        .map(|(period, e)| UnfinishedPeriod {
            period,
            tenants: e.tenants.len() + e.uncounted,
            reasons: e.reasons,
        })
        .collect();
    Ok(Health {
        orphan_claims,
        unfinished_periods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn period(s: &str) -> BillingPeriod {
        s.parse().unwrap()
    }

    fn leased(
        lease_until: DateTime<Utc>,
        completed_at: Option<DateTime<Utc>>,
        started_at: Option<DateTime<Utc>>,
    ) -> store::PeriodRun {
        store::PeriodRun {
            period: "2026-10".into(),
            lease_until,
            completed_at,
            last_run: started_at.map(|s| store::LastRun {
                run_id: "run_1".into(),
                status: "completed".into(),
                started_at: s,
            }),
        }
    }

    #[test]
    fn a_period_is_complete_only_when_a_run_completed_it_after_the_latest_run_started() {
        let now = at(2026, 11, 5, 12);
        let held = leased(now + Duration::seconds(30), None, Some(now));
        assert_eq!(run_state(&held, now), RunState::InProgress);
        let clean = leased(
            at(2026, 11, 1, 1),
            Some(at(2026, 11, 1, 1)),
            Some(at(2026, 11, 1, 0)),
        );
        assert_eq!(run_state(&clean, now), RunState::Complete);
        // Completed once, then a later run left tenants failed.
        let later_failed = leased(
            at(2026, 11, 3, 1),
            Some(at(2026, 11, 1, 1)),
            Some(at(2026, 11, 3, 0)),
        );
        assert_eq!(run_state(&later_failed, now), RunState::NotComplete);
        let never_completed = leased(at(2026, 11, 1, 1), None, Some(at(2026, 11, 1, 0)));
        assert_eq!(run_state(&never_completed, now), RunState::NotComplete);
    }

    #[test]
    fn a_period_counts_as_never_run_a_day_after_its_end() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            last_overdue_period(at(2026, 11, 1, 23), tz),
            period("2026-09")
        );
        assert_eq!(
            last_overdue_period(at(2026, 11, 2, 1), tz),
            period("2026-10")
        );
        // The period's end is local midnight: in New York, Nov 1 00:00 is 04:00 UTC.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            last_overdue_period(at(2026, 11, 2, 3), ny),
            period("2026-09")
        );
        assert_eq!(
            last_overdue_period(at(2026, 11, 2, 5), ny),
            period("2026-10")
        );
        // After the latest period run, up to the current one (2027-02), excluded.
        assert_eq!(
            unrun_periods(period("2026-11"), period("2027-02")),
            [period("2026-11"), period("2026-12"), period("2027-01")]
        );
        assert!(unrun_periods(period("2027-02"), period("2027-02")).is_empty());
        // At most two years back.
        let far = unrun_periods(period("2020-01"), period("2027-02"));
        assert_eq!(far.len(), LOOKBACK_MONTHS);
        assert_eq!(far[0], period("2025-02"));
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Reason::InvoicesPartWay(1).describe(),
            "1 tenant's invoice stopped part-way"
        );
        assert_eq!(
            Reason::InvoicesPartWay(3).describe(),
            "3 tenants' invoices stopped part-way"
        );
        assert_eq!(
            Reason::NeverRun(2).describe(),
            "Never run; 2 tenants with a subscription have usage waiting in it"
        );
        assert_eq!(
            command(period("2026-10")),
            "thanotopolis-billing bill --period 2026-10"
        );
    }
}
