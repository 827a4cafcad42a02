//! The follower: the platform's organizations and every row of its `usage_records`, ingested once through
//! the same path as `POST /api/usage/events` (`usage::batcher`, then `usage::ingest`).
//!
//! A pass, while this process holds the lease:
//! 1. organizations, every [`Options::tenants_every`] and whenever a row names a tenant not registered;
//! 2. usage after the cursor, in batches read by keyset, up to a second before the platform's clock (rows
//!    of transactions still committing are rarely that old); each batch is mapped (`mapping`), its events
//!    ingested, then the cursor, the counters and its held rows recorded in one transaction. Reading the
//!    next batch overlaps the ingestion of the previous ones; positions are recorded in order;
//! 3. every [`Options::recheck_every`], the re-read: the rows of the last `PLATFORM_LOOKBACK_S` seconds
//!    below the cursor that were committed after the previous re-read's snapshot of the platform (a row
//!    whose transaction committed after the cursor passed its time), ingested (most are already stored:
//!    their event ids make them duplicates);
//! 4. every [`Options::held_every`], the held rows read again by id and taken when they can be billed.
//!
//! A row whose transaction commits later than `PLATFORM_LOOKBACK_S` after it began is not seen.

use super::mapping::{map_row, Mapped, UsageRow};
use super::organizations;
use super::source::{Key, Source};
use super::store::{self, HeldRow, Retried, Step};
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::usage::NewEvent;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How the follower paces itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// `PLATFORM_LOOKBACK_S`: how late a row may commit and still be counted.
    pub lookback: Duration,
    /// Rows younger than this (by the platform's clock) wait for the next read.
    pub settle: Duration,
    /// The pause between passes once caught up.
    pub poll: Duration,
    /// Rows per read.
    pub batch: i64,
    /// Batches being ingested while the next is read.
    pub depth: usize,
    pub recheck_every: Duration,
    pub tenants_every: Duration,
    pub held_every: Duration,
    /// How long the lease lasts without renewal.
    pub lease: Duration,
}

impl Options {
    pub fn new(lookback: Duration) -> Options {
        Options {
            lookback,
            settle: Duration::from_secs(1).min(lookback),
            poll: Duration::from_millis(250),
            batch: 5_000,
            depth: 2,
            // A re-read scans the window: often enough that a late row waits seconds, rarely enough
            // that the scans cost the platform little (a sixtieth of the window, between 1 and 10 s).
            recheck_every: (lookback / 60).clamp(Duration::from_secs(1), Duration::from_secs(10)),
            tenants_every: Duration::from_secs(10),
            held_every: Duration::from_secs(10),
            lease: Duration::from_secs(30),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Read up to the platform's horizon.
    CaughtUp,
    /// Another replica follows now.
    Standby,
}

pub struct Follower {
    state: AppState,
    source: Source,
    opts: Options,
    holder: String,
    /// Platform tenant ids registered here.
    known: HashSet<String>,
    tenants_at: Option<Instant>,
    recheck_at: Option<Instant>,
    held_at: Option<Instant>,
    lease_at: Option<Instant>,
    /// When the cursor was last recorded without rows (so an idle follower writes now and then).
    idle_write_at: Option<Instant>,
}

/// A batch on its way in: its events, then what to record with its position.
type Inflight = tokio::task::JoinHandle<Result<(Key, Step), sqlx::Error>>;

impl Follower {
    pub fn new(state: AppState, source: Source, opts: Options) -> Follower {
        let holder = format!(
            "{}:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Follower {
            state,
            source,
            opts,
            holder,
            known: HashSet::new(),
            tenants_at: None,
            recheck_at: None,
            held_at: None,
            lease_at: None,
            idle_write_at: None,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes (or renews) the lease, creating the follower's row on first use: a new follower starts at
    /// the first day of the current billing period (`platform import --usage-since` starts it elsewhere).
    pub async fn lease(&mut self) -> Result<bool, sqlx::Error> {
        let db = &self.state.db;
        if store::load(db).await?.is_none() {
            let tz = self.state.settings.billing.timezone;
            let start = BillingPeriod::containing(now(), tz).bounds(tz).0;
            store::init(db, start).await?;
            tracing::info!(%start, "following the platform's usage from the start of the current period");
        }
        let lease = chrono::Duration::from_std(self.opts.lease).unwrap_or_default();
        let held = store::acquire(db, &self.holder, lease).await?;
        self.lease_at = held.then(Instant::now);
        Ok(held)
    }

    async fn renew_if_due(&mut self) -> Result<bool, sqlx::Error> {
        match self.lease_at {
            Some(at) if at.elapsed() < self.opts.lease / 3 => Ok(true),
            _ => self.lease().await,
        }
    }

    fn due(at: Option<Instant>, every: Duration) -> bool {
        at.is_none_or(|at| at.elapsed() >= every)
    }

    /// One pass (see the module's documentation).
    pub async fn pass(&mut self) -> anyhow::Result<Pass> {
        if !self.lease().await? {
            return Ok(Pass::Standby);
        }
        let result = self.pass_holding().await;
        if result.is_err() {
            // The next pass starts from what was recorded, with the organizations read again.
            self.tenants_at = None;
        }
        result
    }

    async fn pass_holding(&mut self) -> anyhow::Result<Pass> {
        if Self::due(self.tenants_at, self.opts.tenants_every) {
            self.sync_tenants().await?;
        }
        if !self.catch_up().await? {
            return Ok(Pass::Standby);
        }
        if Self::due(self.recheck_at, self.opts.recheck_every) {
            if !self.recheck().await? {
                return Ok(Pass::Standby);
            }
            self.recheck_at = Some(Instant::now());
        }
        if Self::due(self.held_at, self.opts.held_every) {
            if !self.retry_held().await? {
                return Ok(Pass::Standby);
            }
            self.held_at = Some(Instant::now());
        }
        Ok(Pass::CaughtUp)
    }

    /// Reads the platform's organizations and follows them here.
    pub async fn sync_tenants(&mut self) -> anyhow::Result<()> {
        let platform = self.source.tenants().await?;
        self.known = organizations::follow(&self.state, &platform).await?;
        self.tenants_at = Some(Instant::now());
        Ok(())
    }

    /// Maps rows to events, reading the organizations again first when a row names one not registered
    /// (at most once a second).
    async fn map(&mut self, rows: &[UsageRow]) -> anyhow::Result<(Vec<NewEvent>, Step)> {
        let unknown = rows.iter().any(|r| !self.known.contains(&r.tenant_id));
        if unknown && Self::due(self.tenants_at, Duration::from_secs(1)) {
            self.sync_tenants().await?;
        }
        let received = now();
        let mut events = Vec::with_capacity(rows.len());
        let mut step = Step::default();
        for row in rows {
            match map_row(row, |t| self.known.contains(t), received) {
                Mapped::Event(e) => {
                    events.push(e);
                    step.taken += 1;
                }
                Mapped::NotBilled => step.not_billed += 1,
                Mapped::Held(hold) => step.held.push(HeldRow::new(row, hold)),
            }
        }
        Ok((events, step))
    }

    fn ingest(&self, events: Vec<NewEvent>) -> tokio::task::JoinHandle<Result<u64, sqlx::Error>> {
        let state = self.state.clone();
        tokio::spawn(async move {
            if events.is_empty() {
                return Ok(0);
            }
            let outcome = state.usage.ingest(&events, now()).await?;
            crate::metrics::usage_events(outcome.accepted, outcome.duplicates);
            Ok(outcome.accepted)
        })
    }

    /// Reads and ingests everything after the cursor; false if the lease was lost.
    async fn catch_up(&mut self) -> anyhow::Result<bool> {
        let st = store::load(&self.state.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the follower's row is missing"))?;
        let mut reading = st.cursor.clone();
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let outcome = async {
            loop {
                let (read, reached) = self
                    .source
                    .read_after(&reading, self.opts.settle, self.opts.batch)
                    .await?;
                let full = read.rows.len() as i64 >= self.opts.batch;
                let (events, step) = self.map(&read.rows).await?;
                for h in &step.held {
                    tracing::warn!(record = %h.record_id, reason = %h.reason, detail = %h.detail,
                        "platform usage row held back");
                }
                let moved = reached != reading;
                reading = reached.clone();
                let rows = read.rows.len();
                let idle = rows == 0
                    && !Self::due(self.idle_write_at, Duration::from_secs(2))
                    && inflight.is_empty();
                if moved && !idle {
                    if rows == 0 {
                        self.idle_write_at = Some(Instant::now());
                    }
                    let ingest = self.ingest(events);
                    inflight.push_back(tokio::spawn(async move {
                        ingest.await.map_err(|_| sqlx::Error::WorkerCrashed)??;
                        Ok((reached, step))
                    }));
                }
                while inflight.len() > self.opts.depth || (!full && !inflight.is_empty()) {
                    let done = inflight.pop_front().expect("not empty");
                    let (key, step) = done.await.map_err(|_| sqlx::Error::WorkerCrashed)??;
                    if !store::advance(&self.state.db, &self.holder, &key, &step).await? {
                        return Ok(false);
                    }
                    if !self.renew_if_due().await? {
                        return Ok(false);
                    }
                }
                if !full {
                    return Ok(true);
                }
            }
        }
        .await;
        for task in inflight {
            task.abort();
        }
        outcome
    }

    /// The re-read of the lookback window; false if the lease was lost.
    async fn recheck(&mut self) -> anyhow::Result<bool> {
        let st = store::load(&self.state.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the follower's row is missing"))?;
        let through = st.cursor.clone();
        let Some((since, _)) = st.recheck else {
            // The first re-read only takes the snapshot: rows committed after it are found by the next.
            let snapshot = self.source.snapshot().await?;
            return Ok(store::rechecked(
                &self.state.db,
                &self.holder,
                &snapshot,
                &through,
                &Step::default(),
            )
            .await?);
        };
        let from = self.source.now().await?
            - chrono::Duration::from_std(self.opts.lookback).unwrap_or_default();
        let read = self.source.committed_since(from, &through, &since).await?;
        let (events, mut step) = self.map(&read.rows).await?;
        // Rows of types not billed were counted by the read that passed them, or are late and uncounted.
        step.not_billed = 0;
        let found = events.len();
        step.taken = self
            .ingest(events)
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?? as i64;
        if step.taken > 0 {
            tracing::info!(
                rows = found,
                new = step.taken,
                "platform usage rows committed late were ingested"
            );
        }
        Ok(store::rechecked(
            &self.state.db,
            &self.holder,
            &read.snapshot,
            &through,
            &step,
        )
        .await?)
    }

    /// Tries the held rows again; false if the lease was lost.
    async fn retry_held(&mut self) -> anyhow::Result<bool> {
        let before = now() - chrono::Duration::from_std(self.opts.held_every).unwrap_or_default();
        let due = store::held_due(&self.state.db, before, 1_000).await?;
        if due.is_empty() {
            return Ok(true);
        }
        let ids: Vec<String> = due.iter().map(|h| h.record_id.clone()).collect();
        let rows: HashMap<String, UsageRow> = self
            .source
            .rows(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let present: Vec<UsageRow> = due
            .iter()
            .filter_map(|h| rows.get(&h.record_id).cloned())
            .collect();
        let mut retried = Retried::default();
        for h in &due {
            if !rows.contains_key(&h.record_id) {
                tracing::info!(record = %h.record_id, "a held platform usage row no longer exists");
                retried.gone.push(h.record_id.clone());
            }
        }
        let (events, step) = self.map(&present).await?;
        let held: HashSet<&str> = step.held.iter().map(|h| h.record_id.as_str()).collect();
        let billed: HashSet<String> = events
            .iter()
            .filter_map(|e| record_of(e, &present))
            .collect();
        for row in &present {
            if held.contains(row.id.as_str()) {
                continue;
            }
            if billed.contains(&row.id) {
                retried.released.push(row.id.clone());
            } else {
                retried.dropped_not_billed.push(row.id.clone());
            }
        }
        retried.still = step.held;
        self.ingest(events)
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)??;
        if !retried.released.is_empty() {
            tracing::info!(
                rows = retried.released.len(),
                "held platform usage rows taken after their fix"
            );
        }
        Ok(store::retried(&self.state.db, &self.holder, &retried).await?)
    }

    /// Gives the lease up.
    pub async fn release(&self) {
        if let Err(e) = store::release(&self.state.db, &self.holder).await {
            tracing::debug!(error = %e, "follower lease not released; it expires");
        }
    }
}

/// The row an event was made from (events of calls name their row in the metadata).
fn record_of(e: &NewEvent, rows: &[UsageRow]) -> Option<String> {
    if let Some(id) = e.event_id.strip_prefix("usage_records:") {
        return Some(id.to_owned());
    }
    let meta: serde_json::Value = serde_json::from_str(e.metadata.as_deref()?).ok()?;
    let id = meta.get("usage_record_id")?.as_str()?;
    rows.iter().any(|r| r.id == id).then(|| id.to_owned())
}

/// Follows until shutdown: failures (the platform's database down, ours) are logged and retried with a
/// growing pause; the service goes on serving meanwhile.
pub async fn run(state: AppState, source: Source, opts: Options, mut shutdown: Shutdown) {
    let mut follower = Follower::new(state.clone(), source, opts.clone());
    let mut failures: u32 = 0;
    loop {
        let pause = match follower.pass().await {
            Ok(pass) => {
                if failures > 0 {
                    tracing::info!(failures, "following the platform's database again");
                }
                failures = 0;
                match pass {
                    Pass::CaughtUp => opts.poll,
                    Pass::Standby => opts.lease / 3,
                }
            }
            Err(e) => {
                failures += 1;
                let pause =
                    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30));
                tracing::warn!(error = %format!("{e:#}"), failures, retry_in_s = pause.as_secs(),
                    "the platform's database could not be followed; retrying");
                if let Err(e) = store::record_error(&state.db, &format!("{e:#}")).await {
                    tracing::debug!(error = %e, "follower error not recorded");
                }
                pause
            }
        };
        if shutdown.sleep(pause).await {
            break;
        }
    }
    follower.release().await;
}
