use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_sim::SimConfig;

use crate::common::{id, Sim};

#[derive(Default)]
struct Inbox {
    fail_first: usize,
    calls: usize,
    received: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Inbox>>;

async fn receive(State(inbox): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut i = inbox.lock().unwrap();
    i.calls += 1;
    if i.calls <= i.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    i.received
        .push((sig, String::from_utf8_lossy(&body).into_owned()));
    StatusCode::OK
}

async fn receiver(fail_first: usize) -> (String, Shared) {
    let inbox: Shared = Arc::new(Mutex::new(Inbox {
        fail_first,
        ..Inbox::default()
    }));
    let app = Router::new().fallback(receive).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, inbox)
}

/// Verifies `t=...,v1=...` as Stripe's libraries do, with a 5 minute tolerance.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1.push(x.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    v1.contains(&expected)
}

async fn wait_for(inbox: &Shared, n: usize) -> Vec<(String, String)> {
    for _ in 0..200 {
        {
            let i = inbox.lock().unwrap();
            if i.received.len() >= n {
                return i.received.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    inbox.lock().unwrap().received.clone()
}

#[tokio::test]
async fn configured_url_gets_signed_events_in_order_with_retries() {
    let (url, inbox) = receiver(3).await;
    let sim = Sim::start_with(SimConfig {
        webhook_url: Some(url.clone()),
        webhook_secret: "whsec_test_secret".into(),
        webhook_retry_base: Duration::from_millis(20),
        webhook_max_attempts: 8,
    })
    .await;
    assert_eq!(sim.handle.webhook_secret(), "whsec_test_secret");
    let a = sim.customer("w1@example.com").await;
    let b = sim.customer("w2@example.com").await;
    let got = wait_for(&inbox, 2).await;
    assert_eq!(got.len(), 2);
    for (sig, body) in &got {
        assert!(
            verify("whsec_test_secret", sig, body),
            "bad signature {sig}"
        );
        assert!(!verify("whsec_other", sig, body));
    }
    let first: Value = serde_json::from_str(&got[0].1).unwrap();
    let second: Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(first["type"], "customer.created");
    assert_eq!(
        first["data"]["object"]["id"],
        a.as_str(),
        "in order despite retries"
    );
    assert_eq!(second["data"]["object"]["id"], b.as_str());
    assert_eq!(inbox.lock().unwrap().calls, 5);

    let deliveries = sim.ctl_get("/_sim/webhooks/deliveries").await;
    let data = deliveries["data"].as_array().unwrap();
    let first_id = first["id"].as_str().unwrap();
    let mut attempts: Vec<(i64, i64)> = data
        .iter()
        .filter(|d| d["event_id"] == first_id)
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["status"].as_i64().unwrap(),
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(attempts, vec![(1, 500), (2, 500), (3, 500), (4, 200)]);
    assert_eq!(data[0]["url"], url.as_str());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn registered_endpoints_get_only_their_events() {
    let (url, inbox) = receiver(0).await;
    let sim = Sim::start().await;
    let we = sim
        .post(
            "/v1/webhook_endpoints",
            &[
                ("url", url.as_str()),
                ("enabled_events[]", "invoice.paid"),
                ("enabled_events[]", "checkout.session.completed"),
            ],
        )
        .await
        .ok();
    let secret = we["secret"].as_str().unwrap().to_string();
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let got = wait_for(&inbox, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got_all = inbox.lock().unwrap().received.clone();
    assert_eq!(got_all.len(), 2, "only the enabled events");
    let types: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<Value>(b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["invoice.paid", "checkout.session.completed"]);
    for (sig, body) in &got {
        assert!(verify(&secret, sig, body));
    }
    let ev: Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(
        ev["data"]["object"]["parent"]["subscription_details"]["subscription"],
        sub["id"]
    );
    assert_eq!(ev["object"], "event");
    assert!(ev["created"].is_i64());

    let all = sim
        .post(
            "/v1/webhook_endpoints",
            &[("url", url.as_str()), ("enabled_events[0]", "*")],
        )
        .await
        .ok();
    sim.customer("star@example.com").await;
    let got = wait_for(&inbox, 3).await;
    let last: Value = serde_json::from_str(&got[2].1).unwrap();
    assert_eq!(last["type"], "customer.created");
    assert!(verify(
        all["secret"].as_str().unwrap(),
        &got[2].0,
        &got[2].1
    ));
    let _ = id(&all);
}

#[tokio::test]
async fn endpoints_get_events_in_their_api_version() {
    let (old_url, old_inbox) = receiver(0).await;
    let (new_url, new_inbox) = receiver(0).await;
    let sim = Sim::start().await;
    let old = sim
        .post(
            "/v1/webhook_endpoints",
            &[
                ("url", old_url.as_str()),
                ("enabled_events[]", "customer.created"),
                ("api_version", "2024-06-20"),
            ],
        )
        .await
        .ok();
    assert_eq!(old["api_version"], "2024-06-20");
    let got = sim
        .get(&format!("/v1/webhook_endpoints/{}", id(&old)))
        .await
        .ok();
    assert_eq!(got["api_version"], "2024-06-20");
    let new = sim
        .post(
            "/v1/webhook_endpoints",
            &[
                ("url", new_url.as_str()),
                ("enabled_events[]", "customer.created"),
            ],
        )
        .await
        .ok();
    assert_eq!(new["api_version"], "2025-08-27.basil");
    let cid = sim.customer("versions@example.com").await;
    let old_got = wait_for(&old_inbox, 1).await;
    let new_got = wait_for(&new_inbox, 1).await;
    let old_ev: Value = serde_json::from_str(&old_got[0].1).unwrap();
    let new_ev: Value = serde_json::from_str(&new_got[0].1).unwrap();
    assert_eq!(old_ev["api_version"], "2024-06-20");
    assert_eq!(new_ev["api_version"], "2025-08-27.basil");
    assert_eq!(old_ev["id"], new_ev["id"], "the same event");
    assert_eq!(old_ev["data"]["object"]["id"], cid.as_str());
    assert!(verify(
        old["secret"].as_str().unwrap(),
        &old_got[0].0,
        &old_got[0].1
    ));
    let listed = sim.get("/v1/events?type=customer.created").await.ok();
    assert_eq!(listed["data"][0]["api_version"], "2025-08-27.basil");

    let bad = sim
        .post(
            "/v1/webhook_endpoints",
            &[
                ("url", old_url.as_str()),
                ("enabled_events[]", "*"),
                ("api_version", "2099-01-01"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.err()["param"], "api_version");
    assert!(bad.err()["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid api_version: must be one of 2011-01-01, "));
    // The version is set at creation only.
    let upd = sim
        .post(
            &format!("/v1/webhook_endpoints/{}", id(&new)),
            &[("api_version", "2024-06-20")],
        )
        .await;
    assert_eq!(upd.status, 400);
    assert_eq!(upd.err()["code"], "parameter_unknown");
}
