//! A `kill -9` of the server during sustained ingestion loses no acknowledged event: every batch
//! answered 200 before the kill is in the database afterwards, and the rollups agree with the events.

use crate::helpers::{token, TestApp, JWT_SECRET};
use crate::store_tests;
use serde_json::json;
use std::sync::{Arc, Mutex};
use thanotopolis_billing::with_pool;

store_tests!(killing_the_server_loses_no_acknowledged_event);

async fn killing_the_server_loses_no_acknowledged_event(app: TestApp) {
    app.add_tenant("acme").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .arg("serve")
        .env("DATABASE_URL", &app.database_url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", JWT_SECRET)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut loaders = Vec::new();
    for w in 0..4 {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        loaders.push(tokio::spawn(async move {
            for b in 0.. {
                let ids: Vec<String> = (0..100).map(|i| format!("w{w}-b{b}-e{i}")).collect();
                let events: Vec<_> = ids
                    .iter()
                    .map(|id| json!({"event_id": id, "tenant_id": "acme", "type": "stt_words", "quantity": 3}))
                    .collect();
                let sent = client
                    .post(format!("{base}/api/usage/events"))
                    .bearer_auth(token("platform", "service"))
                    .json(&json!({ "events": events }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().extend(ids),
                    // The server is gone: whatever was not acknowledged may or may not be stored.
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.start_kill().unwrap(); // SIGKILL: no graceful shutdown, no flush.
    server.wait().await.unwrap();
    for l in loaders {
        l.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 1000,
        "the load ran: {}",
        acknowledged.len()
    );

    // Read through a fresh connection pool, as a restarted server would.
    let db = thanotopolis_billing::db::Db::connect(&app.database_url)
        .await
        .unwrap();
    let stored: Vec<String> = with_pool!(&db, pool => {
        sqlx::query_scalar("SELECT event_id FROM usage_events").fetch_all(pool).await
    })
    .unwrap();
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    let lost = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} acknowledged events lost of {}",
        acknowledged.len()
    );
    let (quantity, events): (i64, i64) = with_pool!(&db, pool => {
        sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(stt_words + tts_words + phone_calls), 0) AS BIGINT),
                    CAST(COALESCE(SUM(event_count), 0) AS BIGINT)
             FROM usage_rollups",
        )
        .fetch_one(pool)
        .await
    })
    .unwrap();
    assert_eq!(
        events,
        stored.len() as i64,
        "rollups count exactly the stored events"
    );
    assert_eq!(quantity, 3 * stored.len() as i64);
    db.close().await;
}
