//! Usage metering over HTTP: ingestion exactly once, validation, who may post, the dashboard's figures.

use crate::helpers::{spawn_app_with, super_admin, token, Reply, Store, TestApp};
use crate::store_tests;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use thanotopolis_billing::domain::{time, BillingPeriod, TenantId};
use thanotopolis_billing::with_pool;

store_tests!(
    accepts_events_and_reports_duplicates,
    events_are_stored_exactly_as_sent,
    racing_duplicate_batches_count_once,
    a_batch_rolled_back_leaves_no_stale_rollup_id,
    concurrent_single_events_share_commits_and_keep_their_answers,
    batches_creating_rollups_at_once_each_get_their_own_answer,
    an_invalid_batch_names_each_bad_index_and_stores_nothing,
    only_services_and_super_admins_may_post_usage,
    dashboard_shows_usage_and_charges_right_after_the_post,
    worked_rounding_examples,
    earlier_periods_unbilled_usage_is_late,
    demo_tenants_see_zero_charges,
    usage_inside_the_trial_is_free,
    tenants_never_see_each_others_usage,
    unknown_fields_are_ignored_and_invalid_text_is_refused,
);

pub fn service() -> String {
    token("platform", "service")
}

pub fn ev(id: &str, tenant: &str, kind: &str, quantity: i64) -> Value {
    json!({"event_id": id, "tenant_id": tenant, "type": kind, "quantity": quantity})
}

pub fn ev_at(id: &str, tenant: &str, kind: &str, quantity: i64, at: DateTime<Utc>) -> Value {
    let mut e = ev(id, tenant, kind, quantity);
    e["occurred_at"] = json!(time::rfc3339(at));
    e
}

pub async fn post_usage(app: &TestApp, events: Vec<Value>) -> Reply {
    app.post(
        "/api/usage/events",
        Some(&service()),
        &json!({ "events": events }),
    )
    .await
}

pub async fn stored_events(app: &TestApp) -> i64 {
    with_pool!(&app.db, pool => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM usage_events").fetch_one(pool).await
    })
    .unwrap()
}

async fn dashboard(app: &TestApp, tenant: &str) -> Value {
    app.get("/api/billing/dashboard", Some(&token(tenant, "member")))
        .await
        .expect(200)
        .body
}

/// Identifiers and metadata are stored exactly as sent, whatever characters they hold (PostgreSQL loads
/// new events with `COPY`, whose text format escapes some of them).
async fn events_are_stored_exactly_as_sent(app: TestApp) {
    let tenant = r"acme\eu";
    app.post(
        "/api/admin/tenants",
        Some(&super_admin()),
        &json!({"id": tenant, "name": "Acme EU", "subdomain": "acme-eu"}),
    )
    .await
    .expect(201);
    let metadata = json!({"who": "Zoë ☎", "note": "line\nbreak\ttab \\ back \\N"});
    let events = vec![
        json!({"event_id": r"call\0001\N", "tenant_id": tenant, "type": "phone_calls", "quantity": 1,
               "metadata": metadata}),
        json!({"event_id": "réunion \"q\" ☎", "tenant_id": tenant, "type": "stt_words", "quantity": 7}),
    ];
    let reply = post_usage(&app, events.clone()).await.expect(200);
    assert_eq!(reply.body, json!({"accepted": 2, "duplicates": 0}));
    let stored: Vec<(String, String, Option<String>)> = with_pool!(&app.db, pool => {
        sqlx::query_as("SELECT event_id, tenant_id, metadata FROM usage_events ORDER BY event_id")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    assert_eq!(
        stored,
        vec![
            (
                r"call\0001\N".to_owned(),
                tenant.to_owned(),
                Some(metadata.to_string())
            ),
            ("réunion \"q\" ☎".to_owned(), tenant.to_owned(), None),
        ]
    );
    // Recognized as the same events when sent again.
    let reply = post_usage(&app, events).await.expect(200);
    assert_eq!(reply.body, json!({"accepted": 0, "duplicates": 2}));
}

async fn accepts_events_and_reports_duplicates(app: TestApp) {
    app.add_tenant("acme").await;
    let reply = post_usage(
        &app,
        vec![
            ev("e1", "acme", "stt_words", 100),
            ev("e2", "acme", "tts_words", 50),
            ev("e1", "acme", "stt_words", 100),
        ],
    )
    .await
    .expect(200);
    assert_eq!(reply.body, json!({"accepted": 2, "duplicates": 1}));
    // The same batch again: all duplicates.
    let reply = post_usage(
        &app,
        vec![
            ev("e1", "acme", "stt_words", 100),
            ev("e2", "acme", "tts_words", 50),
        ],
    )
    .await
    .expect(200);
    assert_eq!(reply.body, json!({"accepted": 0, "duplicates": 2}));
    // Across batches, even with other content: the event id decides.
    let reply = post_usage(
        &app,
        vec![
            ev("e2", "acme", "tts_words", 999),
            ev("call-1", "acme", "phone_calls", 1),
        ],
    )
    .await
    .expect(200);
    assert_eq!(reply.body, json!({"accepted": 1, "duplicates": 1}));
    // A single event again, alone (stored on its own path on PostgreSQL), and a new one.
    let reply = post_usage(&app, vec![ev("call-1", "acme", "phone_calls", 1)])
        .await
        .expect(200);
    assert_eq!(reply.body, json!({"accepted": 0, "duplicates": 1}));
    let reply = post_usage(&app, vec![ev("e3", "acme", "stt_words", 7)])
        .await
        .expect(200);
    assert_eq!(reply.body, json!({"accepted": 1, "duplicates": 0}));
    assert_eq!(stored_events(&app).await, 4);
    let d = dashboard(&app, "acme").await;
    assert_eq!(d["current_period_usage"]["total_stt_words"], 107);
    assert_eq!(d["current_period_usage"]["total_tts_words"], 50);
    assert_eq!(d["current_period_usage"]["total_phone_calls"], 1);
}

async fn racing_duplicate_batches_count_once(app: TestApp) {
    app.add_tenant("acme").await;
    let batch: Vec<Value> = (0..200)
        .map(|i| ev(&format!("race-{i}"), "acme", "stt_words", 1))
        .collect();
    let replies = futures_join_all((0..4).map(|_| post_detached(&app, batch.clone()))).await;
    let accepted: i64 = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["accepted"].as_i64().unwrap()
        })
        .sum();
    let duplicates: i64 = replies
        .iter()
        .map(|r| r.body["duplicates"].as_i64().unwrap())
        .sum();
    assert_eq!(accepted, 200);
    assert_eq!(duplicates, 600);
    assert_eq!(stored_events(&app).await, 200);
    let d = dashboard(&app, "acme").await;
    assert_eq!(d["current_period_usage"]["total_stt_words"], 200);
}

/// A batch that goes in as a bulk load and meets a stored id is rolled back, with any open rollup
/// created in its transaction; the batches after it must count in a rollup that exists, not in one
/// rolled back, and a rollup created before the events' transaction counts nothing of the failed try.
async fn a_batch_rolled_back_leaves_no_stale_rollup_id(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    post_usage(&app, vec![ev("shared", "acme", "stt_words", 1)])
        .await
        .expect(200);
    // Big enough for a bulk load; its last event's id is stored already.
    let mut first: Vec<Value> = (0..40)
        .map(|i| ev(&format!("beta-a-{i}"), "beta", "stt_words", 1))
        .collect();
    first.push(ev("shared", "beta", "stt_words", 1));
    let reply = post_usage(&app, first).await.expect(200);
    assert_eq!(reply.body, json!({"accepted": 40, "duplicates": 1}));
    let second: Vec<Value> = (0..40)
        .map(|i| ev(&format!("beta-b-{i}"), "beta", "tts_words", 2))
        .collect();
    let reply = post_usage(&app, second).await.expect(200);
    assert_eq!(reply.body, json!({"accepted": 40, "duplicates": 0}));
    let d = dashboard(&app, "beta").await;
    assert_eq!(d["current_period_usage"]["total_stt_words"], 40);
    assert_eq!(d["current_period_usage"]["total_tts_words"], 80);
}

/// Many single-event requests at once (stored together by the batcher): each gets its own answer,
/// duplicates across requests count once, and a request naming an unknown tenant fails alone.
async fn concurrent_single_events_share_commits_and_keep_their_answers(app: TestApp) {
    app.add_tenant("acme").await;
    let post = |events: Vec<Value>| post_detached(&app, events);
    // 300 requests for 150 distinct calls (each sent twice), and 10 for an unknown tenant.
    let mut requests: Vec<_> = (0..300)
        .map(|i| {
            post(vec![ev(
                &format!("call-{}", i % 150),
                "acme",
                "phone_calls",
                1,
            )])
        })
        .collect();
    requests.extend((0..10).map(|i| post(vec![ev(&format!("x-{i}"), "ghost", "stt_words", 5)])));
    let replies = futures_join_all(requests).await;
    let (mut accepted, mut duplicates, mut rejected) = (0, 0, 0);
    for r in &replies {
        match r.status {
            200 => {
                accepted += r.body["accepted"].as_i64().unwrap();
                duplicates += r.body["duplicates"].as_i64().unwrap();
            }
            422 => rejected += 1,
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!((accepted, duplicates, rejected), (150, 150, 10));
    assert_eq!(stored_events(&app).await, 150);
    let d = dashboard(&app, "acme").await;
    assert_eq!(d["current_period_usage"]["total_phone_calls"], 150);
    assert_eq!(d["upcoming_charges"]["call_charges_cents"], 15_000);
}

/// Batches whose rollups do not exist yet, posted at once (their rollups are created together), with
/// batches naming an unknown tenant among them: every good batch is stored and answered 200 on its first
/// try, whatever batch's rollups were created with its own, and only the unknown tenant's are refused.
async fn batches_creating_rollups_at_once_each_get_their_own_answer(app: TestApp) {
    for t in 0..6 {
        app.add_tenant(&format!("org-{t}")).await;
    }
    let start = time::now() - Duration::days(20);
    // 40 events a batch (stored as a batch, not one by one), each on its own day: 40 rollups to create.
    let batch = |name: &str, tenant: &str| -> Vec<Value> {
        (0..40)
            .map(|d| {
                let at = start + Duration::hours(d * 12);
                ev_at(&format!("{name}-{d}"), tenant, "stt_words", 10, at)
            })
            .collect()
    };
    for round in 0..5 {
        let mut requests = Vec::new();
        for t in 0..6 {
            let name = format!("r{round}-org-{t}");
            requests.push(post_detached(&app, batch(&name, &format!("org-{t}"))));
        }
        for g in 0..2 {
            requests.push(post_detached(
                &app,
                batch(&format!("r{round}-ghost-{g}"), "ghost"),
            ));
        }
        let replies = futures_join_all(requests).await;
        for (i, r) in replies.iter().enumerate() {
            if i < 6 {
                assert_eq!(r.status, 200, "round {round}, batch {i}: {}", r.text);
                assert_eq!(r.body["accepted"], 40, "{}", r.text);
            } else {
                assert_eq!(r.status, 422, "round {round}, ghost batch: {}", r.text);
                let detail = r.body["detail"].as_str().unwrap();
                assert!(detail.contains(r#"no tenant "ghost""#), "{detail}");
            }
        }
    }
    assert_eq!(stored_events(&app).await, 5 * 6 * 40);
}

/// A post of usage that borrows nothing from the test, so that many can run as tasks at once.
fn post_detached(
    app: &TestApp,
    events: Vec<Value>,
) -> impl std::future::Future<Output = Reply> + Send + 'static {
    let (client, url) = (app.client.clone(), app.url("/api/usage/events"));
    async move {
        let resp = client
            .post(url)
            .bearer_auth(service())
            .json(&json!({ "events": events }))
            .send();
        Reply::from(resp.await.expect("request")).await
    }
}

/// Runs futures concurrently (the test crate has no `futures` dependency).
pub async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

async fn an_invalid_batch_names_each_bad_index_and_stores_nothing(app: TestApp) {
    app.add_tenant("acme").await;
    let future = Utc::now() + Duration::days(3);
    let reply = post_usage(
        &app,
        vec![
            ev("ok-1", "acme", "stt_words", 10),
            ev("bad-q", "acme", "stt_words", 0),
            ev("bad-t", "acme", "sms", 1),
            ev("bad-call", "acme", "phone_calls", 3),
            ev("bad-tenant", "nobody", "tts_words", 5),
            ev_at("bad-time", "acme", "tts_words", 5, future),
            json!({"event_id": "bad-ts", "tenant_id": "acme", "type": "stt_words", "quantity": 1, "occurred_at": "yesterday"}),
            ev(&"x".repeat(201), "acme", "stt_words", 1),
            json!({"event_id": "bad-meta", "tenant_id": "acme", "type": "stt_words", "quantity": 1, "metadata": "text"}),
            json!({"event_id": "bad-frac", "tenant_id": "acme", "type": "stt_words", "quantity": 1.5}),
            json!("not an event"),
        ],
    )
    .await
    .expect(422);
    assert_eq!(reply.body["code"], "invalid_usage_events");
    let detail = reply.body["detail"].as_str().unwrap();
    for expected in [
        "events[1].quantity: must be a whole number >= 1",
        "events[2].type:",
        "events[3].quantity: must be 1 for phone_calls",
        "events[4].tenant_id: no tenant \"nobody\"",
        "events[5].occurred_at: is more than a day in the future",
        "events[6].occurred_at: must be an RFC 3339 timestamp",
        "events[7].event_id:",
        "events[8].metadata: must be a JSON object",
        "events[9].quantity:",
        "events[10]: must be an object",
    ] {
        assert!(
            detail.contains(expected),
            "missing {expected:?} in {detail}"
        );
    }
    assert!(!detail.contains("events[0]"), "{detail}");
    assert_eq!(stored_events(&app).await, 0);
    assert_eq!(
        dashboard(&app, "acme").await["current_period_usage"]["total_stt_words"],
        0
    );

    // An unknown tenant alone rejects the batch too, valid events with it.
    let reply = post_usage(
        &app,
        vec![
            ev("fine", "acme", "stt_words", 10),
            ev("stranger", "ghost", "stt_words", 10),
        ],
    )
    .await
    .expect(422);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("1 of 2 events are invalid, so none was stored: events[1].tenant_id: no tenant \"ghost\""),
        "{}",
        reply.text
    );
    assert_eq!(stored_events(&app).await, 0);

    let reply = post_usage(&app, vec![]).await.expect(422);
    assert!(reply.body["detail"].as_str().unwrap().contains("empty"));
    let too_many: Vec<Value> = (0..1001)
        .map(|i| ev(&format!("e{i}"), "acme", "stt_words", 1))
        .collect();
    let reply = post_usage(&app, too_many).await.expect(422);
    assert!(reply.body["detail"].as_str().unwrap().contains("1000"));
    app.post("/api/usage/events", Some(&service()), &json!({"evts": []}))
        .await
        .expect(422);
    let full: Vec<Value> = (0..1000)
        .map(|i| ev(&format!("e{i}"), "acme", "stt_words", 1))
        .collect();
    let reply = post_usage(&app, full).await.expect(200);
    assert_eq!(reply.body["accepted"], 1000);
}

async fn only_services_and_super_admins_may_post_usage(app: TestApp) {
    app.add_tenant("acme").await;
    let body = json!({"events": [ev("e1", "acme", "stt_words", 5)]});
    app.post("/api/usage/events", None, &body).await.expect(401);
    app.post("/api/usage/events", Some("garbage"), &body)
        .await
        .expect(401);
    for role in ["member", "user", "org_admin", "admin"] {
        let reply = app
            .post("/api/usage/events", Some(&token("acme", role)), &body)
            .await;
        assert_eq!(reply.status, 403, "{role}: {}", reply.text);
    }
    assert_eq!(stored_events(&app).await, 0);
    app.post("/api/usage/events", Some(&service()), &body)
        .await
        .expect(200);
    let reply = app
        .post("/api/usage/events", Some(&super_admin()), &body)
        .await
        .expect(200);
    assert_eq!(reply.body["duplicates"], 1);
    // A service token reports usage; it does not read billing.
    app.get("/api/billing/dashboard", Some(&token("acme", "service")))
        .await
        .expect(403);
    app.get("/api/billing/dashboard", None).await.expect(401);
}

async fn dashboard_shows_usage_and_charges_right_after_the_post(app: TestApp) {
    app.add_tenant("acme").await;
    let mut events = vec![
        ev("s1", "acme", "stt_words", 150),
        ev("s2", "acme", "stt_words", 50),
        ev("t1", "acme", "tts_words", 90),
    ];
    events.extend((0..17).map(|i| ev(&format!("call-{i}"), "acme", "phone_calls", 1)));
    post_usage(&app, events).await.expect(200);
    let d = dashboard(&app, "acme").await;
    assert_eq!(d["is_demo"], false);
    assert!(d.get("demo_message").is_none());
    assert_eq!(d["current_subscription"], Value::Null);
    assert_eq!(d["recent_invoices"], json!([]));
    let period = BillingPeriod::containing(Utc::now(), chrono_tz::UTC);
    let (start, end) = period.bounds(chrono_tz::UTC);
    let usage = &d["current_period_usage"];
    assert_eq!(usage["start_date"], time::rfc3339(start));
    assert_eq!(usage["end_date"], time::rfc3339(end));
    assert_eq!(usage["total_stt_words"], 200);
    assert_eq!(usage["total_tts_words"], 90);
    assert_eq!(usage["total_phone_calls"], 17);
    let up = &d["upcoming_charges"];
    assert_eq!(up["voice_words_count"], 290);
    assert_eq!(up["voice_usage_cents"], 29);
    assert_eq!(up["call_count"], 17);
    assert_eq!(up["call_charges_cents"], 1700);
    assert_eq!(up["total_charges_cents"], 1729);
    assert_eq!(up["late"], json!([]));
}

async fn worked_rounding_examples(app: TestApp) {
    for (tenant, stt, tts, cents) in [
        ("big", 10_000, 2_345, 1235),
        ("mid", 290, 0, 29),
        ("tiny", 4, 0, 0),
    ] {
        app.add_tenant(tenant).await;
        let mut events = vec![ev(&format!("{tenant}-s"), tenant, "stt_words", stt)];
        if tts > 0 {
            events.push(ev(&format!("{tenant}-t"), tenant, "tts_words", tts));
        }
        post_usage(&app, events).await.expect(200);
        let d = dashboard(&app, tenant).await;
        let up = &d["upcoming_charges"];
        assert_eq!(up["voice_words_count"], stt + tts, "{tenant}");
        assert_eq!(up["voice_usage_cents"], cents, "{tenant}");
        assert_eq!(up["total_charges_cents"], cents, "{tenant}");
    }
}

async fn earlier_periods_unbilled_usage_is_late(app: TestApp) {
    app.add_tenant("acme").await;
    let period = BillingPeriod::containing(Utc::now(), chrono_tz::UTC);
    let (start, _) = period.bounds(chrono_tz::UTC);
    let earlier = start - Duration::hours(1);
    let two_back = period.prev().prev().bounds(chrono_tz::UTC).0 + Duration::hours(5);
    let reply = post_usage(
        &app,
        vec![
            ev_at("old-1", "acme", "stt_words", 5_000, earlier),
            ev_at("old-2", "acme", "phone_calls", 1, earlier),
            ev_at("old-3", "acme", "phone_calls", 1, two_back),
            ev("new-1", "acme", "tts_words", 1_000),
        ],
    )
    .await
    .expect(200);
    assert_eq!(reply.body["accepted"], 4);
    let d = dashboard(&app, "acme").await;
    let up = &d["upcoming_charges"];
    assert_eq!(up["voice_words_count"], 1000);
    assert_eq!(up["voice_usage_cents"], 100);
    assert_eq!(
        up["late"],
        json!([
            {"period": period.prev().prev().to_string(), "voice_words_count": 0, "voice_usage_cents": 0,
             "call_count": 1, "call_charges_cents": 100},
            {"period": period.prev().to_string(), "voice_words_count": 5000, "voice_usage_cents": 500,
             "call_count": 1, "call_charges_cents": 100},
        ])
    );
    assert_eq!(up["total_charges_cents"], 100 + 100 + 500 + 100);
    // The current period's own usage counts only this period's events.
    assert_eq!(d["current_period_usage"]["total_stt_words"], 0);
    assert_eq!(d["current_period_usage"]["total_tts_words"], 1000);
}

async fn demo_tenants_see_zero_charges(app: TestApp) {
    app.add_tenant("demo").await;
    thanotopolis_billing::db::tenants::set_demo(&app.db, &TenantId::parse("demo").unwrap(), true)
        .await
        .unwrap();
    post_usage(
        &app,
        vec![
            ev("d1", "demo", "stt_words", 5_000),
            ev("d2", "demo", "phone_calls", 1),
        ],
    )
    .await
    .expect(200);
    let d = dashboard(&app, "demo").await;
    assert_eq!(d["is_demo"], true);
    assert_eq!(
        d["demo_message"],
        "This is a demo account and is exempt from billing charges."
    );
    assert_eq!(d["current_subscription"], Value::Null);
    assert_eq!(d["current_period_usage"]["total_stt_words"], 5000);
    let up = &d["upcoming_charges"];
    assert_eq!(up["total_charges_cents"], 0);
    assert_eq!(up["voice_usage_cents"], 0);
    assert_eq!(up["call_charges_cents"], 0);
    // Usage during the demo interval stays free after the tenant leaves demo.
    thanotopolis_billing::db::tenants::set_demo(&app.db, &TenantId::parse("demo").unwrap(), false)
        .await
        .unwrap();
    let later = Utc::now() + Duration::seconds(2);
    post_usage(&app, vec![ev_at("d3", "demo", "stt_words", 1_000, later)])
        .await
        .expect(200);
    let d = dashboard(&app, "demo").await;
    assert_eq!(d["is_demo"], false);
    assert_eq!(d["upcoming_charges"]["voice_words_count"], 1000);
    assert_eq!(d["upcoming_charges"]["total_charges_cents"], 100);
}

/// Inserts a subscription row as the Stripe webhooks would have.
pub async fn insert_subscription(
    app: &TestApp,
    tenant: &str,
    id: &str,
    status: &str,
    trial_end: Option<DateTime<Utc>>,
) {
    let now = time::now();
    // A trial of two weeks that started when the subscription was created, as Checkout makes one.
    let trial_start = trial_end.map(|e| e - Duration::days(14));
    let created = trial_start.unwrap_or(now);
    with_pool!(&app.db, pool => {
        sqlx::query(
            "INSERT INTO subscriptions (stripe_subscription_id, tenant_id, stripe_customer_id, status,
                 price_id, amount_cents, current_period_start, current_period_end, trial_start, trial_end,
                 stripe_created_at, stripe_updated_at, synced_at)
             VALUES ($1, $2, 'cus_1', $3, 'price_1', 29900, $4, $5, $6, $7, $8, $4, $4)",
        )
        .bind(id)
        .bind(tenant)
        .bind(status)
        .bind(now)
        .bind(now + Duration::days(30))
        .bind(trial_start)
        .bind(trial_end)
        .bind(created)
        .execute(pool)
        .await
        .map(|_| ())
    })
    .unwrap();
}

async fn usage_inside_the_trial_is_free(app: TestApp) {
    app.add_tenant("acme").await;
    let now = time::now();
    let trial_end = now - Duration::seconds(60);
    insert_subscription(&app, "acme", "sub_1", "active", Some(trial_end)).await;
    post_usage(
        &app,
        vec![
            ev_at(
                "in-trial",
                "acme",
                "stt_words",
                7_000,
                now - Duration::seconds(120),
            ),
            ev_at(
                "in-trial-call",
                "acme",
                "phone_calls",
                1,
                now - Duration::seconds(61),
            ),
            ev_at("at-end", "acme", "stt_words", 1_000, trial_end),
            ev_at("after", "acme", "phone_calls", 1, now),
        ],
    )
    .await
    .expect(200);
    let d = dashboard(&app, "acme").await;
    let sub = &d["current_subscription"];
    assert_eq!(sub["subscription_id"], "sub_1");
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["amount_cents"], 29900);
    assert_eq!(sub["cancel_at_period_end"], false);
    assert!(sub["current_period_start"].as_str().unwrap().ends_with('Z'));
    // Raw usage shows everything; the charges only what occurred from trial_end on.
    assert_eq!(d["current_period_usage"]["total_stt_words"], 8000);
    let up = &d["upcoming_charges"];
    assert_eq!(up["voice_words_count"], 1000);
    assert_eq!(up["call_count"], 1);
    assert_eq!(up["total_charges_cents"], 200);
}

async fn tenants_never_see_each_others_usage(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    post_usage(
        &app,
        vec![
            ev("a1", "acme", "stt_words", 1_000),
            ev("b1", "beta", "stt_words", 2_000),
        ],
    )
    .await
    .expect(200);
    assert_eq!(
        dashboard(&app, "acme").await["current_period_usage"]["total_stt_words"],
        1000
    );
    assert_eq!(
        dashboard(&app, "beta").await["current_period_usage"]["total_stt_words"],
        2000
    );
    let reply = app
        .get(
            "/api/billing/dashboard?tenant_id=beta",
            Some(&token("acme", "org_admin")),
        )
        .await
        .expect(403);
    assert_eq!(reply.body["code"], "forbidden");
    let reply = app
        .get(
            "/api/billing/dashboard?tenant_id=beta",
            Some(&super_admin()),
        )
        .await
        .expect(200);
    assert_eq!(reply.body["current_period_usage"]["total_stt_words"], 2000);
    // A tenant not registered here sees its own empty billing (API.md, the platform's pages), never
    // another's; a super admin naming it is told it does not exist.
    let ghost = app
        .get("/api/billing/dashboard", Some(&token("ghost", "member")))
        .await
        .expect(200)
        .body;
    assert_eq!(ghost["current_period_usage"]["total_stt_words"], 0);
    assert_eq!(ghost["recent_invoices"], serde_json::json!([]));
    app.get(
        "/api/billing/dashboard?tenant_id=ghost",
        Some(&super_admin()),
    )
    .await
    .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(Store::Sqlite, |vars| {
        vars.insert("USAGE_EVENTS_PER_SECOND_PER_TOKEN".into(), "100".into());
    })
    .await;
    app.add_tenant("acme").await;
    let full: Vec<Value> = (0..1000)
        .map(|i| ev(&format!("e{i}"), "acme", "stt_words", 1))
        .collect();
    post_usage(&app, full).await.expect(200);
    // The first batch spent the whole allowance and more (a batch larger than a second's budget passes
    // on a full bucket and leaves a debt), so 500 more must wait for the refill.
    let more: Vec<Value> = (0..500)
        .map(|i| ev(&format!("m{i}"), "acme", "stt_words", 1))
        .collect();
    let reply = post_usage(&app, more).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.body["code"], "rate_limited");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15).contains(&wait), "{wait}");
    assert_eq!(stored_events(&app).await, 1000);
    // Another caller has its own allowance.
    app.post(
        "/api/usage/events",
        Some(&super_admin()),
        &json!({"events": [ev("admin-1", "acme", "stt_words", 1)]}),
    )
    .await
    .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_follow_a_non_utc_billing_timezone() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, |vars| {
            vars.insert("BILLING_TIMEZONE".into(), "Pacific/Auckland".into());
        })
        .await;
        app.add_tenant("acme").await;
        let tz = chrono_tz::Pacific::Auckland;
        let period = BillingPeriod::containing(Utc::now(), tz);
        let (start, _) = period.bounds(tz);
        post_usage(
            &app,
            vec![
                ev_at(
                    "before",
                    "acme",
                    "phone_calls",
                    1,
                    start - Duration::seconds(1),
                ),
                ev_at("at", "acme", "phone_calls", 1, start),
            ],
        )
        .await
        .expect(200);
        let d = dashboard(&app, "acme").await;
        assert_eq!(
            d["current_period_usage"]["start_date"],
            time::rfc3339(start)
        );
        assert_eq!(
            d["current_period_usage"]["total_phone_calls"], 1,
            "{store:?}"
        );
        assert_eq!(d["upcoming_charges"]["call_count"], 1);
        assert_eq!(
            d["upcoming_charges"]["late"][0]["period"],
            period.prev().to_string()
        );
        assert_eq!(d["upcoming_charges"]["late"][0]["call_count"], 1);
    }
}

/// Fields the contract does not name are ignored, in an event or around the batch; a body that is not
/// valid JSON text (invalid UTF-8, even in such a field) is refused and stores nothing.
async fn unknown_fields_are_ignored_and_invalid_text_is_refused(app: TestApp) {
    app.add_tenant("acme").await;
    let post_bytes = |body: Vec<u8>| {
        let request = app
            .client
            .post(app.url("/api/usage/events"))
            .bearer_auth(service())
            .header("content-type", "application/json")
            .body(body);
        async move { Reply::from(request.send().await.expect("request")).await }
    };
    let event = r#"{"event_id": "e1", "tenant_id": "acme", "type": "stt_words", "quantity": 12"#;
    let invalid = [
        br#"{"events": ["#.as_slice(),
        event.as_bytes(),
        b", \"note\": \"\xff\"}]}",
    ]
    .concat();
    let reply = post_bytes(invalid).await.expect(422);
    assert_eq!(reply.body["code"], "invalid_json");
    assert_eq!(stored_events(&app).await, 0);
    let extra = format!(r#"{{"source": "voice-gw", "events": [{event}, "note": "x"}}]}}"#);
    let reply = post_bytes(extra.into_bytes()).await.expect(200);
    assert_eq!(reply.body, json!({"accepted": 1, "duplicates": 0}));
    let d = dashboard(&app, "acme").await;
    assert_eq!(d["current_period_usage"]["total_stt_words"], 12);
}
