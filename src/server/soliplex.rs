//! soliplex-compatible run routes, so its chat clients can use this server unchanged:
//! `POST /api/v1/rooms/{room}/agui` makes a thread, `/agui/{thread}` a run in it, and
//! `/agui/{thread}/{run}` runs it (once).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::follow;
use super::run::{decode_input, start_run};
use super::ApiError;
use crate::auth::User;
use crate::state::{AppState, BookError, MAX_RUNS_PER_THREAD};

/// `GET /api/login`: the OIDC systems to sign in with, `{}` when sign-in is off.
pub async fn login(State(app): State<AppState>) -> Json<Value> {
    Json(app.auth.login_systems())
}

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
    check_uuid("thread id", &thread_id)?;
    let run_id = new_id();
    lock(&app)
        .new_run(&room_id, &thread_id, run_id.clone())
        .map_err(|e| refusal(e, &thread_id, &run_id))?;
    Ok(Json(
        json!({"room_id": room_id, "thread_id": thread_id, "run_id": run_id}),
    ))
}

pub async fn run(
    State(app): State<AppState>,
    Path((room_id, thread_id, run_id)): Path<(String, String, String)>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_uuid("thread id", &thread_id)?;
    check_uuid("run id", &run_id)?;
    // soliplex's client resends the POST with `Last-Event-ID` after a drop: it follows the run
    // rather than starting it again.
    if headers.contains_key("last-event-id") {
        app.room(&room_id)
            .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
        let after = follow::after(&run_id, &headers, None)?;
        return follow::follow(app, room_id, run_id, &user, after).await;
    }
    let mut input = decode_input(&app, &room_id, &headers, body)?;
    input.thread_id = thread_id.clone();
    input.run_id = run_id.clone();
    let book = app.clone();
    let room = room_id.clone();
    start_run(app, room_id, input, &user, move || {
        lock(&book)
            .start_run(&room, &thread_id, &run_id)
            .map_err(|e| refusal(e, &thread_id, &run_id))
    })
    .await
}

/// soliplex makes every thread and run id a UUID; so do these routes, and nothing else is accepted.
fn check_uuid(what: &str, id: &str) -> Result<(), ApiError> {
    match uuid::Uuid::try_parse(id) {
        Ok(_) if id.len() == 36 => Ok(()),
        _ => Err(ApiError::InvalidId(format!(
            "the {what} must be a UUID such as soliplex routes create"
        ))),
    }
}

fn refusal(e: BookError, thread_id: &str, run_id: &str) -> ApiError {
    match e {
        BookError::NoThread => ApiError::ThreadNotFound(thread_id.to_owned()),
        BookError::RunReused => ApiError::RunIdReused(run_id.to_owned()),
        BookError::ThreadFull => ApiError::TooManyRuns(thread_id.to_owned(), MAX_RUNS_PER_THREAD),
    }
}

fn lock(app: &AppState) -> std::sync::MutexGuard<'_, crate::state::ThreadBook> {
    // The book holds no invariant a panic elsewhere could break, so a poisoned lock is still usable.
    app.threads
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
