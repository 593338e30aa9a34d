//! The store's routes: a room's threads, a thread's runs, a run, deleting a thread, cancelling a
//! run and following a run's events (replay, then live).

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::follow;
use super::run::check_id;
use super::ApiError;
use crate::auth::User;
use crate::state::{AppState, Stored};
use crate::store::{RunRecord, RunStatus, ThreadRecord};

/// The most bytes of run inputs a thread read carries: the newest run's input always, older ones
/// while the newer ones add up to less (a cut run has `run_input: null`, `run_input_cut: true`;
/// `GET` the run for it).
pub(super) const THREAD_READ_INPUT_BYTES: i64 = 4 * 1024 * 1024;

/// Threads per page unless `limit` says otherwise, and the most it may say.
const PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

pub(super) fn stored<'a>(app: &'a AppState, room: &str) -> Result<&'a Stored, ApiError> {
    app.room(room)
        .ok_or_else(|| ApiError::RoomNotFound(room.to_owned()))?;
    app.stored.as_ref().ok_or(ApiError::NoStore)
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    /// A thread id: the page starts after it.
    before: Option<String>,
}

/// `GET /rooms/{room}/threads?limit=&before=`: newest first; `next` is the `before` of the next
/// page.
pub async fn list(
    State(app): State<AppState>,
    Path(room): Path<String>,
    Query(page): Query<Page>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, ApiError> {
    let s = stored(&app, &room)?;
    let limit = page.limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be 1 to {MAX_PAGE}"
        )));
    }
    let before = match &page.before {
        Some(id) => {
            check_id("before", id)?;
            let t = owned_thread(s, &room, id, &user).await?;
            Some((t.created, t.id))
        }
        None => None,
    };
    let threads = s.store.threads(&room, user.name(), limit, before).await?;
    let next = (threads.len() as i64 == limit)
        .then(|| threads.last().map(|t| t.id.clone()))
        .flatten();
    let threads: Vec<Value> = threads.iter().map(thread_json).collect();
    Ok(Json(json!({"threads": threads, "next": next})))
}

/// `GET /rooms/{room}/threads/{thread}`: the thread with its runs, oldest first.
pub async fn get(
    State(app): State<AppState>,
    Path((room, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, ApiError> {
    let s = stored(&app, &room)?;
    check_id("thread id", &thread_id)?;
    let thread = owned_thread(s, &room, &thread_id, &user).await?;
    let runs = s
        .store
        .thread_runs(&room, &thread_id, THREAD_READ_INPUT_BYTES)
        .await?;
    let mut body = thread_json(&thread);
    body["runs"] = runs.iter().map(|r| run_json(r, false)).collect();
    Ok(Json(body))
}

/// `DELETE /rooms/{room}/threads/{thread}`: the thread, its runs and their events; its runs
/// still going are cancelled.
pub async fn delete(
    State(app): State<AppState>,
    Path((room, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Result<StatusCode, ApiError> {
    check_id("thread id", &thread_id)?;
    delete_owned(&app, &room, thread_id, &user).await
}

/// Deletes the caller's thread with its runs, cancelling those going on here: 204, then 404.
pub(super) async fn delete_owned(
    app: &AppState,
    room: &str,
    thread_id: String,
    user: &User,
) -> Result<StatusCode, ApiError> {
    let s = stored(app, room)?;
    owned_thread(s, room, &thread_id, user).await?;
    app.live.remove_thread(&thread_id);
    if !s.store.delete_thread(room, &thread_id).await? {
        return Err(ApiError::ThreadNotFound(thread_id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /rooms/{room}/runs/{run}`: its input, result, usage and status.
pub async fn run(
    State(app): State<AppState>,
    Path((room, run_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, ApiError> {
    let s = stored(&app, &room)?;
    check_id("run id", &run_id)?;
    let run = owned_run(s, &room, &run_id, &user).await?;
    Ok(Json(run_json(&run, true)))
}

/// `POST /rooms/{room}/runs/{run}/cancel`: stops a run going on in this process at once, or asks
/// the replica running it to.
pub async fn cancel(
    State(app): State<AppState>,
    Path((room, run_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Result<Response, ApiError> {
    check_id("run id", &run_id)?;
    app.room(&room)
        .ok_or_else(|| ApiError::RoomNotFound(room.clone()))?;
    let mine = |l: &std::sync::Arc<crate::store::LiveRun>| l.room == room && l.owner == user.name();
    if let Some(live) = app.live.get(&run_id).filter(mine) {
        // A run that ended stays among the live ones a little while for late followers.
        if live.has_ended() {
            return Err(ApiError::AlreadyEnded(run_id));
        }
        live.cancel.cancel();
        let body = json!({"run_id": run_id, "status": "cancelling"});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let s = stored(&app, &room)?;
    let run = owned_run(s, &room, &run_id, &user).await?;
    // Going on in another replica: its owner is told and cancels it.
    if run.status == RunStatus::Running && s.store.request_cancel(&run_id).await? {
        let body = json!({"run_id": run_id, "status": "cancelling"});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    Err(ApiError::NotRunningHere(run_id, run.status.as_str()))
}

/// `GET /rooms/{room}/runs/{run}/events`: the run's events after `Last-Event-ID` (or `?after=`),
/// then live until its last one.
pub async fn events(
    State(app): State<AppState>,
    Path((room, run_id)): Path<(String, String)>,
    Query(after): Query<follow::After>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id("run id", &run_id)?;
    app.room(&room)
        .ok_or_else(|| ApiError::RoomNotFound(room.clone()))?;
    let after = follow::after(&run_id, &headers, after.after)?;
    follow::follow(app, room, run_id, &user, after).await
}

/// The thread, if it is in `room` and `user`'s: another user's thread is not there for them.
pub(super) async fn owned_thread(
    s: &Stored,
    room: &str,
    thread_id: &str,
    user: &User,
) -> Result<ThreadRecord, ApiError> {
    s.store
        .thread(room, thread_id)
        .await?
        .filter(|t| t.owner == user.name())
        .ok_or_else(|| ApiError::ThreadNotFound(thread_id.to_owned()))
}

/// The run, if its thread is in `room` and `user`'s.
pub(super) async fn owned_run(
    s: &Stored,
    room: &str,
    run_id: &str,
    user: &User,
) -> Result<RunRecord, ApiError> {
    let not_found = || ApiError::RunNotFound(run_id.to_owned());
    let run = s.store.run(room, run_id).await?.ok_or_else(not_found)?;
    owned_thread(s, room, &run.thread_id, user)
        .await
        .map_err(|_| not_found())?;
    Ok(run)
}

/// A thread; its `metadata` is `null` when it was given neither name nor description, as
/// soliplex's server answers (its terminal client would list it as "None:" otherwise).
pub(super) fn thread_json(t: &ThreadRecord) -> Value {
    let metadata = match (&t.name, &t.description) {
        (None, None) => Value::Null,
        (name, description) => json!({"name": name, "description": description}),
    };
    json!({
        "thread_id": t.id,
        "room_id": t.room,
        "created": time(t.created),
        "metadata": metadata,
    })
}

/// A run; with its input, result and usage when `full`.
pub(super) fn run_json(r: &RunRecord, full: bool) -> Value {
    let parse = |text: Option<&str>| {
        text.and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    let mut body = json!({
        "run_id": r.id,
        "thread_id": r.thread_id,
        "parent_run_id": r.parent_run_id,
        "status": r.status.as_str(),
        "created": time(r.created),
        "finished": r.finished.map(time),
        "events_cut": r.events_cut,
        "metadata": parse(r.metadata.as_deref()),
    });
    if full {
        body["run_input"] = if r.input_cut {
            body["run_input_cut"] = Value::Bool(true);
            Value::Null
        } else {
            parse(Some(&r.input))
        };
        body["result"] = parse(r.result.as_deref());
        body["usage"] = parse(r.usage.as_deref());
    }
    body
}

/// Unix milliseconds as RFC 3339 (what soliplex shows for `created`).
pub(super) fn time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
