//! Building and running the HTTP application: bind from settings, serve until shut down.

use crate::config::{Secret, Settings};
use crate::db::{self, Db};
use crate::http::error::ErrorCode;
use crate::http::routes;
use crate::state::AppState;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request};
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Largest request body accepted: a full usage batch of 1,000 events with metadata fits with room.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A bound, migrated, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Whether `run_until` also runs the billing scheduler and rollup compaction (`serve`).
    background: bool,
}

/// How long the background tasks may take to finish their current step once the server has stopped.
const BACKGROUND_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl Application {
    /// Connects and migrates the database, binds `settings.http.bind` (port 0 picks a free port).
    pub async fn build(settings: Settings, jwt_secret: Secret) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.http.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.http.bind))?;
        Application::build_with_listener(settings, jwt_secret, listener).await
    }

    /// Like [`Application::build`] on a listener bound beforehand (when others must know the address first).
    pub async fn build_with_listener(
        settings: Settings,
        jwt_secret: Secret,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let db = Db::connect(&settings.database.url).await?;
        let applied = db::migrate(&db).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrated");
        }
        let state = AppState::new(db, Arc::new(settings), jwt_secret);
        let router = app(state.clone());
        Ok(Application {
            listener,
            router,
            state,
            background: false,
        })
    }

    /// Also runs the billing scheduler and rollup compaction, stopped with the server.
    pub fn with_background_tasks(mut self) -> Application {
        self.background = true;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            router,
            state,
            background,
        } = self;
        let (trigger, stop) = crate::shutdown::channel();
        let mut tasks = tokio::task::JoinSet::new();
        if background {
            tasks.spawn(crate::billing::scheduler::run(state.clone(), stop.clone()));
            tasks.spawn(crate::usage::compact::run(
                state.db.clone(),
                state.settings.billing.timezone,
                stop.clone(),
            ));
            tasks.spawn(crate::usage::fold::run(state.db.clone(), stop.clone()));
            if let Some(url) = &state.settings.platform.database_url {
                // A bad URL is refused when settings load; a platform that is down is retried inside.
                match crate::platform::Source::connect_lazy(url.expose()) {
                    Ok(source) => {
                        let opts = crate::platform::Options::new(state.settings.platform.lookback);
                        tasks.spawn(crate::platform::follow::run(
                            state.clone(),
                            source,
                            opts,
                            stop.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the platform's database is not followed")
                    }
                }
            }
        }
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        // No request is in flight now: the tasks finish their current step, and the work requests left
        // running (billing runs, Stripe writes and their records) theirs, within a bound. A run stops
        // starting tenants and records what it did; one cut short all the same is continued by the next
        // (every step is idempotent, and its lease expires for another replica's scheduler).
        trigger.fire();
        let drained = tokio::time::timeout(BACKGROUND_GRACE, async {
            tokio::join!(
                async { while tasks.join_next().await.is_some() {} },
                state.detached.stop_and_wait()
            )
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                detached = state.detached.running(),
                "background tasks still busy after the grace period; stopping them"
            );
            tasks.abort_all();
        }
        state.usage.shutdown();
        state.db.close().await;
        served?;
        Ok(())
    }
}

/// The router with its middleware: request ids, a span per request, CORS, body limit, timeout.
pub fn app(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        let request_id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // The path only, never the query string: it may carry return URLs or other caller data.
        tracing::info_span!("request", method = %req.method(), route = %route, request_id = %request_id)
    });
    let pages = crate::http::web::router(&state.settings, &routes::openapi::DOCUMENT_JSON);
    let cors = crate::http::cors::layer(&state.settings.http.cors_allowed_origins);
    let allowed = crate::http::cors::Allowed::new(&state.settings.http.cors_allowed_origins);
    let mut router = routes::router()
        .merge(pages)
        .route_layer(axum::middleware::from_fn(record_metrics))
        .fallback(not_found)
        .with_state(state);
    if let Some(cors) = cors {
        // Around every route and the fallback, so preflights are answered before any method check.
        router = router
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(
                allowed,
                crate::http::cors::strip_for_strangers,
            ));
    }
    router.layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                MAX_BODY_BYTES,
            ))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(60),
            )),
    )
}

/// Counts every request by method, matched route pattern (never the raw path) and status.
async fn record_metrics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    crate::metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// No route: under `/api/` the contract's JSON error, elsewhere a plain 404.
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path().starts_with("/api/") {
        crate::http::error::ApiError::not_found(
            ErrorCode::NotFound,
            format!(
                "There is no {} in this API; /api/openapi.json lists every route.",
                uri.path()
            ),
        )
        .into_response()
    } else {
        (axum::http::StatusCode::NOT_FOUND, "Not found").into_response()
    }
}
