use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiError;
use crate::config::LLM_UNREACHABLE_HINT;
use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the rooms are loaded, the server is not shutting down, the LLM backend answers and
/// the store (if any) takes writes. Streams go on while the store fails; this only tells load
/// balancers to send new runs elsewhere.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let rooms = app.rooms().len();
    let store_error = app.stored.as_ref().and_then(|s| s.writer.health.error());
    let store = match (&app.stored, &store_error) {
        (None, _) => "none".to_owned(),
        (Some(_), None) => "ok".to_owned(),
        (Some(_), Some(e)) => format!("failing: {e}"),
    };
    let llm = app.llm.health().await.map_err(|e| e.to_string());
    let reason = if app.shutdown.is_cancelled() {
        Some("the server is shutting down".to_owned())
    } else if let Some(e) = store_error {
        Some(format!(
            "the database cannot be written ({e}); streams go on, writes are retried"
        ))
    } else {
        llm.clone().err()
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "rooms": rooms, "llm": "ok", "store": store})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "rooms": rooms, "reason": reason, "llm": llm_state(&llm), "store": store}),
            ),
        ),
    }
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
