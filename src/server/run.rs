//! `POST /rooms/{id}/run`: decode the run input, start the room's agent, stream its events as SSE.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ApiError;
use crate::agents::{AgentError, EventSink, RunFuture};
use crate::agui::{Event, Message, MessageContent, RunAgentInput};
use crate::state::AppState;

/// Events buffered between the agent and a slow client before the agent waits.
const EVENT_BUFFER: usize = 256;

pub async fn run_room(
    State(app): State<AppState>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = decode_input(&app, &room_id, &headers, body)?;
    start_run(app, room_id, input)
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
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(app.settings.body_limit_bytes),
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    parse_input(&body)
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
    if input.last_user_text().is_none() {
        return Err(ApiError::NoUserMessage);
    }
    Ok(input)
}

/// Starts the room's agent on `input` and answers with its event stream.
pub(super) fn start_run(
    app: AppState,
    room_id: String,
    input: RunAgentInput,
) -> Result<Response, ApiError> {
    let room = app
        .room(&room_id)
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let started = Event::RunStarted {
        thread_id: input.thread_id.clone(),
        run_id: input.run_id.clone(),
        parent_run_id: input.parent_run_id.clone(),
    };
    let ids = (input.thread_id.clone(), input.run_id.clone());
    let span = tracing::info_span!(
        "run",
        room = %room_id,
        run_id = %input.run_id,
        thread_id = %input.thread_id,
        strategy = tracing::field::Empty,
    );
    let accepted = room
        .agent
        .start(input, EventSink::new(tx.clone()))
        .map_err(|e| match e {
            AgentError::BadInput(msg) => ApiError::BadRequest(msg),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    // The whole run is admitted to the LLM queue before its stream starts, or refused with 429/503.
    let reservation = app.llm.reserve(accepted.max_calls).inspect_err(
        |e| tracing::warn!(room = %room_id, calls = accepted.max_calls, "run refused: {e}"),
    )?;
    let run: RunFuture = Box::pin(reservation.scope(accepted.run));

    let cancel = CancellationToken::new();
    app.runs
        .spawn(drive(app.clone(), run, started, ids, tx, cancel.clone()).instrument(span));

    let keep_alive = KeepAlive::new()
        .interval(app.settings.keep_alive)
        .text("keep-alive");
    let stream = event_stream(rx, cancel);
    Ok((
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(stream).keep_alive(keep_alive),
    )
        .into_response())
}

/// The response body: the run's events as SSE frames. Dropping it (the client went away) cancels
/// the run.
fn event_stream(
    rx: mpsc::Receiver<Event>,
    cancel: CancellationToken,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    let guard = cancel.drop_guard();
    ReceiverStream::new(rx).map(move |event| {
        let _keep = &guard;
        // Our events always serialize; should one ever not, the client still gets a valid event.
        Ok(sse::Event::default().json_data(&event).unwrap_or_else(|e| {
            let error = Event::RunError {
                message: format!("an event could not be encoded ({e}); this is a server bug"),
                code: Some("internal".into()),
            };
            sse::Event::default().data(serde_json::to_string(&error).unwrap_or_default())
        }))
    })
}

/// Runs the agent between `RUN_STARTED` and exactly one `RUN_FINISHED`/`RUN_ERROR`, unless the
/// client leaves, in which case the agent's future is dropped and its LLM calls with it.
async fn drive(
    app: AppState,
    run: RunFuture,
    started: Event,
    (thread_id, run_id): (String, String),
    tx: mpsc::Sender<Event>,
    cancel: CancellationToken,
) {
    tracing::info!("run started");
    if tx.send(started).await.is_err() {
        return;
    }
    let outcome = tokio::select! {
        _ = cancel.cancelled() => None,
        _ = tx.closed() => None,
        _ = app.force_stop.cancelled() => Some(Err(AgentError::Failed {
            code: "shutdown",
            message: "the server is shutting down and stopped this run before it finished; retry it".into(),
        })),
        result = AssertUnwindSafe(run).catch_unwind() => Some(result.unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%detail, "agent panicked");
            Err(AgentError::Failed {
                code: "internal",
                message: format!("the agent failed unexpectedly ({detail}); this is a server bug, please report it"),
            })
        })),
    };
    let last = match outcome {
        None => {
            tracing::info!("client disconnected; run cancelled");
            return;
        }
        Some(Ok(out)) => {
            tracing::info!("run finished");
            Event::RunFinished {
                thread_id,
                run_id,
                result: out.result,
                usage: (!out.usage.is_empty()).then_some(out.usage),
            }
        }
        Some(Err(e)) => {
            tracing::warn!(code = e.code(), error = %e, "run failed");
            Event::RunError {
                message: e.to_string(),
                code: Some(e.code().to_owned()),
            }
        }
    };
    let _ = tx.send(last).await;
}
