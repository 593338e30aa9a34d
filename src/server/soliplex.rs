//! soliplex-compatible routes, so its chat clients (the Flutter frontend and the terminal client)
//! use this server unchanged: `POST /api/v1/rooms/{room}/agui` makes a thread, `/agui/{thread}` a
//! run in it (stored `pending`), and `/agui/{thread}/{run}` runs it (once); threads are listed,
//! read, renamed and deleted, runs read with their events, and feedback kept, all on the store
//! (without one these routes answer 404). Errors are soliplex's `{"detail": ...}`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};

use super::follow;
use super::record::recorded;
use super::run::{decode_input, start_run};
use super::threads::{
    delete_owned, owned_run, owned_thread, run_json, stored, thread_json, THREAD_READ_INPUT_BYTES,
};
use super::ApiError;
use crate::auth::User;
use crate::state::{AppState, Stored};
use crate::store::{
    now_ms, FeedbackAdded, RunRecord, RunStatus, ThreadRecord, MAX_RUNS_PER_THREAD,
};

/// The most threads a room's list shows.
const MAX_LISTED: i64 = 500;

/// An [`ApiError`] with its status, its body in soliplex's shape: `{"detail": message}`.
pub struct Detail(ApiError);

impl<E: Into<ApiError>> From<E> for Detail {
    fn from(e: E) -> Self {
        Detail(e.into())
    }
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        let body = json!({"detail": self.0.to_string()}).to_string();
        let mut response = self.0.into_response();
        *response.body_mut() = Body::from(body);
        response
    }
}

type Answer<T> = Result<T, Detail>;

/// `GET /api/login`: the OIDC systems to sign in with, `{}` when sign-in is off.
pub async fn login(State(app): State<AppState>) -> Json<Value> {
    Json(app.auth.login_systems())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Deserialize, Default)]
struct ThreadMeta {
    name: Option<String>,
    description: Option<String>,
}

/// A new thread's body; other keys (the terminal client's top-level `name`) are ignored.
#[derive(Deserialize, Default)]
struct NewThread {
    #[serde(default)]
    metadata: ThreadMeta,
}

#[derive(Deserialize, Default)]
struct NewRun {
    parent_run_id: Option<String>,
    metadata: Option<Value>,
}

/// The most a thread's or run's metadata, or feedback, may take: they are kept for good, and a
/// name, a label or a comment needs far less.
const SMALL_BODY_BYTES: usize = 16 * 1024;

/// A JSON body of metadata or feedback, or the default when it is empty.
fn body_or_default<T: for<'de> Deserialize<'de> + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if body.len() > SMALL_BODY_BYTES {
        return Err(ApiError::TooLarge(SMALL_BODY_BYTES));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// A run not started yet: its ids, parent and metadata, and an input of its ids and empty state.
fn pending_run(
    thread_id: &str,
    parent_run_id: Option<String>,
    metadata: Option<&Value>,
) -> RunRecord {
    let id = new_id();
    let input = json!({"threadId": thread_id, "runId": id, "parentRunId": parent_run_id,
        "state": {}, "messages": [], "tools": [], "context": [], "forwardedProps": {}});
    RunRecord {
        input: input.to_string(),
        id,
        thread_id: thread_id.to_owned(),
        parent_run_id,
        created: now_ms(),
        finished: None,
        status: RunStatus::Pending,
        result: None,
        usage: None,
        answer: None,
        llm_requests: None,
        events_cut: false,
        input_cut: false,
        metadata: metadata.map(Value::to_string),
    }
}

/// Stores a pending run, with its thread if new.
async fn create_run(
    s: &Stored,
    thread: &ThreadRecord,
    run: &mut RunRecord,
) -> Result<(), ApiError> {
    let outcome = s.store.create_run(thread, run, MAX_RUNS_PER_THREAD).await?;
    recorded(outcome, &thread.id, run)
}

/// A run as soliplex's models read it: its usage summed into one `AGUI_RunUsage`.
fn soliplex_run_json(run: &RunRecord) -> Value {
    let mut body = run_json(run, true);
    body["usage"] = soliplex_usage(&body["usage"], run.llm_requests.unwrap_or(0));
    body
}

/// soliplex's run usage, `{input_tokens, output_tokens, requests, tool_calls}`, from the run's
/// per-model entries and the LLM requests it made; null when it has none.
fn soliplex_usage(usage: &Value, requests: i64) -> Value {
    let Some(entries) = usage.as_array() else {
        return Value::Null;
    };
    let sum = |key: &str| entries.iter().filter_map(|u| u[key].as_u64()).sum::<u64>();
    json!({
        "input_tokens": sum("inputTokens"),
        "output_tokens": sum("outputTokens"),
        "requests": requests,
        "tool_calls": 0,
    })
}

/// A new run as soliplex answers it: with its (empty) `events`.
fn new_run_json(run: &RunRecord) -> Value {
    let mut body = soliplex_run_json(run);
    body["events"] = json!([]);
    body
}

/// A thread's runs keyed by id, in the order given (oldest first, as soliplex's clients list
/// them); a `serde_json::Map` would sort them by id.
pub struct RunsById(Vec<(String, Value)>);

impl Serialize for RunsById {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(id, run)| (id, run)))
    }
}

#[derive(Serialize)]
pub struct ThreadWithRuns {
    #[serde(flatten)]
    thread: Value,
    runs: RunsById,
}

/// `GET /api/v1/rooms/{room}/agui`: the room's threads, newest first.
pub async fn list_threads(
    State(app): State<AppState>,
    Path(room): Path<String>,
    Extension(user): Extension<User>,
) -> Answer<Json<Value>> {
    let s = stored(&app, &room)?;
    let threads = s
        .store
        .threads(&room, user.name(), MAX_LISTED, None)
        .await?;
    let threads: Vec<Value> = threads.iter().map(thread_json).collect();
    Ok(Json(json!({"threads": threads})))
}

/// `POST /api/v1/rooms/{room}/agui`: a thread and its first run.
pub async fn new_thread(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Extension(user): Extension<User>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<ThreadWithRuns>> {
    let s = stored(&app, &room_id)?;
    let NewThread { metadata } = body_or_default(body)?;
    let thread = ThreadRecord {
        id: new_id(),
        room: room_id.clone(),
        owner: user.name().to_owned(),
        created: now_ms(),
        name: metadata.name,
        description: metadata.description,
    };
    let mut run = pending_run(&thread.id, None, None);
    create_run(s, &thread, &mut run).await?;
    let mut body = thread_json(&thread);
    body["run_id"] = json!(run.id);
    Ok(Json(ThreadWithRuns {
        thread: body,
        runs: RunsById(vec![(run.id.clone(), new_run_json(&run))]),
    }))
}

/// `GET /api/v1/rooms/{room}/agui/{thread}`: the thread with its runs (by id), oldest first.
pub async fn get_thread(
    State(app): State<AppState>,
    Path((room, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Answer<Json<ThreadWithRuns>> {
    check_uuid("thread id", &thread_id)?;
    let s = stored(&app, &room)?;
    let thread = owned_thread(s, &room, &thread_id, &user).await?;
    let runs = s
        .store
        .thread_runs(&room, &thread_id, THREAD_READ_INPUT_BYTES)
        .await?;
    let runs = runs.iter().map(|r| (r.id.clone(), soliplex_run_json(r)));
    Ok(Json(ThreadWithRuns {
        thread: thread_json(&thread),
        runs: RunsById(runs.collect()),
    }))
}

/// `DELETE /api/v1/rooms/{room}/agui/{thread}`: 204, then 404.
pub async fn delete_thread(
    State(app): State<AppState>,
    Path((room, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
) -> Answer<StatusCode> {
    check_uuid("thread id", &thread_id)?;
    Ok(delete_owned(&app, &room, thread_id, &user).await?)
}

/// `POST /api/v1/rooms/{room}/agui/{thread}/meta`: renames the thread; 205.
pub async fn thread_meta(
    State(app): State<AppState>,
    Path((room, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<StatusCode> {
    check_uuid("thread id", &thread_id)?;
    let s = stored(&app, &room)?;
    owned_thread(s, &room, &thread_id, &user).await?;
    let meta: ThreadMeta = body_or_default(body)?;
    let (name, description) = (meta.name.as_deref(), meta.description.as_deref());
    if !s
        .store
        .rename_thread(&room, &thread_id, name, description)
        .await?
    {
        return Err(ApiError::ThreadNotFound(thread_id).into());
    }
    Ok(StatusCode::RESET_CONTENT)
}

/// `POST /api/v1/rooms/{room}/agui/{thread}`: a new run in the thread, stored `pending`.
pub async fn new_run(
    State(app): State<AppState>,
    Path((room_id, thread_id)): Path<(String, String)>,
    Extension(user): Extension<User>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Json<Value>> {
    check_uuid("thread id", &thread_id)?;
    let s = stored(&app, &room_id)?;
    let thread = owned_thread(s, &room_id, &thread_id, &user).await?;
    let NewRun {
        parent_run_id,
        metadata,
    } = body_or_default(body)?;
    if let Some(parent) = &parent_run_id {
        check_uuid("parent run id", parent)?;
    }
    let mut run = pending_run(&thread_id, parent_run_id, metadata.as_ref());
    create_run(s, &thread, &mut run).await?;
    let mut body = new_run_json(&run);
    body["room_id"] = json!(room_id);
    Ok(Json(body))
}

/// The caller's run `run_id` of thread `thread_id` in `room`, with the store it is in.
async fn thread_run<'a>(
    app: &'a AppState,
    room: &str,
    thread_id: &str,
    run_id: &str,
    user: &User,
) -> Result<(&'a Stored, RunRecord), ApiError> {
    check_uuid("thread id", thread_id)?;
    check_uuid("run id", run_id)?;
    let s = stored(app, room)?;
    let run = Some(owned_run(s, room, run_id, user).await?)
        .filter(|r| r.thread_id == thread_id)
        .ok_or_else(|| ApiError::RunNotFound(run_id.to_owned()))?;
    Ok((s, run))
}

/// `GET /api/v1/rooms/{room}/agui/{thread}/{run}`: the run with its input and events.
pub async fn get_run(
    State(app): State<AppState>,
    Path((room, thread_id, run_id)): Path<(String, String, String)>,
    Extension(user): Extension<User>,
) -> Answer<Json<Value>> {
    let (s, run) = thread_run(&app, &room, &thread_id, &run_id, &user).await?;
    let events: Vec<Value> = s
        .store
        .events(&run_id, -1, i64::MAX)
        .await?
        .iter()
        .filter_map(|e| serde_json::from_str(&e.data).ok())
        .collect();
    let mut body = soliplex_run_json(&run);
    body["events"] = Value::Array(events);
    Ok(Json(body))
}

/// `POST /api/v1/rooms/{room}/agui/{thread}/{run}/feedback`: `{feedback, reason?}`, kept; 205.
pub async fn feedback(
    State(app): State<AppState>,
    Path((room, thread_id, run_id)): Path<(String, String, String)>,
    Extension(user): Extension<User>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<StatusCode> {
    let body: Value = body_or_default(body)?;
    if body.get("feedback").is_none() {
        return Err(ApiError::BadRequest("the body must have `feedback`".into()).into());
    }
    let (s, _) = thread_run(&app, &room, &thread_id, &run_id, &user).await?;
    match s.store.add_feedback(&run_id, &body.to_string()).await? {
        FeedbackAdded::Added => Ok(StatusCode::RESET_CONTENT),
        FeedbackAdded::NoSuchRun => Err(ApiError::RunNotFound(run_id).into()),
        FeedbackAdded::OverQuota => Err(ApiError::FeedbackQuota.into()),
    }
}

/// A run's metadata as soliplex's `AGUI_RunMetadata` has it.
#[derive(Deserialize, Default)]
struct RunMeta {
    label: Option<String>,
}

/// `POST /api/v1/rooms/{room}/agui/{thread}/{run}/meta`: sets the run's label (none, or `{}`,
/// erases it); 205.
pub async fn run_meta(
    State(app): State<AppState>,
    Path((room, thread_id, run_id)): Path<(String, String, String)>,
    Extension(user): Extension<User>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<StatusCode> {
    let RunMeta { label } = body_or_default(body)?;
    let (s, _) = thread_run(&app, &room, &thread_id, &run_id, &user).await?;
    let metadata = label.map(|label| json!({ "label": label }).to_string());
    if !s
        .store
        .set_run_metadata(&room, &run_id, metadata.as_deref())
        .await?
    {
        return Err(ApiError::RunNotFound(run_id).into());
    }
    Ok(StatusCode::RESET_CONTENT)
}

/// `POST /api/v1/rooms/{room}/agui/{thread}/{run}`: runs it, once.
pub async fn run(
    State(app): State<AppState>,
    Path((room_id, thread_id, run_id)): Path<(String, String, String)>,
    Extension(user): Extension<User>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer<Response> {
    check_uuid("thread id", &thread_id)?;
    check_uuid("run id", &run_id)?;
    let s = stored(&app, &room_id)?;
    // soliplex's client resends the POST with `Last-Event-ID` after a drop: it follows the run
    // rather than starting it again.
    if headers.contains_key("last-event-id") {
        let after = follow::after(&run_id, &headers, None)?;
        return Ok(follow::follow(app, room_id, run_id, &user, after).await?);
    }
    let raw = body.as_ref().ok().cloned();
    let mut input = decode_input(&app, &room_id, &headers, body)?;
    if let Some(raw) = raw {
        check_body_ids(&raw, &thread_id, &run_id)?;
    }
    if input.parent_run_id.is_none() {
        // The parent the run was made with, so that its `RUN_STARTED` names it too.
        let made = s.store.run(&room_id, &run_id).await?;
        input.parent_run_id = made
            .filter(|r| r.status == RunStatus::Pending && r.thread_id == thread_id)
            .and_then(|r| r.parent_run_id);
    }
    input.thread_id = thread_id;
    input.run_id = run_id;
    Ok(start_run(app, room_id, input, &user, peer).await?)
}

/// The ids a run body names, in either case style.
#[derive(Deserialize)]
struct BodyIds {
    #[serde(alias = "thread_id", rename = "threadId")]
    thread_id: Option<String>,
    #[serde(alias = "run_id", rename = "runId")]
    run_id: Option<String>,
}

/// A body naming other ids than its path is refused.
fn check_body_ids(body: &[u8], thread_id: &str, run_id: &str) -> Result<(), ApiError> {
    let Ok(ids) = serde_json::from_slice::<BodyIds>(body) else {
        return Ok(());
    };
    for (field, sent, path) in [
        ("threadId", ids.thread_id, thread_id),
        ("runId", ids.run_id, run_id),
    ] {
        if sent.is_some_and(|sent| sent != path) {
            return Err(ApiError::BadRequest(format!(
                "the body's `{field}` differs from the one in the path"
            )));
        }
    }
    Ok(())
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
