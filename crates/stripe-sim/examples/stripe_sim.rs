//! Runs the simulator alone: `cargo run -p stripe-sim --example stripe_sim -- --port 12111`.
//! Prints the base URL on the first line of stdout, then serves until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use stripe_sim::{serve, SimConfig};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(12111);
    let host = arg("--host").unwrap_or_else(|| "127.0.0.1".into());
    let mut config = SimConfig {
        webhook_url: arg("--webhook-url"),
        ..SimConfig::default()
    };
    if let Some(secret) = arg("--webhook-secret") {
        config.webhook_secret = secret;
    }
    if let Some(ms) = arg("--retry-base-ms").and_then(|v| v.parse().ok()) {
        config.webhook_retry_base = Duration::from_millis(ms);
    }
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("http://{}", listener.local_addr()?);
    serve(listener, config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
