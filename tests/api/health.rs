use crate::helpers::TestApp;
use crate::store_tests;

store_tests!(
    healthz_answers_without_auth,
    readyz_reports_the_database,
    responses_carry_a_request_id
);

async fn healthz_answers_without_auth(app: TestApp) {
    let reply = app.get("/healthz", None).await.expect(200);
    assert_eq!(reply.body["status"], "ok");
}

async fn readyz_reports_the_database(app: TestApp) {
    let reply = app.get("/readyz", None).await.expect(200);
    assert_eq!(reply.body["status"], "ready");
    // Once the database is gone, readiness must say so rather than lie.
    app.db.close().await;
    let reply = app.get("/readyz", None).await.expect(503);
    assert_eq!(reply.body["code"], "service_unavailable");
    assert!(
        !reply.text.to_lowercase().contains("sqlx"),
        "no internals: {}",
        reply.text
    );
}

async fn responses_carry_a_request_id(app: TestApp) {
    let reply = app.get("/healthz", None).await;
    let id = reply
        .headers
        .get("x-request-id")
        .expect("request id header");
    assert!(!id.is_empty());
}
