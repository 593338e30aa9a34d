use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

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
    let reason = if app.shutdown.is_cancelled() {
        Some("the server is shutting down".to_owned())
    } else if let Some(e) = store_error {
        Some(format!(
            "the database cannot be written ({e}); streams go on, writes are retried"
        ))
    } else {
        app.llm.health().await.err().map(|e| e.to_string())
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "rooms": rooms, "llm": "ok", "store": store})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "rooms": rooms, "reason": reason, "store": store})),
        ),
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
