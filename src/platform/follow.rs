//! The follower: the platform's organizations and every row of its `usage_records`, ingested once through
//! the same path as `POST /api/usage/events` (`usage::batcher`, then `usage::ingest`).
//!
//! A pass, while this process holds the lease:
//! 1. organizations, every [`Options::tenants_every`] and whenever a row names a tenant not registered
//!    (with the platform's new `stripe_customers` rows linked: `links`);
//! 2. usage after the cursor, in batches read by keyset, up to a second before the platform's clock (rows
//!    of transactions still committing are rarely that old); each batch is mapped (`mapping`), its events
//!    ingested, then the cursor, the counters and its held rows recorded in one transaction. Reading the
//!    next batch overlaps the ingestion of the previous ones; positions are recorded in order. The very
//!    first read's snapshot of the platform is recorded before anything else: the first re-read and the
//!    first sweep take what committed after it;
//! 3. every [`Options::recheck_every`], the re-read: the rows below the cursor that were committed after
//!    the previous re-read's snapshot of the platform (a row whose transaction committed after the cursor
//!    passed its time), from `PLATFORM_LOOKBACK_S` before the previous re-read's position (so a follower
//!    stopped for longer than that still reads all it missed), ingested (most are already stored: their
//!    event ids make them duplicates, and stored ones are not sent again);
//! 4. every [`Options::held_every`], the held rows read again by id and taken when they can be billed;
//! 5. the sweep, one batch per pass: the platform stamps a row with its transaction's start, and its
//!    sessions can keep a transaction open for minutes (`UsageTrackingService.record_usage` commits, then
//!    refreshes the row, which begins the session's next transaction: usage_service.py:48-50; the browser's
//!    speech-to-text socket keeps one session for its whole life: voice_streaming.py:105-109,168), so a
//!    row can commit longer than `PLATFORM_LOOKBACK_S` after the time it carries. Every
//!    [`Options::sweep_every`] a pass reads the open billing period (and the previous one until its run
//!    has completed) again by keyset through the `usage_date` index, up to the lookback before its own
//!    start, and takes the rows the previous pass's snapshot could not see. A row stamped before that
//!    range (in a period already billed) is not found.

use super::links::Links;
use super::mapping::{map_row, Mapped, UsageRow};
use super::organizations;
use super::source::{Key, Scan, Source};
use super::store::{self, HeldRow, Retried, Step};
use super::sweep;
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
    /// How often the sweep starts a pass (it then reads one batch per pass of the follower).
    pub sweep_every: Duration,
    /// Rows scanned per query of the re-read and of the sweep (only the late ones are read whole).
    pub scan: i64,
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
            sweep_every: Duration::from_secs(3600),
            scan: 50_000,
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
    links: Links,
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
            links: Links::default(),
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
        if !self.sweep().await? {
            return Ok(Pass::Standby);
        }
        Ok(Pass::CaughtUp)
    }

    /// Reads the platform's organizations and follows them here; links the organizations' new Stripe
    /// customers.
    pub async fn sync_tenants(&mut self) -> anyhow::Result<()> {
        let (platform, read_at) = self.source.tenants().await?;
        let last_read = store::load(&self.state.db)
            .await?
            .and_then(|st| st.tenants_read_at);
        let (known, complete) =
            organizations::follow(&self.state, &platform, read_at, last_read).await?;
        self.known = known;
        if complete {
            store::tenants_read(&self.state.db, read_at).await?;
        }
        self.tenants_at = Some(Instant::now());
        self.links
            .link_new(&self.state, &self.source, &self.known)
            .await;
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

    /// Ingests the events not stored yet (a re-read and a sweep find mostly rows already taken: one read of
    /// their ids instead of an ingestion of duplicates); returns how many were stored.
    async fn ingest_missing(&self, events: Vec<NewEvent>) -> Result<i64, sqlx::Error> {
        if events.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let stored = crate::usage::stored::event_ids(&self.state.db, &ids).await?;
        let missing: Vec<NewEvent> = events
            .into_iter()
            .filter(|e| !stored.contains(&e.event_id))
            .collect();
        let accepted = self
            .ingest(missing)
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)??;
        Ok(accepted as i64)
    }

    /// Reads and ingests everything after the cursor (step 2 of a pass, which tools and tests may take
    /// alone); false if the lease was lost.
    pub async fn catch_up(&mut self) -> anyhow::Result<bool> {
        let st = store::load(&self.state.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the follower's row is missing"))?;
        let mut reading = st.cursor.clone();
        let mut first = st.recheck.is_none();
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let outcome = async {
            loop {
                let (read, reached) = self
                    .source
                    .read_after(&reading, self.opts.settle, self.opts.batch)
                    .await?;
                if std::mem::take(&mut first) {
                    // Rows below this read's keys that commit after its snapshot are the re-read's and
                    // the sweep's: recorded before any position is.
                    let anchor = Key::through(read.now);
                    if !store::first_snapshot(&self.state.db, &self.holder, &read.snapshot, &anchor)
                        .await?
                    {
                        return Ok(false);
                    }
                }
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

    /// The re-read: rows below the cursor committed after the previous re-read's snapshot, from the
    /// lookback before the previous re-read's position (not before the platform's clock: a follower
    /// stopped for long reads all it missed); false if the lease was lost. Step 3 of a pass.
    pub async fn recheck(&mut self) -> anyhow::Result<bool> {
        let st = store::load(&self.state.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the follower's row is missing"))?;
        let through = st.cursor.clone();
        // Recorded by the first read (`catch_up` runs first in every pass).
        let Some((since, previous)) = st.recheck else {
            return Ok(true);
        };
        let lookback = chrono::Duration::from_std(self.opts.lookback).unwrap_or_default();
        // The next re-read's snapshot: taken before this one reads, so what commits meanwhile is found
        // next time.
        let (snapshot, platform_now) = self.source.snapshot().await?;
        let from = platform_now.min(previous.at) - lookback;
        let mut after = Key::before(from);
        let mut step = Step::default();
        let mut found = 0;
        loop {
            let scan = self
                .source
                .committed_since(&after, &through, &since, self.opts.scan)
                .await?;
            found += scan.rows.len();
            let (events, batch) = self.map(&scan.rows).await?;
            step.taken += self.ingest_missing(events).await?;
            step.held.extend(batch.held);
            after = scan.reached;
            if scan.done {
                break;
            }
        }
        // Rows of types not billed were counted by the read that passed them, or are late and uncounted.
        if step.taken > 0 {
            tracing::info!(
                rows = found,
                new = step.taken,
                "platform usage rows committed late were ingested"
            );
        }
        Ok(store::rechecked(&self.state.db, &self.holder, &snapshot, &through, &step).await?)
    }

    /// One batch of the sweep, starting a pass when one is due; false if the lease was lost. Step 5 of a
    /// pass.
    pub async fn sweep(&mut self) -> anyhow::Result<bool> {
        let st = store::load(&self.state.db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the follower's row is missing"))?;
        // Recorded by the first read.
        let Some((since, since_at)) = st.sweep.since.clone() else {
            return Ok(true);
        };
        let pass = match st.sweep.pass.clone() {
            Some(pass) => pass,
            None => {
                let every = chrono::Duration::from_std(self.opts.sweep_every).unwrap_or_default();
                if now() - since_at < every {
                    return Ok(true);
                }
                let (snapshot, platform_now) = self.source.snapshot().await?;
                let from = sweep::range_start(&self.state, st.started_at).await?;
                let lookback = chrono::Duration::from_std(self.opts.lookback).unwrap_or_default();
                let pass = store::SweepPass {
                    snapshot,
                    at: Key::before(from),
                    // Above that, the re-read finds what commits late.
                    through: st.cursor.clone().min(Key::through(platform_now - lookback)),
                };
                if !store::sweep_begin(&self.state.db, &self.holder, &pass).await? {
                    return Ok(false);
                }
                tracing::debug!(from = %from, "sweep of the platform's usage started");
                pass
            }
        };
        let scan = if pass.at < pass.through {
            self.source
                .committed_since(&pass.at, &pass.through, &since, self.opts.scan)
                .await?
        } else {
            Scan::nothing(&pass.through)
        };
        let (events, mut step) = self.map(&scan.rows).await?;
        step.not_billed = 0;
        step.taken = self.ingest_missing(events).await?;
        if step.taken > 0 {
            tracing::warn!(
                rows = step.taken,
                "platform usage rows committed long after their usage_date were found by the sweep"
            );
        }
        Ok(store::swept(
            &self.state.db,
            &self.holder,
            &pass,
            &scan.reached,
            scan.scanned,
            scan.done,
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
