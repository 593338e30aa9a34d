//! soliplex-compatible run routes, so its chat clients can use this server unchanged:
//! `POST /api/v1/rooms/{room}/agui` makes a thread, `/agui/{thread}` a run in it, and
//! `/agui/{thread}/{run}` runs it (once).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::run::{decode_input, start_run};
use super::ApiError;
use crate::state::AppState;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn new_thread(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.room(&room_id)
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    let (thread_id, run_id) = (new_id(), new_id());
    lock(&app).new_thread(&room_id, thread_id.clone(), run_id.clone());
    Ok(Json(
        json!({"room_id": room_id, "thread_id": thread_id, "run_id": run_id,
        "runs": {run_id.clone(): {"run_id": run_id}}}),
    ))
}

pub async fn new_run(
    State(app): State<AppState>,
    Path((room_id, thread_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    app.room(&room_id)
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    let run_id = new_id();
    if !lock(&app).new_run(&room_id, &thread_id, run_id.clone()) {
        return Err(ApiError::ThreadNotFound(thread_id));
    }
    Ok(Json(
        json!({"room_id": room_id, "thread_id": thread_id, "run_id": run_id}),
    ))
}

pub async fn run(
    State(app): State<AppState>,
    Path((room_id, thread_id, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut input = decode_input(&app, &room_id, &headers, body)?;
    if !lock(&app).start_run(&room_id, &thread_id, &run_id) {
        return Err(ApiError::RunIdReused(run_id));
    }
    input.thread_id = thread_id;
    input.run_id = run_id;
    start_run(app, room_id, input)
}

fn lock(app: &AppState) -> std::sync::MutexGuard<'_, crate::state::ThreadBook> {
    // The book holds no invariant a panic elsewhere could break, so a poisoned lock is still usable.
    app.threads
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
