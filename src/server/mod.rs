//! HTTP: routes, handlers and serving with graceful shutdown.

mod adopt;
mod conn;
pub mod detached;
mod error;
mod follow;
mod health;
mod page;
mod record;
mod replica;
mod rooms;
mod run;
mod soliplex;
mod start;
mod stream;
mod threads;

pub use conn::{bind, raise_nofile_limit};
pub use error::ApiError;
pub use run::parse_input;
pub use start::run;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::logsafe::Shown;
use crate::state::AppState;

pub fn router(app: AppState) -> Router {
    let signed_in = || middleware::from_fn_with_state(app.clone(), sign_in);
    let ops = Router::new()
        .route("/stats", get(health::stats))
        .route("/metrics", get(health::metrics));
    let ops = match app.settings.metrics_auth {
        true => ops.route_layer(signed_in()),
        false => ops,
    };
    // Open: the page and its assets, health, and how to sign in.
    let open = Router::new()
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/login", get(soliplex::login));
    Router::new()
        .route("/rooms", get(rooms::list))
        .route("/rooms/{id}", get(rooms::get))
        .route("/rooms/{id}/run", post(run::run_room))
        .route("/rooms/{id}/threads", get(threads::list))
        .route(
            "/rooms/{id}/threads/{thread_id}",
            get(threads::get).delete(threads::delete),
        )
        .route("/rooms/{id}/runs/{run_id}", get(threads::run))
        .route("/rooms/{id}/runs/{run_id}/cancel", post(threads::cancel))
        .route("/rooms/{id}/runs/{run_id}/events", get(threads::events))
        .route("/api/v1/rooms", get(rooms::list_by_id))
        .route("/api/v1/rooms/{id}", get(rooms::get_by_id))
        .route(
            "/api/v1/rooms/{id}/agui",
            get(soliplex::list_threads).post(soliplex::new_thread),
        )
        .route(
            "/api/v1/rooms/{id}/agui/{thread_id}",
            get(soliplex::get_thread)
                .post(soliplex::new_run)
                .delete(soliplex::delete_thread),
        )
        .route(
            "/api/v1/rooms/{id}/agui/{thread_id}/meta",
            post(soliplex::thread_meta),
        )
        .route(
            "/api/v1/rooms/{id}/agui/{thread_id}/{run_id}",
            get(soliplex::get_run).post(soliplex::run),
        )
        .route(
            "/api/v1/rooms/{id}/agui/{thread_id}/{run_id}/feedback",
            post(soliplex::feedback),
        )
        .route(
            "/api/v1/rooms/{id}/agui/{thread_id}/{run_id}/meta",
            post(soliplex::run_meta),
        )
        .route_layer(signed_in())
        .merge(open)
        .merge(ops)
        .fallback(
            |method: Method, uri: Uri| async move { ApiError::NoRoute(format!("{method} {uri}")) },
        )
        .layer(DefaultBodyLimit::max(app.settings.body_limit_bytes))
        .layer(cors(&app.settings.cors_origins))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let uri = request.uri().path_and_query().map_or("", |p| p.as_str());
                tracing::debug_span!("request", method = %request.method(), uri = %Shown(uri))
            }),
        )
        .with_state(app)
}

/// Lets a request through with its caller as an `Extension<User>`, or answers 401.
async fn sign_in(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let user = app.auth.authenticate(request.headers()).await?;
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        // Browsers never let `*` cover `Authorization`: the requested headers are echoed.
        .allow_headers(AllowHeaders::mirror_request());
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(Any);
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// Serves until `signal` resolves, then drains: new runs are refused, running streams get the
/// grace period to finish; then the runs still going stop here, everything they streamed is
/// stored, and (with a store) they are handed over to another replica, or to this one restarted.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop_replica = CancellationToken::new();
    let replica = replica::spawn(app.clone(), stop_replica.clone());
    let drain_app = app.clone();
    let drain = async move {
        signal.await;
        let app = drain_app;
        let grace = app.settings.shutdown_grace;
        tracing::info!(
            runs = app.runs.len(),
            ?grace,
            "shutting down: draining running streams"
        );
        app.shutdown.cancel();
        app.runs.close();
        let (runs, force) = (app.runs.clone(), app.force_stop.clone());
        tokio::spawn(async move {
            if tokio::time::timeout(grace, runs.wait()).await.is_err() {
                tracing::warn!(
                    runs = runs.len(),
                    "grace period over: stopping running streams"
                );
                force.cancel();
            }
        });
    };
    conn::serve_connections(listener, router(app.clone()), &app.settings, drain).await?;
    // Detached runs have no connection to wait for: they end by the grace too.
    app.runs.wait().await;
    stop_replica.cancel();
    if let Some(replica) = replica {
        // It only stops between two checks; a failed task has nothing left to do.
        let _ = replica.await;
    }
    if let Some(stored) = &app.stored {
        if !stored.writer.flush(FINAL_FLUSH).await {
            tracing::warn!("store: the last writes did not reach the database before exit");
        }
        replica::hand_over(stored).await;
    }
    Ok(())
}

/// How long the exit waits for the store's last writes.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
