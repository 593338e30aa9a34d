use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::config::LLM_UNREACHABLE_HINT;
use crate::state::{AppState, Stored};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// One named readiness check: `None` when it passes, else why not (for the caller: no database
/// text, URL or path).
struct Check {
    name: &'static str,
    failed: Option<String>,
}

/// Ready when the rooms are loaded, the server is not shutting down, the LLM backend answers and
/// the store (if any) takes writes: a write committed on one connection is read back from
/// another, the SQLite file is still the one opened, and the writer is not failing. Streams go
/// on while the store fails; this only tells load balancers to send new runs elsewhere. Each
/// check is one entry of `checks`.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let rooms = app.rooms().len();
    let mut checks = vec![Check {
        name: "shutdown",
        failed: app
            .shutdown
            .is_cancelled()
            .then(|| "the server is shutting down".to_owned()),
    }];
    let store = match &app.stored {
        None => "none",
        Some(stored) => {
            let failed = store_fault(stored).await;
            let state = if failed.is_some() { "failing" } else { "ok" };
            checks.push(Check {
                name: "store",
                failed,
            });
            state
        }
    };
    let llm = app.llm.health().await.map_err(|e| e.to_string());
    checks.push(Check {
        name: "llm",
        failed: llm.clone().err(),
    });
    let reason = checks.iter().find_map(|c| c.failed.clone());
    let listed: Vec<Value> = checks
        .iter()
        .map(|c| match &c.failed {
            None => json!({"name": c.name, "ok": true}),
            Some(reason) => json!({"name": c.name, "ok": false, "reason": reason}),
        })
        .collect();
    match reason {
        None => (
            StatusCode::OK,
            Json(
                json!({"status": "ready", "rooms": rooms, "llm": "ok", "store": store,
                "checks": listed}),
            ),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "rooms": rooms, "reason": reason, "store": store,
                "llm": llm_state(&llm), "checks": listed}),
            ),
        ),
    }
}

/// Why the store is not ready, if it is not; the database's own words go to the log.
async fn store_fault(stored: &Stored) -> Option<String> {
    if let Err(e) = stored.probe.check(&stored.store).await {
        tracing::warn!(error = %e, "readyz: the store probe failed");
        return Some(
            "the database cannot be written, or the write is not seen from another connection; \
             streams go on, writes are retried"
                .to_owned(),
        );
    }
    stored.writer.health.error().map(|_| {
        "the database refuses the writer's batches; streams go on, writes are retried".to_owned()
    })
}

/// `"ok"`, or why the LLM backend does not answer (naming it by its label, never its URL) with
/// what to do about it, which the page shows.
fn llm_state(llm: &Result<(), String>) -> Value {
    match llm {
        Ok(()) => json!("ok"),
        Err(e) => json!({"error": e, "hint": LLM_UNREACHABLE_HINT}),
    }
}

/// Live counters: runs in flight and the LLM limiter's slots, for dashboards and leak checks.
pub async fn stats(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "runs_in_flight": app.runs.len(),
        "shutting_down": app.shutdown.is_cancelled(),
        "llm": app.llm.load(),
    }))
}

/// `GET /metrics`: the Prometheus text format. Gauges the host reads from elsewhere are set now.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let Some(handle) = &app.metrics else {
        return ApiError::NoRoute("GET /metrics: metrics are off (the `metrics` setting)".into())
            .into_response();
    };
    let load = app.llm.load();
    metrics::gauge!("roomhost_runs_in_flight").set(app.runs.len() as f64);
    metrics::gauge!("roomhost_llm_reserved_places").set(load.reserved as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
