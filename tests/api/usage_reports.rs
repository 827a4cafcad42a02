//! The monthly reports (API and CLI) and `usage import`.

use crate::helpers::{super_admin, token, TempDir, TestApp};
use crate::store_tests;
use crate::usage::{ev_at, post_usage};
use chrono::{Duration, Utc};
use serde_json::json;
use thanotopolis_billing::domain::{time, BillingPeriod};
use thanotopolis_billing::with_pool;

store_tests!(
    usage_and_revenue_reports_by_organization,
    import_is_resumable_and_reports_bad_lines,
    import_reads_quoted_csv_fields,
);

async fn insert_invoice(
    app: &TestApp,
    id: &str,
    tenant: &str,
    status: &str,
    paid: i64,
    paid_at: chrono::DateTime<Utc>,
) {
    let now = time::now();
    with_pool!(&app.db, pool => {
        sqlx::query(
            "INSERT INTO invoices (stripe_invoice_id, tenant_id, stripe_customer_id, status,
                 amount_due_cents, amount_paid_cents, paid_at, lines_json,
                 stripe_created_at, stripe_updated_at, synced_at)
             VALUES ($1, $2, 'cus_1', $3, $4, $4, $5, $6, $7, $7, $7)",
        )
        .bind(id)
        .bind(tenant)
        .bind(status)
        .bind(paid)
        .bind(paid_at)
        .bind(r#"[{"description": "Phone Calls: 1 call", "amount_cents": 100}]"#)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
    })
    .unwrap();
}

async fn usage_and_revenue_reports_by_organization(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    let month = BillingPeriod::containing(Utc::now(), chrono_tz::UTC).prev();
    let (start, end) = month.bounds(chrono_tz::UTC);
    post_usage(
        &app,
        vec![
            ev_at("a1", "acme", "stt_words", 100, start),
            ev_at("a2", "acme", "tts_words", 40, start + Duration::days(2)),
            ev_at("a3", "acme", "phone_calls", 1, end - Duration::seconds(1)),
            ev_at("a4", "acme", "phone_calls", 1, end),
            ev_at("b1", "beta", "stt_words", 7, start + Duration::days(9)),
        ],
    )
    .await
    .expect(200);
    let path = format!("/api/admin/reports/usage?month={month}");
    app.get(&path, Some(&token("acme", "org_admin")))
        .await
        .expect(403);
    let reply = app.get(&path, Some(&super_admin())).await.expect(200);
    assert_eq!(
        reply.body,
        json!({"month": month.to_string(), "organizations": [
            {"tenant_id": "acme", "name": "Org acme", "stt_words": 100, "tts_words": 40, "calls": 1},
            {"tenant_id": "beta", "name": "Org beta", "stt_words": 7, "tts_words": 0, "calls": 0},
        ]})
    );
    let reply = app
        .get(
            "/api/admin/reports/usage?month=2026-13",
            Some(&super_admin()),
        )
        .await
        .expect(422);
    assert_eq!(reply.body["code"], "invalid_month");

    insert_invoice(
        &app,
        "in_1",
        "acme",
        "paid",
        29_900,
        start + Duration::hours(1),
    )
    .await;
    insert_invoice(
        &app,
        "in_2",
        "acme",
        "paid",
        1_729,
        end - Duration::seconds(1),
    )
    .await;
    insert_invoice(&app, "in_3", "acme", "paid", 500, end).await;
    insert_invoice(&app, "in_4", "beta", "open", 0, start + Duration::hours(1)).await;
    let reply = app
        .get(
            &format!("/api/admin/reports/revenue?month={month}"),
            Some(&super_admin()),
        )
        .await
        .expect(200);
    assert_eq!(
        reply.body["organizations"],
        json!([{"tenant_id": "acme", "name": "Org acme", "invoices": 2, "revenue_cents": 31_629}])
    );
    // The dashboard lists the tenant's invoices, newest first, with their lines.
    let d = app
        .get("/api/billing/dashboard", Some(&token("acme", "member")))
        .await
        .expect(200);
    assert_eq!(d.body["recent_invoices"].as_array().unwrap().len(), 3);
    assert_eq!(
        d.body["recent_invoices"][0]["lines"],
        json!([{"description": "Phone Calls: 1 call", "amount_cents": 100}])
    );

    // The CLI prints the same as a table or JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .args(["report", "usage", "--month", &month.to_string(), "--json"])
        .env("DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["organizations"][0]["stt_words"], 100);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .args(["report", "revenue", "--month", &month.to_string()])
        .env("DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("$316.29"), "{table}");
}

fn import(app: &TestApp, file: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .args(["usage", "import"])
        .arg(file)
        .env("DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn import_is_resumable_and_reports_bad_lines(app: TestApp) {
    app.add_tenant("acme").await;
    let dir = TempDir::new();
    let csv = dir.path.join("usage.csv");
    let mut text = String::from("event_id,tenant_id,type,quantity,occurred_at,metadata\n");
    for i in 0..2500 {
        text.push_str(&format!(
            "csv-{i},acme,stt_words,2,2026-10-0{}T12:00:00Z,\"{{\"\"call\"\": \"\"c{i}\"\"}}\"\n",
            i % 9 + 1
        ));
    }
    std::fs::write(&csv, &text).unwrap();
    let (ok, out, err) = import(&app, &csv);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("2500 line(s): 2500 accepted, 0 duplicate(s), 0 rejected"),
        "{out}"
    );
    let (ok, out, _) = import(&app, &csv);
    assert!(ok);
    assert!(out.contains("0 accepted, 2500 duplicate(s)"), "{out}");

    let jsonl = dir.path.join("more.jsonl");
    std::fs::write(
        &jsonl,
        [
            r#"{"event_id": "j1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1, "occurred_at": "2026-10-02T00:00:00Z"}"#,
            "",
            r#"{"event_id": "j2", "tenant_id": "acme", "type": "phone_calls", "quantity": 2}"#,
            r#"{"event_id": "j3", "tenant_id": "nobody", "type": "stt_words", "quantity": 1}"#,
            "not json",
            r#"{"event_id": "csv-1", "tenant_id": "acme", "type": "stt_words", "quantity": 2}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (ok, out, err) = import(&app, &jsonl);
    assert!(!ok, "bad lines make the exit status non-zero");
    assert!(
        out.contains("5 line(s): 1 accepted, 1 duplicate(s), 3 rejected"),
        "{out}"
    );
    assert!(
        err.contains("line 3: quantity: must be 1 for phone_calls"),
        "{err}"
    );
    assert!(
        err.contains("line 4: tenant_id: no tenant \"nobody\""),
        "{err}"
    );
    assert!(err.contains("line 5: not valid JSON"), "{err}");

    let report = app
        .get(
            "/api/admin/reports/usage?month=2026-10",
            Some(&super_admin()),
        )
        .await
        .expect(200);
    assert_eq!(report.body["organizations"][0]["stt_words"], 5000);
    assert_eq!(report.body["organizations"][0]["calls"], 1);
}

/// RFC 4180 quoting: a comma, a line break and a doubled quote inside quoted fields; a bad record after a
/// record of two lines is reported with the line it starts on.
async fn import_reads_quoted_csv_fields(app: TestApp) {
    app.add_tenant("acme").await;
    let dir = TempDir::new();
    let csv = dir.path.join("quoted.csv");
    let text = [
        "",
        "event_id,tenant_id,type,quantity,occurred_at,metadata",
        r#"q-1,acme,stt_words,3,2026-10-01T12:00:00Z,"{""note"": ""a, b"","#,
        r#" ""call"": ""c1""}""#,
        r#""q-2, ""second""",acme,tts_words,4,2026-10-01T12:00:00Z,"#,
        "q-3,acme,phone_calls,2,2026-10-01T12:00:00Z,",
        "",
    ]
    .join("\r\n");
    std::fs::write(&csv, text).unwrap();
    let (ok, out, err) = import(&app, &csv);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("3 line(s): 2 accepted, 0 duplicate(s), 1 rejected"),
        "{out}{err}"
    );
    assert!(
        err.contains("line 6: quantity: must be 1 for phone_calls"),
        "{err}"
    );
    let stored: Vec<(String, Option<String>)> = with_pool!(&app.db, pool => {
        sqlx::query_as("SELECT event_id, metadata FROM usage_events ORDER BY event_id")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    let metadata = |m: &Option<String>| {
        m.as_deref()
            .map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap())
    };
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].0, "q-1");
    assert_eq!(
        metadata(&stored[0].1),
        Some(json!({"note": "a, b", "call": "c1"}))
    );
    assert_eq!(stored[1].0, r#"q-2, "second""#);
    assert_eq!(stored[1].1, None);
}
