//! Group commit for small requests: concurrent small batches (a single event each, typically) are
//! stored together in one transaction, and each request is answered once that transaction commits.
//!
//! There is no timer: a worker takes whatever requests are waiting when it becomes free, so an idle
//! service answers a lone request at once, and a busy one spends one commit on many requests instead of
//! one each. Each request keeps its own all-or-nothing: if the combined transaction fails (an unknown
//! tenant in one request, say), every request is retried alone and gets its own answer.

use super::ingest::{ingest, ingest_returning_new, IngestOutcome, Inserted};
use super::NewEvent;
use crate::db::{Backend, Db};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// On PostgreSQL, requests with at most this many events go through the batcher; larger ones are a
/// batch already and run in their own transaction, in parallel.
pub const SMALL_REQUEST: usize = 50;
/// Events in one combined transaction, at most.
const MAX_COMBINED: usize = 1000;
/// PostgreSQL transactions in flight at once: two overlap one commit's flush with the next batch's
/// work; more would only split the waiting requests into more, smaller transactions, each with its
/// own round trips and commit (at 2,000 single events/s, four workers doubled the p99). SQLite has one writer at a time, so one worker, through which every request goes:
/// writers then never wait on each other's locks (SQLite's busy wait sleeps, which shows in latency).
const PG_WORKERS: usize = 2;

struct Job {
    events: Vec<NewEvent>,
    received_at: DateTime<Utc>,
    reply: oneshot::Sender<Result<IngestOutcome, sqlx::Error>>,
}

type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>;

pub struct Batcher {
    db: Db,
    tz: Tz,
    sender: mpsc::UnboundedSender<Job>,
    /// Taken by the first request, which starts the workers (they need a runtime; construction may not
    /// have one). When the batcher is dropped, the channel closes and the workers end.
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    started: OnceLock<()>,
    /// The workers, stopped by [`Batcher::shutdown`].
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Batcher {
    pub fn new(db: Db, tz: Tz) -> Batcher {
        let (sender, receiver) = mpsc::unbounded_channel();
        Batcher {
            db,
            tz,
            sender,
            receiver: Mutex::new(Some(receiver)),
            started: OnceLock::new(),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// Stores `events` (validated, all-or-nothing) and answers after the commit.
    pub async fn ingest(
        &self,
        events: &[NewEvent],
        received_at: DateTime<Utc>,
    ) -> Result<IngestOutcome, sqlx::Error> {
        if events.len() > SMALL_REQUEST && self.db.backend() == Backend::Postgres {
            return ingest(&self.db, events, received_at, self.tz).await;
        }
        self.started.get_or_init(|| self.start());
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events: events.to_vec(),
            received_at,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = self.sender.send(job) {
            return ingest(&self.db, &job.events, job.received_at, self.tz).await;
        }
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    fn start(&self) {
        let receiver = self
            .receiver
            .lock()
            .expect("batcher lock")
            .take()
            .expect("started once");
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(receiver));
        let workers = match self.db.backend() {
            Backend::Postgres => PG_WORKERS,
            Backend::Sqlite => 1,
        };
        let mut handles = self.workers.lock().expect("batcher workers");
        for _ in 0..workers {
            handles.push(tokio::spawn(work(queue.clone(), self.db.clone(), self.tz)));
        }
    }

    /// Stops the workers. Called once the server has finished every request, so no job is queued:
    /// each request waits for its answer before it completes.
    pub fn shutdown(&self) {
        for h in self.workers.lock().expect("batcher workers").drain(..) {
            h.abort();
        }
    }
}

async fn work(queue: Queue, db: Db, tz: Tz) {
    loop {
        let jobs = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut n = first.events.len();
            let mut jobs = vec![first];
            while n < MAX_COMBINED {
                match rx.try_recv() {
                    Ok(job) => {
                        n += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        run(&db, tz, jobs).await;
    }
}

async fn run(db: &Db, tz: Tz, jobs: Vec<Job>) {
    if jobs.len() > 1 {
        let combined: Vec<NewEvent> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
        let received_at = jobs.iter().map(|j| j.received_at).min().expect("jobs");
        if let Ok(new) = ingest_returning_new(db, &combined, received_at, tz).await {
            let outcomes = attribute(&jobs, &new);
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // The caller may have gone away; its events are stored all the same.
                let _ = job.reply.send(Ok(outcome));
            }
            return;
        }
    }
    for job in jobs {
        let outcome = ingest(db, &job.events, job.received_at, tz).await;
        let _ = job.reply.send(outcome);
    }
}

/// Splits a combined batch's new events among its requests: an id new to the database counts as
/// accepted for the first request (and event) that carried it, and as a duplicate anywhere after.
fn attribute(jobs: &[Job], new: &Inserted) -> Vec<IngestOutcome> {
    let mut seen: HashSet<&str> = HashSet::new();
    jobs.iter()
        .map(|job| {
            let accepted = job
                .events
                .iter()
                .filter(|e| seen.insert(e.event_id.as_str()) && new.contains(&e.event_id))
                .count() as u64;
            IngestOutcome {
                accepted,
                duplicates: job.events.len() as u64 - accepted,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use crate::usage::UsageType;

    fn job(ids: &[&str]) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            events: ids
                .iter()
                .map(|id| NewEvent {
                    event_id: (*id).into(),
                    tenant_id: TenantId::parse("t").unwrap(),
                    usage_type: UsageType::PhoneCalls,
                    quantity: 1,
                    occurred_at: Utc::now(),
                    metadata: None,
                })
                .collect(),
            received_at: Utc::now(),
            reply,
        }
    }

    #[test]
    fn when_all_were_new_only_repeats_across_requests_are_duplicates() {
        let jobs = vec![job(&["a", "b"]), job(&["b", "c"])];
        let out = attribute(&jobs, &Inserted::All(3));
        let accepted: Vec<u64> = out.iter().map(|o| o.accepted).collect();
        let duplicates: Vec<u64> = out.iter().map(|o| o.duplicates).collect();
        assert_eq!((accepted, duplicates), (vec![2, 1], vec![0, 1]));
    }

    #[test]
    fn the_first_carrier_of_a_new_id_gets_it() {
        let jobs = vec![job(&["a", "b"]), job(&["b", "c", "c"]), job(&["old"])];
        let new = Inserted::Only(["a", "b", "c"].iter().map(|s| s.to_string()).collect());
        let out = attribute(&jobs, &new);
        assert_eq!(
            out[0],
            IngestOutcome {
                accepted: 2,
                duplicates: 0
            }
        );
        assert_eq!(
            out[1],
            IngestOutcome {
                accepted: 1,
                duplicates: 2
            }
        );
        assert_eq!(
            out[2],
            IngestOutcome {
                accepted: 0,
                duplicates: 1
            }
        );
    }
}
