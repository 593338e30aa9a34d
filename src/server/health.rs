use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the rooms are loaded, the server is not shutting down and the LLM backend answers.
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let rooms = app.rooms().len();
    let reason = if app.shutdown.is_cancelled() {
        Some("the server is shutting down".to_owned())
    } else {
        app.llm.health().await.err().map(|e| e.to_string())
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "rooms": rooms, "llm": "ok"})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "rooms": rooms, "reason": reason})),
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
