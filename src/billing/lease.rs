//! Who runs a period: a lease in the database, so that with several replicas on one PostgreSQL exactly one
//! runs a given period at a time (and a crashed holder's lease simply expires).

use crate::db::Db;
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::with_pool;
use chrono::{DateTime, Duration, Utc};

/// Takes the period's lease for `holder` if it is free, expired or already `holder`'s.
/// `ttl_secs` is how long the lease lasts without renewal; the holder renews it at a third of that.
pub async fn acquire(
    db: &Db,
    period: BillingPeriod,
    holder: &str,
    ttl_secs: i64,
) -> Result<bool, sqlx::Error> {
    let at = now();
    let until = at + Duration::seconds(ttl_secs);
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO billing_period_leases (period, holder, lease_until) VALUES ($1, $2, $3)
             ON CONFLICT (period) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
             WHERE billing_period_leases.lease_until < $4 OR billing_period_leases.holder = excluded.holder",
        )
        .bind(period.to_string())
        .bind(holder)
        .bind(until)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

/// Extends the lease; false if another holder took it (ours expired).
pub async fn renew(
    db: &Db,
    period: BillingPeriod,
    holder: &str,
    ttl_secs: i64,
) -> Result<bool, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE billing_period_leases SET lease_until = $3 WHERE period = $1 AND holder = $2")
            .bind(period.to_string())
            .bind(holder)
            .bind(now() + Duration::seconds(ttl_secs))
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1)
    })
}

/// Gives the lease up; `completed` marks the period done (every tenant billed or skipped).
pub async fn release(
    db: &Db,
    period: BillingPeriod,
    holder: &str,
    completed: bool,
) -> Result<(), sqlx::Error> {
    let at = now();
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE billing_period_leases SET lease_until = $3,
                completed_at = CASE WHEN $4 THEN $3 ELSE completed_at END
             WHERE period = $1 AND holder = $2",
        )
        .bind(period.to_string())
        .bind(holder)
        .bind(at)
        .bind(completed)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// When the period's run last completed, if ever.
pub async fn completed_at(
    db: &Db,
    period: BillingPeriod,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT completed_at FROM billing_period_leases WHERE period = $1",
        )
        .bind(period.to_string())
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
    })
}

/// What a runner knows of its lease: until when it surely still holds it, by its own monotonic clock.
/// Checked before every Stripe write, so a runner whose renewal failed, or that stalled past its lease
/// while another runner may have taken the period over, stops writing instead of racing the new holder.
#[derive(Clone, Debug)]
pub struct LeaseGuard(Option<std::sync::Arc<std::sync::Mutex<std::time::Instant>>>);

impl LeaseGuard {
    /// No lease (a dry run writes nothing).
    pub fn unleased() -> LeaseGuard {
        LeaseGuard(None)
    }

    /// Just acquired for `ttl_secs`.
    pub fn held(ttl_secs: i64) -> LeaseGuard {
        LeaseGuard(Some(std::sync::Arc::new(std::sync::Mutex::new(
            Self::deadline(ttl_secs),
        ))))
    }

    /// A quarter of the lease is kept as margin for clock skew between replicas.
    fn deadline(ttl_secs: i64) -> std::time::Instant {
        let ms = (ttl_secs.max(1) as u64) * 1000;
        std::time::Instant::now() + std::time::Duration::from_millis(ms - ms / 4)
    }

    pub fn renewed(&self, ttl_secs: i64) {
        if let Some(m) = &self.0 {
            *m.lock().expect("lease guard") = Self::deadline(ttl_secs);
        }
    }

    pub fn lost(&self) {
        if let Some(m) = &self.0 {
            *m.lock().expect("lease guard") = std::time::Instant::now();
        }
    }

    /// Whether writes may go on.
    pub fn holds(&self) -> bool {
        match &self.0 {
            None => true,
            Some(m) => std::time::Instant::now() < *m.lock().expect("lease guard"),
        }
    }
}
