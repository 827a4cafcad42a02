//! The command line: `serve`, `migrate`, `tenants`, `token`, `bill`, `usage import`, `report`, `stripe-sim`,
//! `stripe setup`, `stripe sync`.

use crate::auth::jwt::{self, Claims, Role};
use crate::config::{Secret, Settings};
use crate::db::{self, tenants, Db};
use crate::domain::{time, BillingPeriod, Subdomain, TenantId};
use crate::startup::{shutdown_signal, Application};
use crate::telemetry;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "thanotopolis-billing",
    version,
    about = "Billing for the Thanotopolis platform: Stripe subscriptions, usage metering, the monthly invoice run.",
    long_about = "Billing for the Thanotopolis platform: a $299/month subscription through Stripe Checkout, \
voice usage and phone calls metered as they happen and billed on the 1st of each month as one Stripe invoice per \
organization.\n\nConfiguration comes from the environment and from .env in the working directory; see .env.example."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database, then serve the HTTP API and the billing pages, and run the monthly billing
    /// scheduler.
    Serve {
        /// The one-command demo: start a Stripe simulator in-process, set it up, seed demo organizations.
        /// Needs no keys and no JWT_SECRET.
        #[arg(long)]
        stripe_sim: bool,
    },
    /// Run the monthly billing for one period: invoice each tenant's unbilled usage (safe to repeat).
    Bill {
        /// The period to bill, YYYY-MM (a month that has ended, in BILLING_TIMEZONE).
        #[arg(long)]
        period: String,
        /// Show what would be billed; write nothing to Stripe.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the Stripe simulator on its own.
    StripeSim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:12111")]
        bind: std::net::SocketAddr,
        /// Also deliver every event here (signed with --webhook-secret).
        #[arg(long)]
        webhook_url: Option<String>,
        #[arg(long, default_value = stripe_sim::DEFAULT_WEBHOOK_SECRET)]
        webhook_secret: String,
    },
    /// Stripe account tasks.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Add or list tenants (organizations).
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Mint a JWT signed with JWT_SECRET, for operators and tests.
    Token {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// member, user, org_admin, admin, super_admin or service.
        #[arg(long)]
        role: String,
        /// How long the token is valid: e.g. 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The user id (`sub` claim).
        #[arg(long, default_value = "operator")]
        sub: String,
        /// An optional email claim.
        #[arg(long)]
        email: Option<String>,
    },
    /// Usage metering: import usage events from a file.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// The platform's own database: follow its organizations and usage, show how far, move a deployment over.
    Platform {
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Monthly reports: usage or revenue by organization.
    Report {
        #[command(subcommand)]
        report: ReportKind,
        /// The month, YYYY-MM, in BILLING_TIMEZONE (default: the current month).
        #[arg(long, global = true)]
        month: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Import usage events from a CSV or JSON-lines file; safe to repeat (event ids are deduplicated).
    ///
    /// CSV: a header naming event_id, tenant_id, type, quantity and optionally occurred_at and metadata
    /// (a JSON object, quoted). JSON lines: one object per line with the API's event fields. The format
    /// follows the extension (.csv, .jsonl, .ndjson, .json) or else the first line. Events are stored in
    /// batches of 1,000; invalid lines are listed with their line numbers and make the exit status 1,
    /// without stopping the valid ones.
    Import {
        /// The file to import.
        file: std::path::PathBuf,
        /// Never draw the progress bar.
        #[arg(long)]
        no_progress: bool,
    },
}

#[derive(Subcommand)]
enum PlatformCommand {
    /// Follow PLATFORM_DATABASE_URL until stopped (what `serve` does when it is set): register its
    /// organizations, follow their names and demo status, ingest every row of usage_records once.
    Follow,
    /// How far the follower is: its lag, the rows ingested, the rows held back and why.
    Status,
    /// Move a deployment over: register the platform's organizations, link their Stripe customers, run
    /// `stripe sync` for them and take usage from the cut-over date. Dry unless --apply; safe to repeat.
    Import {
        /// The platform's PostgreSQL (read-only is enough).
        #[arg(long = "from")]
        from: String,
        /// Do it (without: print what it would do and every conflict; nothing changes).
        #[arg(long)]
        apply: bool,
        /// Usage from this day on (YYYY-MM-DD, in BILLING_TIMEZONE; default: the first day of the current
        /// period). Earlier months are taken as billed by the platform.
        #[arg(long)]
        usage_since: Option<String>,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum ReportKind {
    /// STT words, TTS words and phone calls per organization, from the daily rollups.
    Usage,
    /// Paid invoices and revenue per organization, by the date they were paid.
    Revenue,
}

#[derive(Subcommand)]
enum StripeCommand {
    /// Create or find the product, the $299/month price, the webhook endpoint and the customer-portal
    /// configuration (idempotent), and print the .env lines to add.
    Setup,
    /// Self-test before going live, with a test-mode key: check the product, price, portal and webhook
    /// endpoint, then bill a throw-away customer through the same calls the monthly run makes (its card
    /// placed where Checkout puts it), confirm the invoice is paid, open a checkout and a portal
    /// session, and clean up. Prints a checklist; refuses an sk_live_ key.
    Check,
    /// Rebuild our copy of customers, subscriptions and invoices from Stripe, matching customers by
    /// metadata.tenant_id: for a tenant whose webhooks were lost, or an account made in Stripe before
    /// this service. Only reads from Stripe (nothing is billed); safe to repeat and to run while the
    /// service is up.
    Sync {
        /// Sync only this tenant (default: every tenant, demo ones included).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Add a tenant.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        subdomain: String,
    },
    /// List tenants.
    List,
}

/// Parses the command line and runs it; errors print as one sentence and exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match cli.command {
        Command::Serve { stripe_sim } => serve(settings, stripe_sim).await,
        Command::Bill {
            period,
            dry_run,
            json,
        } => bill(settings, &period, dry_run, json).await,
        Command::StripeSim {
            bind,
            webhook_url,
            webhook_secret,
        } => {
            telemetry::init();
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
            println!("Stripe simulator on http://{bind} (any sk_test_ key works)");
            let config = stripe_sim::SimConfig {
                webhook_url,
                webhook_secret,
                ..Default::default()
            };
            stripe_sim::serve(listener, config, shutdown_signal()).await?;
            Ok(())
        }
        Command::Stripe {
            command: StripeCommand::Setup,
        } => stripe_setup(settings).await,
        Command::Stripe {
            command: StripeCommand::Check,
        } => stripe_check(settings).await,
        Command::Stripe {
            command: StripeCommand::Sync { tenant },
        } => stripe_sync(settings, tenant.as_deref()).await,
        Command::Migrate => {
            eprintln!("Database: {}", database_label(&settings.database.url));
            let db = Db::connect(&settings.database.url).await?;
            let applied = db::migrate(&db).await?;
            println!("migrations applied: {applied}");
            Ok(())
        }
        Command::Tenants { command } => tenants_command(settings, command).await,
        Command::Usage {
            command: UsageCommand::Import { file, no_progress },
        } => import_command(settings, &file, !no_progress).await,
        Command::Report {
            report,
            month,
            json,
        } => report_command(settings, report, month, json).await,
        Command::Platform { command } => platform_command(settings, command).await,
        Command::Token {
            tenant,
            role,
            ttl,
            sub,
            email,
        } => {
            let secret = settings.require_jwt_secret()?;
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "--role must be one of member, user, org_admin, admin, super_admin, service; got {role:?}"
                )
            })?;
            TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let ttl = parse_duration(&ttl)?;
            let claims = Claims {
                sub,
                tenant_id: tenant,
                role: role.as_str().to_owned(),
                exp: chrono::Utc::now().timestamp() + ttl,
                email,
            };
            let expected = &settings.auth.jwt_expected;
            println!(
                "{}",
                jwt::sign_for(&claims, secret.expose().as_bytes(), expected)
            );
            Ok(())
        }
    }
}

async fn serve(mut settings: Settings, stripe_sim: bool) -> anyhow::Result<()> {
    telemetry::init();
    // Checkout must be able to offer every payment method configured, with the plan's price.
    settings.check_payment_methods()?;
    let sim = if stripe_sim {
        if std::env::var_os("DATABASE_URL").is_none() {
            // The simulator forgets everything on exit, so the demo starts from a fresh database too.
            settings.database.url = "sqlite://data/demo.db".into();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("data/demo.db{suffix}"));
            }
        }
        settings.auth.dev_sign_in = true;
        Some(crate::ops::simulator::start_simulator(&mut settings).await?)
    } else {
        None
    };
    let jwt_secret: Secret = settings.require_jwt_secret()?.clone();
    let app = Application::build(settings.clone(), jwt_secret.clone()).await?;
    if app.state().stripe.is_configured() {
        // An endpoint registered before an upgrade may lack events this version acts on.
        let (stripe, public) = (
            app.state().stripe.clone(),
            settings.http.public_base_url.clone(),
        );
        tokio::spawn(async move {
            crate::ops::stripe_setup::warn_if_events_missing(&stripe, &public).await
        });
    }
    let base = format!("http://{}", app.local_addr());
    tracing::info!(
        address = %app.local_addr(),
        database = database_kind(&settings.database.url),
        stripe = %settings.stripe.api_base,
        "thanotopolis-billing listening"
    );
    if let Some(sim) = &sim {
        let (base, sim_url) = (base.clone(), sim.base_url.clone());
        let signer = crate::ops::simulator::Signer {
            secret: jwt_secret.clone(),
            expected: settings.auth.jwt_expected.clone(),
        };
        let database_url = database_label(&settings.database.url);
        tokio::spawn(async move {
            match crate::ops::simulator::seed(&base, &sim_url, &signer).await {
                Ok(()) => println!(
                    "{}",
                    crate::ops::simulator::banner(&base, &sim_url, &signer, &database_url)
                ),
                Err(e) => tracing::error!(error = %e, "demo seeding failed"),
            }
        });
    }
    app.with_background_tasks()
        .run_until(shutdown_signal())
        .await
}

async fn bill(settings: Settings, period: &str, dry_run: bool, json: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let period: crate::domain::BillingPeriod = period
        .parse()
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let current =
        crate::domain::BillingPeriod::containing(chrono::Utc::now(), settings.billing.timezone);
    if period >= current {
        anyhow::bail!(
            "--period: {period} has not ended yet; the latest period that can be billed is {}",
            current.prev()
        );
    }
    // Every tenant would fail on its first Stripe call: refuse before recording a run.
    if settings
        .stripe
        .secret_key
        .as_ref()
        .is_none_or(|k| k.is_empty())
    {
        anyhow::bail!(
            "Stripe is not configured: set STRIPE_SECRET_KEY (and STRIPE_API_BASE for the simulator) before billing; nothing was run"
        );
    }
    eprintln!("Database: {}", database_label(&settings.database.url));
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    let state = crate::state::AppState::new(db, std::sync::Arc::new(settings), Secret::new(""));
    let mut opts = crate::billing::RunOptions::new(&state, dry_run);
    if std::io::stderr().is_terminal() {
        let started = std::time::Instant::now();
        opts.progress = Some(std::sync::Arc::new(move |done, total| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r{period}: {done}/{total} tenants ({:.0}/s)   ",
                done as f64 / secs
            );
            if done == total {
                eprintln!();
            }
        }));
    }
    let run_id = crate::billing::run_log::new_run_id();
    let report = crate::billing::run_log::execute(&state, &run_id, period, opts, "cli").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    state.db.close().await;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} tenant(s) failed; run the same command again to finish them",
            report.failed.len()
        );
    }
    Ok(())
}

async fn stripe_setup(settings: Settings) -> anyhow::Result<()> {
    if settings.stripe.secret_key.is_none() {
        anyhow::bail!("STRIPE_SECRET_KEY is not set: use your test-mode secret key (sk_test_...) or point STRIPE_API_BASE at the simulator");
    }
    // The simulator on this machine can deliver to a loopback address; Stripe cannot.
    if settings.stripe.api_base == "https://api.stripe.com" {
        crate::ops::stripe_setup::check_public_url(&settings.http.public_base_url)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let client = crate::stripe::StripeClient::new(
        &settings.stripe.api_base,
        settings.stripe.secret_key.clone(),
        crate::stripe::ClientOptions::from_settings(&settings.stripe),
    );
    let result = crate::ops::stripe_setup::run(
        &client,
        &settings.http.public_base_url,
        &settings.stripe.payment_methods,
    )
    .await?;
    for line in &result.log {
        println!("{line}");
    }
    println!("\nAdd these lines to .env:\n\n{}", result.env_lines());
    Ok(())
}

async fn stripe_check(settings: Settings) -> anyhow::Result<()> {
    let Some(key) = settings.stripe.secret_key.as_ref() else {
        anyhow::bail!("STRIPE_SECRET_KEY is not set: use your test-mode secret key (sk_test_...)");
    };
    crate::ops::stripe_check::refuse_live_key(key.expose()).map_err(|e| anyhow::anyhow!(e))?;
    if settings.stripe.api_base == "https://api.stripe.com" {
        crate::ops::stripe_setup::check_public_url(&settings.http.public_base_url)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    println!(
        "Checking Stripe at {} with the same calls the monthly run makes",
        settings.stripe.api_base
    );
    // The check writes nothing to our database: an in-memory one satisfies the shared state.
    let db = Db::connect("sqlite::memory:").await?;
    let state = crate::state::AppState::new(db, std::sync::Arc::new(settings), Secret::new(""));
    let report = crate::ops::stripe_check::run(&state).await;
    print!("\n{}", report.render());
    if !report.passed() {
        anyhow::bail!("stripe check failed: fix what the FAIL lines say, then run it again");
    }
    Ok(())
}

async fn stripe_sync(settings: Settings, tenant: Option<&str>) -> anyhow::Result<()> {
    let tenant = tenant
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let database = database_label(&settings.database.url);
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    println!(
        "Syncing {} from Stripe ({}) into {database}",
        tenant
            .as_ref()
            .map_or_else(|| "every tenant".to_owned(), |t| format!("tenant {t}")),
        settings.stripe.api_base
    );
    let state = crate::state::AppState::new(db, std::sync::Arc::new(settings), Secret::new(""));
    let report = crate::ops::stripe_sync::run(&state, tenant.as_ref()).await;
    state.db.close().await;
    let report = report?;
    print!("\n{}", report.to_table());
    let failed = report.failed().count();
    if failed > 0 {
        anyhow::bail!("{failed} tenant(s) failed; run the same command again to finish them");
    }
    Ok(())
}

async fn tenants_command(settings: Settings, command: TenantsCommand) -> anyhow::Result<()> {
    eprintln!("Database: {}", database_label(&settings.database.url));
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    match command {
        TenantsCommand::Add {
            id,
            name,
            subdomain,
        } => {
            let id = TenantId::parse(&id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
            let subdomain =
                Subdomain::parse(&subdomain).map_err(|e| anyhow::anyhow!("--subdomain: {e}"))?;
            let tenant = tenants::add(&db, &id, name.trim(), subdomain.as_str()).await?;
            db::audit::record(&db, "cli", "tenant.add", Some(id.as_str()), &tenant.name).await?;
            println!(
                "added tenant {} ({}, {})",
                tenant.id, tenant.name, tenant.subdomain
            );
        }
        TenantsCommand::List => {
            let all = tenants::list(&db).await?;
            println!(
                "{:<38} {:<24} {:<24} {:<5}",
                "ID", "NAME", "SUBDOMAIN", "DEMO"
            );
            for t in &all {
                println!(
                    "{:<38} {:<24} {:<24} {:<5}",
                    t.id,
                    t.name,
                    t.subdomain,
                    if t.is_demo { "yes" } else { "no" }
                );
            }
            println!("{} tenant(s)", all.len());
        }
    }
    db.close().await;
    Ok(())
}

async fn import_command(
    settings: Settings,
    file: &std::path::Path,
    progress: bool,
) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    let summary =
        crate::usage::import::import_file(&db, file, settings.billing.timezone, progress).await;
    db.close().await;
    let summary = summary?;
    println!(
        "{} line(s): {} accepted, {} duplicate(s), {} rejected",
        summary.lines,
        summary.accepted,
        summary.duplicates,
        summary.rejected.len()
    );
    for (line, why) in &summary.rejected {
        eprintln!("line {line}: {why}");
    }
    if summary.rejected.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} line(s) were rejected (listed above); the other lines were imported",
            summary.rejected.len()
        )
    }
}

async fn report_command(
    settings: Settings,
    report: ReportKind,
    month: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::usage::monthly_reports as r;
    let tz = settings.billing.timezone;
    let month: BillingPeriod = match month {
        Some(m) => m.parse().map_err(|e| anyhow::anyhow!("--month: {e}"))?,
        None => BillingPeriod::containing(time::now(), tz),
    };
    eprintln!("Database: {}", database_label(&settings.database.url));
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    let out = match report {
        ReportKind::Usage => {
            let rows = r::usage_by_organization(&db, month).await;
            rows.map(|rows| {
                if json {
                    serde_json::json!({"month": month, "organizations": rows}).to_string()
                } else {
                    r::usage_table(month, &rows)
                }
            })
        }
        ReportKind::Revenue => {
            let rows = r::revenue_by_organization(&db, month, tz).await;
            rows.map(|rows| {
                if json {
                    serde_json::json!({"month": month, "organizations": rows}).to_string()
                } else {
                    r::revenue_table(month, &rows)
                }
            })
        }
    };
    db.close().await;
    println!("{}", out?.trim_end());
    Ok(())
}

async fn platform_command(settings: Settings, command: PlatformCommand) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database.url).await?;
    db::migrate(&db).await?;
    let lookback = settings.platform.lookback;
    let tz = settings.billing.timezone;
    let url = settings.platform.database_url.clone();
    let state = crate::state::AppState::new(db, std::sync::Arc::new(settings), Secret::new(""));
    let result = match command {
        PlatformCommand::Status => {
            let status = crate::platform::status::Status::read(&state.db).await?;
            print!("{}", status.render());
            Ok(())
        }
        PlatformCommand::Follow => {
            telemetry::init();
            let url = url.ok_or_else(|| {
                anyhow::anyhow!(
                    "PLATFORM_DATABASE_URL is not set: set it to the platform's PostgreSQL"
                )
            })?;
            let source = crate::platform::Source::connect_lazy(url.expose())?;
            let (trigger, stop) = crate::shutdown::channel();
            let follow = tokio::spawn(crate::platform::follow::run(
                state.clone(),
                source,
                crate::platform::Options::new(lookback),
                stop,
            ));
            shutdown_signal().await;
            trigger.fire();
            follow.await?;
            Ok(())
        }
        PlatformCommand::Import {
            from,
            apply,
            usage_since,
        } => {
            let since = match usage_since {
                Some(day) => {
                    let day =
                        chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| {
                            anyhow::anyhow!("--usage-since must be a day, YYYY-MM-DD; got {day:?}")
                        })?;
                    crate::domain::local_midnight(day, tz)
                }
                None => BillingPeriod::containing(time::now(), tz).bounds(tz).0,
            };
            let source = crate::platform::Source::connect_lazy(&from)?;
            let report =
                crate::platform::import::run(&state, &source, apply, since, lookback).await;
            source.close().await;
            let report = report?;
            print!("{}", report.render());
            Ok(())
        }
    };
    state.db.close().await;
    result
}

fn database_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// The database URL without its password, to say which database a command opened.
fn database_label(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => format!("{}@{host}", user.split(':').next().unwrap_or_default()),
        None => authority.to_owned(),
    };
    // A password may also travel as a query parameter.
    let path = if path.contains("password") {
        path.split('?').next().unwrap_or_default()
    } else {
        path
    };
    format!("{scheme}://{authority}{path}")
}

/// `90s`, `30m`, `1h`, `7d`, or plain seconds.
fn parse_duration(raw: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--ttl must look like 90s, 30m, 1h or 7d; got {raw:?}");
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("7d").unwrap(), 604800);
        assert_eq!(parse_duration("120").unwrap(), 120);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn stripe_sync_parses_with_and_without_a_tenant() {
        let cli =
            Cli::try_parse_from(["thanotopolis-billing", "stripe", "sync", "--tenant", "acme"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Stripe { command: StripeCommand::Sync { tenant: Some(t) } } if t == "acme"
        ));
        let cli = Cli::try_parse_from(["thanotopolis-billing", "stripe", "sync"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Stripe {
                command: StripeCommand::Sync { tenant: None }
            }
        ));
    }

    #[test]
    fn database_labels_hide_passwords() {
        assert_eq!(
            database_label("postgres://billing:s3cret@db.internal:5432/billing"),
            "postgres://billing@db.internal:5432/billing"
        );
        assert_eq!(
            database_label("postgres://db/billing?user=b&password=s3cret"),
            "postgres://db/billing"
        );
        assert_eq!(
            database_label("sqlite://data/billing.db"),
            "sqlite://data/billing.db"
        );
        assert_eq!(database_label("sqlite::memory:"), "sqlite::memory:");
    }
}
