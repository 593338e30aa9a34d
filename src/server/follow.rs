//! Following a run: its stored events after a position, then its live ones until its last, each
//! once and in order. A run going on in this process is followed from its in-memory tail; one
//! going on in another process (PostgreSQL shared by replicas) from the store, read again when
//! that process announces new events or at the latest every [`POLL_EVERY`], with keep-alive
//! comments while nothing comes; a finished one is replayed from the store. Every stream ends
//! when the server's shutdown grace is over, so that its client reconnects elsewhere.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Deserialize;

use super::threads::owned_run;
use super::ApiError;
use crate::agents::{AgentError, ErrorCode};
use crate::agui::Event;
use crate::auth::User;
use crate::state::{AppState, Stored};
use crate::store::{Follower, LiveRun, RunStatus, Since, StoreError};

/// How often a run going on in another process is looked for in the store without a notification
/// (SQLite; a notification lost while its connection was down): the most a follower there lags
/// behind, on top of the writer's batching.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The same with notifications, which wake the follower as soon as the events are stored.
const NOTIFIED_POLL: Duration = Duration::from_secs(1);
/// Events read from the store at once.
const BATCH: i64 = 500;
/// How long a follower waits for the writer to store events no longer kept in memory before
/// taking them as cut from the log.
const WRITER_LAG: Duration = Duration::from_millis(25);
const LAG_WAITS: u32 = 80;
const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

/// `?after=`: the last sequence number the client has (or a whole `Last-Event-ID`).
#[derive(Deserialize)]
pub struct After {
    pub after: Option<String>,
}

/// The position to follow from: `Last-Event-ID` (`<run_id>:<seq>`), else `?after=`, else the
/// start (-1). An id of another run, or not a number, is refused.
pub fn after(run_id: &str, headers: &HeaderMap, query: Option<String>) -> Result<i64, ApiError> {
    let header = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".into()))?
                .to_owned(),
        ),
        None => None,
    };
    let Some(text) = header.or(query) else {
        return Ok(-1);
    };
    let text = text.trim();
    let seq = match text.rsplit_once(':') {
        Some((id, seq)) if id == run_id => seq,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "Last-Event-ID names another run; use an id this run's stream sent".into(),
            ))
        }
        None => text,
    };
    seq.parse::<u32>().map(i64::from).map_err(|_| {
        ApiError::BadRequest(format!(
            "Last-Event-ID must be `{run_id}:<number>` as sent in the stream's `id:` lines"
        ))
    })
}

/// One SSE frame: the event's JSON with its `id: <run_id>:<seq>`.
pub fn frame(run_id: &str, seq: i64, json: &str) -> Bytes {
    Bytes::from(format!("id: {run_id}:{seq}\ndata: {json}\n\n"))
}

/// Whether an event's JSON is the run's last one.
pub fn is_last(json: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_str::<Kind>(json).is_ok_and(|k| matches!(k.kind, "RUN_FINISHED" | "RUN_ERROR"))
}

/// Answers with the run's events after `after`; 404 if this process and the store know no such
/// run in `room`, 409 if it has not started.
pub async fn follow(
    app: AppState,
    room: String,
    run_id: String,
    user: &User,
    after: i64,
) -> Result<Response, ApiError> {
    let live = app
        .live
        .get(&run_id)
        .filter(|l| l.room == room && l.owner == user.name());
    if live.is_none() {
        let stored = app
            .stored
            .as_ref()
            .ok_or_else(|| ApiError::RunNotFound(run_id.clone()))?;
        let run = owned_run(stored, &room, &run_id, user).await?;
        // Made but not started: following it would be an empty stream that never ends.
        if run.status == RunStatus::Pending {
            return Err(ApiError::NotStarted(run_id));
        }
    }
    let remote = match (&live, &app.stored) {
        (None, Some(stored)) => stored.store.notices().map(|n| n.watch(&run_id)),
        _ => None,
    };
    let mut state = Follow {
        keep_alive: app.settings.keep_alive,
        quiet_since: Instant::now(),
        remote,
        app,
        room,
        run_id,
        pos: after,
        live: None,
        _follower: None,
        done: false,
        lag_waits: 0,
    };
    if let Some(live) = live {
        state.attach(live);
    }
    Ok(sse(futures::stream::unfold(state, |mut s| async move {
        s.next()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), s))
    })))
}

/// An SSE response over `body`.
pub fn sse<S>(body: S) -> Response
where
    S: futures::TryStream + Send + 'static,
    S::Ok: Into<Bytes>,
    S::Error: Into<axum::BoxError>,
{
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

struct Follow {
    app: AppState,
    room: String,
    run_id: String,
    /// The last sequence number sent.
    pos: i64,
    live: Option<Arc<LiveRun>>,
    _follower: Option<Follower>,
    done: bool,
    lag_waits: u32,
    keep_alive: Duration,
    /// When the last bytes went to the client.
    quiet_since: Instant,
    /// Marked when another process stores events of this run.
    remote: Option<watch::Receiver<()>>,
}

impl Follow {
    fn attach(&mut self, live: Arc<LiveRun>) {
        self._follower = Some(live.follow());
        self.live = Some(live);
    }

    /// The next chunk of frames (or a keep-alive comment); `None` once the run's last event went.
    async fn next(&mut self) -> Option<Bytes> {
        while !self.done {
            if let Some(live) = self.live.clone() {
                let mut changed = live.watch();
                match live.since(self.pos) {
                    Since::Events(events, _) if !events.is_empty() => {
                        return Some(self.frames(events.iter().map(|(s, d)| (*s, &**d))));
                    }
                    Since::Events(_, true) => return None,
                    Since::Events(_, false) => {
                        let wait = tokio::time::timeout(self.keep_alive, changed.changed());
                        tokio::select! {
                            waited = wait => if waited.is_err() {
                                return Some(self.keep_alive_comment());
                            },
                            _ = self.app.force_stop.cancelled() => return None,
                        }
                        continue;
                    }
                    Since::Gap => {}
                }
            }
            match self.read_store().await {
                Ok(Some(chunk)) => return Some(chunk),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "store: cannot read a run's events");
                    return Some(self.error(
                        ErrorCode::Store,
                        "the run's events cannot be read; retry in a moment",
                    ));
                }
            }
        }
        None
    }

    /// Events from the store, or `None` after waiting when there are none yet.
    async fn read_store(&mut self) -> Result<Option<Bytes>, StoreError> {
        let Some(stored) = self.app.stored.clone() else {
            self.done = true;
            return Ok(None);
        };
        if let Some(chunk) = self.stored_events(&stored).await? {
            self.lag_waits = 0;
            return Ok(Some(chunk));
        }
        if let Some(live) = &self.live {
            // Kept neither here nor (yet) in the store: the writer is behind, or the log was cut.
            self.lag_waits += 1;
            if self.lag_waits > LAG_WAITS {
                self.pos = live.oldest().map_or(self.pos, |seq| seq - 1);
                self.lag_waits = 0;
            } else {
                tokio::time::sleep(WRITER_LAG).await;
            }
            return Ok(None);
        }
        if let Some(live) = self.app.live.get(&self.run_id) {
            self.attach(live);
            return Ok(None);
        }
        let status = stored
            .store
            .run(&self.room, &self.run_id)
            .await?
            .map(|r| r.status);
        if status != Some(RunStatus::Running) {
            // Its last events may have been written between the two reads.
            if let Some(chunk) = self.stored_events(&stored).await? {
                return Ok(Some(chunk));
            }
        }
        match status {
            // Going on in another process.
            Some(RunStatus::Running) => {
                if self.quiet_since.elapsed() >= self.keep_alive {
                    return Ok(Some(self.keep_alive_comment()));
                }
                self.wait_remote().await;
                Ok(None)
            }
            Some(RunStatus::Interrupted) => Ok(Some(self.error(
                ErrorCode::Interrupted,
                "the server stopped while this run was going; it was interrupted and its events \
                 up to then were replayed; start a new run",
            ))),
            // Finished, failed or cancelled (their last event was sent), or deleted.
            _ => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// The next stored events as frames, if there are any.
    async fn stored_events(&mut self, stored: &Stored) -> Result<Option<Bytes>, StoreError> {
        let events = stored.store.events(&self.run_id, self.pos, BATCH).await?;
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.frames(events.iter().map(|e| (e.seq, e.data.as_str()))),
        ))
    }

    /// Waits for another process to store more of the run's events: until it announces them, the
    /// next poll, the next keep-alive, or the end of the shutdown grace (which ends the stream).
    async fn wait_remote(&mut self) {
        let poll = match self.remote {
            Some(_) => NOTIFIED_POLL,
            None => POLL_EVERY,
        };
        let until = poll.min(self.keep_alive.saturating_sub(self.quiet_since.elapsed()));
        let announced = async {
            match &mut self.remote {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(until) => {}
            heard = announced => if !heard {
                self.remote = None;
            },
            _ = self.app.force_stop.cancelled() => self.done = true,
        }
    }

    fn keep_alive_comment(&mut self) -> Bytes {
        self.quiet_since = Instant::now();
        Bytes::from_static(KEEP_ALIVE)
    }

    fn frames<'a>(&mut self, events: impl Iterator<Item = (i64, &'a str)>) -> Bytes {
        self.quiet_since = Instant::now();
        let mut out = Vec::new();
        for (seq, json) in events {
            out.extend_from_slice(&frame(&self.run_id, seq, json));
            self.pos = seq;
            if is_last(json) {
                self.done = true;
                break;
            }
        }
        Bytes::from(out)
    }

    /// A closing `RUN_ERROR` that is not in the run's log: it has no id, since every id names
    /// one event of the log (a client resuming from it would skip the real one).
    fn error(&mut self, code: ErrorCode, message: &str) -> Bytes {
        self.done = true;
        let event = Event::from(AgentError::Failed {
            code,
            message: message.to_owned(),
        });
        let json = serde_json::to_string(&event).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
    }
}
