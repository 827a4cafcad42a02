//! Work that must finish once started, whatever becomes of the request that started it.
//!
//! A request's future is dropped when its client hangs up or the router's timeout answers for it, and
//! with it whatever it was awaiting: a run half way through its tenants, a Stripe write whose answer was
//! not stored yet. Such work runs here instead, in a task of its own that the request only waits for;
//! dropping the request drops the waiting, not the work. The application counts these tasks, and `serve`
//! waits for them when it shuts down (after asking them to stop at their next safe point, see
//! [`Detached::stopping`]), within a bound.

use crate::shutdown::{Shutdown, Trigger};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The application's detached tasks.
#[derive(Clone)]
pub struct Detached(Arc<Inner>);

struct Inner {
    running: AtomicUsize,
    idle: Notify,
    stop: Trigger,
    stopping: Shutdown,
}

impl Default for Detached {
    fn default() -> Detached {
        let (stop, stopping) = crate::shutdown::channel();
        Detached(Arc::new(Inner {
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            stop,
            stopping,
        }))
    }
}

/// Counts a task as running until dropped (when the task ends, however it ends).
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Detached {
    /// Starts `work` in a task of its own; the handle may be awaited, or dropped without stopping it.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.0.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Runs `work` in a task of its own and returns what it returns: if the caller is dropped meanwhile
    /// (a client that hangs up, a request timeout), the work still runs to its end.
    pub async fn finish<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.spawn(work).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels it, and then its caller goes too.
            Err(e) => panic!("detached work cancelled: {e}"),
        }
    }

    /// How many tasks are running.
    pub fn running(&self) -> usize {
        self.0.running.load(Ordering::Acquire)
    }

    /// The signal that the service is stopping: long work (a billing run) watches it and stops starting
    /// new steps, finishing those under way.
    pub fn stopping(&self) -> Shutdown {
        self.0.stopping.clone()
    }

    /// Asks the tasks to stop at their next safe point, then waits until none runs.
    pub async fn stop_and_wait(&self) {
        self.0.stop.fire();
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a last task ending in between still wakes it.
            idle.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn work_goes_on_when_its_caller_is_dropped() {
        let detached = Detached::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let caller = {
            let detached = detached.clone();
            tokio::spawn(async move {
                detached
                    .finish(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = tx.send("finished");
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(rx.await.unwrap(), "finished");
    }

    #[tokio::test]
    async fn stop_and_wait_returns_once_every_task_has_ended() {
        let detached = Detached::default();
        let mut stopping = detached.stopping();
        let ended = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let (mut stopping, ended) = (stopping.clone(), ended.clone());
            detached.spawn(async move {
                stopping.requested().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(detached.running(), 3);
        assert!(!stopping.is_requested());
        detached.stop_and_wait().await;
        assert!(stopping.sleep(Duration::ZERO).await);
        assert_eq!(ended.load(Ordering::SeqCst), 3);
        assert_eq!(detached.running(), 0);
    }
}
