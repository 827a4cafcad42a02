//! Mutual exclusion per named object (a tenant's checkout, a Stripe object's mirror) across tasks and,
//! on PostgreSQL, across replicas: an in-process lock, then a transaction-scoped advisory lock.

use super::Db;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// The in-process locks, by name. Entries are dropped when nobody holds or waits for them.
#[derive(Default, Debug)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Held until dropped: the in-process lock and, on PostgreSQL, the transaction that holds the
/// advisory lock (rolled back, so released, on drop).
pub struct Held {
    _pg: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    _local: OwnedMutexGuard<()>,
    name: String,
    locks: Arc<Locks>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().expect("locks");
        // Only the map and this guard know the entry: nobody waits for it.
        if map
            .get(&self.name)
            .is_some_and(|m| Arc::strong_count(m) <= 2)
        {
            map.remove(&self.name);
        }
    }
}

/// Held until dropped: the in-process lock only.
pub struct HeldLocal {
    _local: OwnedMutexGuard<()>,
    name: String,
    locks: Arc<Locks>,
}

impl Drop for HeldLocal {
    fn drop(&mut self) {
        release(&self.locks, &self.name);
    }
}

fn release(locks: &Locks, name: &str) {
    let mut map = locks.0.lock().expect("locks");
    // Only the map and the dropping guard know the entry: nobody waits for it.
    if map.get(name).is_some_and(|m| Arc::strong_count(m) <= 2) {
        map.remove(name);
    }
}

/// Takes the lock `name` within this process only (where replicas are ordered by other means).
pub async fn lock_local(locks: &Arc<Locks>, name: &str) -> HeldLocal {
    let mutex = locks
        .0
        .lock()
        .expect("locks")
        .entry(name.to_owned())
        .or_default()
        .clone();
    HeldLocal {
        _local: mutex.lock_owned().await,
        name: name.to_owned(),
        locks: locks.clone(),
    }
}

/// Takes the lock `name`, waiting for any holder in this process or (PostgreSQL) any replica.
pub async fn lock(db: &Db, locks: &Arc<Locks>, name: &str) -> Result<Held, sqlx::Error> {
    let mutex = locks
        .0
        .lock()
        .expect("locks")
        .entry(name.to_owned())
        .or_default()
        .clone();
    let local = mutex.lock_owned().await;
    let pg = match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            Some(tx)
        }
        Db::Sqlite(_) => None,
    };
    Ok(Held {
        _pg: pg,
        _local: local,
        name: name.to_owned(),
        locks: locks.clone(),
    })
}
