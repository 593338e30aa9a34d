//! `POST /rooms/{id}/run`: decode the run input, start the room's agent, stream its events as SSE.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutError;
use tracing::Instrument;

use super::detached;
use super::record::{self, NewRun, Recorder};
use super::stream;
use super::ApiError;
use crate::agents::{AgentError, ErrorCode, EventOutlet, EventSink, RunFuture, RunOutput};
use crate::agui::{Event, Message, MessageContent, Profile, RunAgentInput};
use crate::auth::{User, UserRun};
use crate::logsafe::Shown;
use crate::state::AppState;
use crate::store::{history, RunEnd, RunStatus};

pub async fn run_room(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    Extension(user): Extension<User>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = decode_input(&app, &room_id, &headers, body)?;
    start_run(app, room_id, input, &user, peer).await
}

/// Checks the room and body and turns them into a run input; shared by every run route.
pub(super) fn decode_input(
    app: &AppState,
    room_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<RunAgentInput, ApiError> {
    if app.room(room_id).is_none() {
        return Err(ApiError::RoomNotFound(room_id.to_owned()));
    }
    if app.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Bodies are not decompressed: a compressed one would read as invalid JSON (and decoding it
    // would need its own size limit).
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let identity = encoding
            .to_str()
            .is_ok_and(|e| e.trim().eq_ignore_ascii_case("identity"));
        if !identity {
            return Err(ApiError::UnsupportedEncoding);
        }
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(app.settings.body_limit_bytes),
        _ if timed_out(&rejection) => ApiError::BodyTimeout(app.settings.body_timeout),
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    parse_input(&body)
}

/// Whether reading the body failed because it did not arrive within the body timeout.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Parses a `RunAgentInput`, or the `{"prompt": "..."}` shorthand, and fills in missing ids.
pub fn parse_input(body: &[u8]) -> Result<RunAgentInput, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::InvalidInput(
            "the body must be a JSON object".into(),
        ));
    };
    if let Some(prompt) = map.remove("prompt") {
        let Value::String(prompt) = prompt else {
            return Err(ApiError::InvalidInput("`prompt` must be a string".into()));
        };
        if map.contains_key("messages") {
            return Err(ApiError::InvalidInput(
                "send either `prompt` or `messages`, not both".into(),
            ));
        }
        let message = Message {
            id: uuid::Uuid::new_v4().to_string(),
            role: "user".into(),
            content: MessageContent::Text(prompt),
            rest: Default::default(),
        };
        map.insert(
            "messages".into(),
            serde_json::to_value([message]).unwrap_or_default(),
        );
    }
    let mut input: RunAgentInput = serde_path_to_error::deserialize(Value::Object(map))
        .map_err(|e| ApiError::InvalidInput(format!("{}: {}", e.path(), e.inner())))?;
    if input.thread_id.is_empty() {
        input.thread_id = uuid::Uuid::new_v4().to_string();
    }
    if input.run_id.is_empty() {
        input.run_id = uuid::Uuid::new_v4().to_string();
    }
    check_id("threadId", &input.thread_id)?;
    check_id("runId", &input.run_id)?;
    if let Some(parent) = &input.parent_run_id {
        check_id("parentRunId", parent)?;
    }
    if input.last_user_text().is_none() {
        return Err(ApiError::NoUserMessage);
    }
    Ok(input)
}

/// Longest thread or run id accepted.
const MAX_ID_BYTES: usize = 128;

/// Ids are echoed in events and logged: short, and of characters that need no escaping anywhere.
/// The id itself is not repeated in the error (it may be huge).
pub(super) fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_.:-".contains(&b);
    if !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(allowed) {
        return Ok(());
    }
    Err(ApiError::InvalidId(format!(
        "`{field}` must be 1 to {MAX_ID_BYTES} characters of A-Z, a-z, 0-9, `_`, `.`, `:` and `-`"
    )))
}

/// Starts the room's agent on `input` and answers with its event stream. With a store, the run is
/// recorded with the input as its client sent it once the agent has accepted it, before its
/// stream starts; the agent gets the thread's earlier turns before a lone new message. `peer`,
/// the client's address, is whose detached budget the run counts against under `auth: none`.
pub(super) async fn start_run(
    app: AppState,
    room_id: String,
    mut input: RunAgentInput,
    user: &User,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    let room = app
        .room(&room_id)
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    let profile = Profile::for_input(&input).map_err(|e| ApiError::InvalidInput(e.to_string()))?;
    let user_run = app
        .user_runs
        .enter(user, 1, app.settings.max_runs_per_user)
        .map_err(ApiError::UserBusy)?;
    let new_run = NewRun::of(&room_id, user, &input);
    if let Some(stored) = &app.stored {
        // A run of this thread that just finished here may not be written yet.
        if app.live.in_thread(&input.thread_id, user.name()) {
            stored.writer.flush(HISTORY_FLUSH).await;
        }
        let thread = stored.store.thread(&room_id, &input.thread_id).await?;
        // Another user's thread is not there for this one (checked again when the run is
        // recorded).
        if thread.as_ref().is_some_and(|t| t.owner != user.name()) {
            return Err(ApiError::ThreadNotFound(input.thread_id));
        }
        let filled = match thread {
            Some(_) => history::fill(stored.store.as_ref(), &mut input).await,
            None => Ok(0),
        };
        match filled {
            Ok(0) => {}
            Ok(n) => tracing::debug!(messages = n, "earlier turns of the thread added"),
            Err(e) => {
                tracing::warn!(error = %e, "store: earlier turns cannot be read; the run goes on without them")
            }
        }
    }
    let client_left = CancellationToken::new();
    let (outlet, response) = stream::channel(
        app.settings.client_buffer_bytes,
        app.settings.keep_alive,
        client_left.clone(),
    );
    let started = Event::RunStarted {
        thread_id: input.thread_id.clone(),
        run_id: input.run_id.clone(),
        parent_run_id: input.parent_run_id.clone(),
    };
    let ids = (input.thread_id.clone(), input.run_id.clone());
    let span = tracing::info_span!(
        target: crate::telemetry::RUN_SPAN_TARGET,
        "run",
        room = %Shown(&room_id),
        run_id = %Shown(&input.run_id),
        thread_id = %Shown(&input.thread_id),
        strategy = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    // What stops the run, so that its queued LLM calls give up their turn the moment it happens
    // rather than when the run's task next runs: a cancel request, or with no detached grace its
    // client leaving.
    let cancel = if app.settings.detached_grace.is_zero() {
        client_left.child_token()
    } else {
        CancellationToken::new()
    };
    let recorder = record::recorder(
        &app,
        &room_id,
        user,
        (&ids.0, &ids.1),
        profile,
        (outlet, cancel),
    )?;
    let accepted = room
        .agent
        .start(input, EventSink::new(recorder.clone()))
        .map_err(|e| match e {
            AgentError::BadInput(msg) => ApiError::BadRequest(msg),
            other => ApiError::BadRequest(other.to_string()),
        });
    // From here on, a run refused, or dropped with its request before it starts, is not left live.
    let mut unstarted = Unstarted {
        app: &app,
        recorder: &recorder,
        recorded: false,
    };
    let accepted = accepted?;
    // The whole run is admitted to the LLM queue before its stream starts, or refused with 429/503.
    let reservation = app
        .llm
        .reserve(accepted.max_calls)
        .inspect_err(|e| tracing::warn!(room = %Shown(&room_id), calls = accepted.max_calls, "run refused: {e}"))
        .map_err(ApiError::from)?;
    // Only a run that starts is recorded (a refused reservation is dropped with this error).
    if let Some(stored) = &app.stored {
        new_run.record(&app, stored, &recorder.token).await?;
        unstarted.recorded = true;
    }
    recorder.meter.start(accepted.strategy, &span);
    let run: RunFuture = Box::pin(
        reservation
            .until(recorder.live.cancel.clone())
            .scope(accepted.run),
    );

    std::mem::forget(unstarted);
    let owner = Owner {
        key: detached::owner_key(user, peer.ip()),
        places: accepted.max_calls,
    };
    let drive = drive(app.clone(), run, started, ids, recorder, client_left, owner);
    app.runs.spawn(counted(user_run, drive).instrument(span));
    Ok(response)
}

/// A run between its live entry and its start: dropped (refused, or its request dropped while
/// the store records it), it leaves no live entry, and a recorded run is ended `cancelled`.
struct Unstarted<'a> {
    app: &'a AppState,
    recorder: &'a Recorder,
    recorded: bool,
}

impl Drop for Unstarted<'_> {
    fn drop(&mut self) {
        if self.recorded {
            self.recorder.finish(self.app, RunStatus::Cancelled);
        } else {
            self.app.live.remove(&self.recorder.run_id);
        }
    }
}

/// `run`, counted against its user until it ends.
async fn counted(_user_run: UserRun, run: impl std::future::Future<Output = ()>) {
    run.await
}

/// How long a run waits for the thread's previous run to be written before reading the history.
const HISTORY_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Whose detached budget a run counts against, and the queue places it holds.
struct Owner {
    key: String,
    places: usize,
}

/// How a run ended, before its last event.
enum Ending {
    Done(Result<RunOutput, AgentError>),
    /// Cancelled: on request, or nobody followed it for the detached grace.
    Cancelled(&'static str),
    /// Its client left and there is no grace: ended as before the store, without a last event.
    Left,
    /// The server is shutting down: the run stops here, unfinished, for another to take up.
    HandedOver,
}

/// Runs the agent between `RUN_STARTED` and exactly one `RUN_FINISHED`/`RUN_ERROR`. When the
/// client leaves or stops reading, the run goes on detached for the grace, within its owner's
/// detached budget, so that a follower can pick it up; if none does (or the grace is 0, or the
/// budget is spent) it is cancelled: the agent's future is dropped and its LLM calls with it.
async fn drive(
    app: AppState,
    run: RunFuture,
    started: Event,
    (thread_id, run_id): (String, String),
    recorder: Arc<Recorder>,
    client_left: CancellationToken,
    owner: Owner,
) {
    tracing::info!("run started");
    recorder.push(started);
    let grace = app.settings.detached_grace;
    let live = recorder.live.clone();
    let mut client = Some(live.follow());
    let client_gone = async {
        tokio::select! {
            _ = client_left.cancelled() => {}
            _ = recorder.client.until_gone(app.settings.client_stall) => {}
        }
    };
    tokio::pin!(client_gone);
    let mut run = AssertUnwindSafe(run).catch_unwind();
    // Held while the run goes on detached: counted against its owner's budget until it ends.
    let mut _detached = None;
    let hand_over = app
        .stored
        .as_ref()
        .is_some_and(|s| s.store.outlives_process());
    let ending = loop {
        // Endings first: a run both stopped and handed an LLM slot stops without making the call.
        tokio::select! {
            biased;
            _ = &mut client_gone, if client.is_some() => {
                client = None;
                if grace.is_zero() {
                    break Ending::Left;
                }
                match app.detached.enter(&owner.key, owner.places, &app.settings) {
                    Some(held) => _detached = Some(held),
                    None => {
                        tracing::info!("client left with its owner's detached runs at their limit");
                        break Ending::Cancelled("the client left and its owner has as many runs going on detached as allowed; it was cancelled");
                    }
                }
                tracing::info!(?grace, "client left; the run goes on detached");
            }
            _ = live.unfollowed_for(grace), if client.is_none() => {
                break Ending::Cancelled("nobody followed this run after its client left; it was cancelled");
            }
            _ = live.cancel.cancelled() => break Ending::Cancelled("this run was cancelled on request"),
            // With a lasting store another replica (or this one restarted) takes the run up.
            _ = app.force_stop.cancelled() => break match hand_over {
                true => Ending::HandedOver,
                false => Ending::Done(Err(AgentError::Failed {
                    code: ErrorCode::Shutdown,
                    message: "the server is shutting down and stopped this run before it finished; retry it".into(),
                })),
            },
            result = &mut run => break Ending::Done(result.unwrap_or_else(|panic| {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(%detail, "agent panicked");
                Err(AgentError::Failed {
                    code: ErrorCode::Internal,
                    message: format!("the agent failed unexpectedly ({detail}); this is a server bug, please report it"),
                })
            })),
        }
    };
    // The agent and its LLM calls stop here, whatever the ending.
    drop(run);
    let cancelled = |message: &str| {
        tracing::info!(message, "run cancelled");
        let last = Event::from(AgentError::Failed {
            code: ErrorCode::Cancelled,
            message: message.into(),
        });
        (RunStatus::Cancelled, last)
    };
    let mut end = RunEnd::default();
    let (status, last) = match ending {
        Ending::Done(Ok(out)) => {
            tracing::info!(activity = out.activity_type, "run finished");
            let result = out.result();
            let usage = (!out.usage.is_empty()).then_some(out.usage);
            end = RunEnd {
                result: serde_json::to_string(&result).ok(),
                usage: usage.as_ref().and_then(|u| serde_json::to_string(u).ok()),
                answer: Some(out.answer),
                llm_requests: i64::try_from(out.llm_requests).ok(),
            };
            let last = Event::RunFinished {
                thread_id,
                run_id,
                result: Some(result),
                usage,
            };
            (RunStatus::Finished, last)
        }
        Ending::Done(Err(e)) => {
            tracing::warn!(code = %e.code(), error = %e, "run failed");
            // Stopped by the server going down, as a crash would have: not the run's own failure.
            let status = if e.code() == ErrorCode::Shutdown {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            (status, Event::from(e))
        }
        Ending::HandedOver => {
            tracing::info!("run handed over unfinished: the server is shutting down");
            recorder.hand_over(&app);
            return;
        }
        Ending::Cancelled(why) => cancelled(why),
        Ending::Left => cancelled("the client left and this run was cancelled"),
    };
    recorder.end(&app, status, last, end).await;
    if client.is_none() {
        return;
    }
    // A finished run's events may still wait for a slow client: it keeps its place among the runs
    // in flight until they are taken, and a client that stalls is let go the same way.
    tokio::select! {
        _ = recorder.client.drained() => {}
        _ = &mut client_gone => {}
        // What is queued still goes out; the server's drain waits for the connection.
        _ = app.force_stop.cancelled() => {}
    }
}
