//! Shutdown by design: the background tasks of `serve` (the billing scheduler, rollup compaction) are
//! started by the application with a [`Shutdown`] they wait on, and the application waits for them to
//! finish their current step once the server has stopped taking requests.

use tokio::sync::watch;

/// The signal a background task watches: asleep or between steps, it returns once shutdown is asked.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Asks every [`Shutdown`] made from it to stop.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A trigger and the signal it sends.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A signal that never fires (a task run on its own, e.g. in a test).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Kept alive for ever: the receiver then waits without end.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is asked (or the trigger is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d`, or less if shutdown is asked; returns whether it was.
    pub async fn sleep(&mut self, d: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_requested(),
            _ = self.requested() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_when_shutdown_is_asked() {
        let (trigger, mut s) = channel();
        let waiter = tokio::spawn(async move { s.sleep(Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.fire();
        assert!(waiter.await.unwrap(), "woke for the shutdown, not the hour");
        let mut never = Shutdown::never();
        assert!(!never.sleep(Duration::from_secs(5)).await);
    }
}
