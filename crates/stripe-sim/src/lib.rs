//! A stateful Stripe API simulator that runs on loopback.
//!
//! It speaks Stripe's `/v1` wire protocol (form-encoded bodies with bracket nesting, JSON
//! responses, list pagination, `expand[]`, idempotency keys, Stripe's error envelope), keeps the
//! objects in memory, serves hosted checkout, portal and invoice pages, signs and delivers
//! webhooks the way Stripe does, and has a movable clock plus `/_sim` control routes for tests.

#![recursion_limit = "256"]

mod api;
mod billing;
mod clock;
mod enums;
mod error;
mod expand;
mod form;
mod ids;
mod listing;
mod model;
mod pages;
mod render;
mod server;
mod store;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the simulator behaves beyond what the API itself configures.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Every event is also POSTed here, signed with `webhook_secret`.
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    /// First retry delay; attempt `n` waits `webhook_retry_base * 2^(n-1)`.
    pub webhook_retry_base: Duration,
    pub webhook_max_attempts: u32,
}

pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_simulator_secret";

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            webhook_url: None,
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_string(),
            webhook_retry_base: Duration::from_secs(1),
            webhook_max_attempts: 8,
        }
    }
}

/// A simulator running in a background task.
pub struct SimHandle {
    /// `http://127.0.0.1:PORT`, the value to use as the Stripe API base.
    pub base_url: String,
    pub addr: SocketAddr,
    webhook_secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// The secret that signs deliveries to `SimConfig::webhook_url`.
    pub fn webhook_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Every `/v1` route the simulator serves, as `METHOD /path` (the name `/_sim/stats` counts it under).
pub fn route_patterns() -> Vec<&'static str> {
    api::routes().map(|r| r.pattern).collect()
}

/// The simulator as an axum router. Object URLs (checkout, portal, hosted invoices) use the
/// `Host` of the first request unless the router is run through [`serve`], which knows the
/// listener's address.
pub fn router(config: SimConfig) -> axum::Router {
    server::router(Arc::new(server::App::new(config, None)))
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let app = Arc::new(server::App::new(config, Some(format!("http://{addr}"))));
    axum::serve(listener, server::router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr` (port 0 picks a free port) and serves in a background task.
pub async fn spawn(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let webhook_secret = config.webhook_secret.clone();
    let task = tokio::spawn(serve(listener, config, async move {
        let _ = stopped.await;
    }));
    Ok(SimHandle {
        base_url: format!("http://{addr}"),
        addr,
        webhook_secret,
        stop: Some(stop),
        task,
    })
}
