//! Embedded migrations, one folder per engine, run by sqlx's migrator and recorded (with their checksums)
//! in `_sqlx_migrations`. Safe with several replicas starting at once: on PostgreSQL all of it runs under
//! sqlx's migration advisory lock, on SQLite inside one write (`BEGIN IMMEDIATE`) transaction.
//!
//! Releases before this one ran their own runner, which recorded migrations in
//! `schema_migrations(version, name, applied_at)`. Such a database is carried over first: the versions it
//! lists are recorded in `_sqlx_migrations` with the embedded checksums, so that they are not run again.
//! `schema_migrations` stays as it was, no longer written.

use super::Db;
use sqlx::migrate::{Migrate, Migration, Migrator};
use sqlx::{PgConnection, SqliteConnection};

static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// The lock the previous runner took on PostgreSQL: held too, so that a replica of an earlier release
/// starting meanwhile does not migrate at the same time as this one.
const LEGACY_PG_LOCK: i64 = 0x7468_616e_6f74_6f70;

/// Applies every migration not yet applied; returns how many ran.
pub async fn migrate(db: &Db) -> anyhow::Result<usize> {
    run(db, None).await
}

/// Applies the migrations not yet applied up to and including `last` (a version); returns how many
/// ran. Tests use it to build a database as an earlier release left it.
pub async fn migrate_through(db: &Db, last: i64) -> anyhow::Result<usize> {
    run(db, Some(last)).await
}

/// The embedded migrations up to `last` (all of them without one), as a migrator that takes no lock:
/// the caller holds it across the carry-over and the run.
fn selected(all: &'static Migrator, last: Option<i64>) -> Migrator {
    // The fields are what `sqlx::migrate!` itself fills in; Cargo.lock pins the sqlx release.
    Migrator {
        migrations: all
            .iter()
            .filter(|m| last.is_none_or(|last| m.version <= last))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        // Migrations past `last` are expected in a database migrated further, not missing.
        ignore_missing: last.is_some(),
        locking: false,
        no_tx: all.no_tx,
    }
}

async fn run(db: &Db, last: Option<i64>) -> anyhow::Result<usize> {
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(LEGACY_PG_LOCK)
                .execute(&mut *conn)
                .await?;
            let result = async {
                conn.lock().await?;
                let result = async {
                    carry_over_postgres(&mut conn).await?;
                    apply(&mut *conn, &selected(&POSTGRES, last)).await
                }
                .await;
                conn.unlock().await?;
                result
            }
            .await;
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(LEGACY_PG_LOCK)
                .execute(&mut *conn)
                .await;
            if result.is_err() || unlocked.is_err() {
                // A session lock still held must not go back to the pool: closing ends it.
                conn.close_on_drop();
            }
            unlocked?;
            result
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            carry_over_sqlite(&mut tx).await?;
            // Each migration runs in a savepoint of this transaction (sqlx nests its `begin`).
            let ran = apply(&mut *tx, &selected(&SQLITE, last)).await?;
            tx.commit().await?;
            Ok(ran)
        }
    }
}

/// Runs `migrator` on a connection that holds the lock; returns how many migrations it applied.
async fn apply<C: Migrate>(conn: &mut C, migrator: &Migrator) -> anyhow::Result<usize> {
    conn.ensure_migrations_table().await?;
    let before = applied(conn, migrator).await?;
    // `run_direct` is `run` on a connection: `run`'s `Acquire` bound makes the future not provably
    // `Send` (the reason sqlx exposes this one).
    migrator
        .run_direct(conn)
        .await
        .map_err(|e| anyhow::anyhow!("migrating the database failed: {e}"))?;
    Ok(applied(conn, migrator).await? - before)
}

/// How many of `migrator`'s migrations the database records as applied.
async fn applied<C: Migrate>(conn: &mut C, migrator: &Migrator) -> anyhow::Result<usize> {
    let applied = conn.list_applied_migrations().await?;
    Ok(applied
        .iter()
        .filter(|a| migrator.version_exists(a.version))
        .count())
}

/// A row of the previous runner's `schema_migrations`: version, file name without `.sql`, when.
type Legacy = (i64, String, String);

/// The embedded migrations `legacy` lists and `_sqlx_migrations` (`recorded`) lacks, with when each ran.
fn to_carry<'a>(
    all: &'static Migrator,
    legacy: &'a [Legacy],
    recorded: &[i64],
) -> anyhow::Result<Vec<(&'static Migration, &'a str)>> {
    let mut carry = Vec::new();
    for (version, name, applied_at) in legacy {
        if recorded.contains(version) {
            continue;
        }
        let migration = all
            .iter()
            .find(|m| m.version == *version)
            .filter(|m| *name == format!("{:04}_{}", m.version, m.description.replace(' ', "_")))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "schema_migrations records migration {name}, which this release does not have"
                )
            })?;
        carry.push((migration, applied_at.as_str()));
    }
    Ok(carry)
}

async fn carry_over_postgres(conn: &mut PgConnection) -> anyhow::Result<()> {
    let legacy: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !legacy {
        return Ok(());
    }
    conn.ensure_migrations_table().await?;
    let legacy: Vec<Legacy> =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let carry = to_carry(&POSTGRES, &legacy, &recorded)?;
    if carry.is_empty() {
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for (m, applied_at) in &carry {
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, installed_on, success, checksum, execution_time)
             VALUES ($1, $2, CAST($3 AS TIMESTAMPTZ), TRUE, $4, 0)",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(applied_at)
        .bind(&*m.checksum)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(
        migrations = carry.len(),
        "migrations applied by the previous runner recorded in _sqlx_migrations"
    );
    Ok(())
}

async fn carry_over_sqlite(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    let legacy: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if legacy == 0 {
        return Ok(());
    }
    conn.ensure_migrations_table().await?;
    let legacy: Vec<Legacy> =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let carry = to_carry(&SQLITE, &legacy, &recorded)?;
    // The caller's write transaction makes these rows and the migrations after them one commit.
    for (m, applied_at) in &carry {
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, installed_on, success, checksum, execution_time)
             VALUES ($1, $2, $3, TRUE, $4, 0)",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(applied_at)
        .bind(&*m.checksum)
        .execute(&mut *conn)
        .await?;
    }
    if !carry.is_empty() {
        tracing::info!(
            migrations = carry.len(),
            "migrations applied by the previous runner recorded in _sqlx_migrations"
        );
    }
    Ok(())
}
