//! Embedded migrations, one folder per engine, applied in order and recorded in `schema_migrations`.
//! Safe with several replicas starting at once: PostgreSQL takes an advisory lock, SQLite a write lock.

use super::Db;

struct Migration {
    version: i64,
    name: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            postgres: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
            sqlite: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_initial"),
    migration!(2, "0002_rollup_shards"),
    migration!(3, "0003_rollups_per_day"),
    migration!(4, "0004_ingest_checked"),
    migration!(5, "0005_stripe_as_it_is"),
];

/// An arbitrary constant that names this service's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x7468_616e_6f74_6f70;

const RECORD: &str =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

fn applied_at() -> String {
    crate::domain::time::rfc3339(crate::domain::time::now())
}

/// Applies every migration not yet applied; returns how many ran.
pub async fn migrate(db: &Db) -> anyhow::Result<usize> {
    migrate_through(db, i64::MAX).await
}

/// Applies the migrations not yet applied up to and including `last` (a version); returns how many
/// ran. Tests use it to build a database as an earlier release left it.
pub async fn migrate_through(db: &Db, last: i64) -> anyhow::Result<usize> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
        version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
    let mut applied = 0;
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
            let result = async {
                sqlx::query(CREATE).execute(&mut *conn).await?;
                for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
                    let done: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM schema_migrations WHERE version = $1",
                    )
                    .bind(m.version)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if done.is_some() {
                        continue;
                    }
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    sqlx::raw_sql(m.postgres)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| anyhow::anyhow!("migration {} failed: {e}", m.name))?;
                    sqlx::query(RECORD)
                        .bind(m.version)
                        .bind(m.name)
                        .bind(applied_at())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    applied += 1;
                }
                anyhow::Ok(())
            }
            .await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
            result?;
        }
        Db::Sqlite(pool) => {
            sqlx::query(CREATE).execute(pool).await?;
            for m in MIGRATIONS.iter().filter(|m| m.version <= last) {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(m.version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_some() {
                    continue;
                }
                sqlx::raw_sql(m.sqlite)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| anyhow::anyhow!("migration {} failed: {e}", m.name))?;
                sqlx::query(RECORD)
                    .bind(m.version)
                    .bind(m.name)
                    .bind(applied_at())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                applied += 1;
            }
        }
    }
    Ok(applied)
}
