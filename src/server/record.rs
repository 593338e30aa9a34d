//! Where a run's events go: shaped for the profile of the client that started the run, numbered,
//! handed to the store's writer, kept in the run's live tail for followers, and queued for that
//! client (if it is still there), in that one order. Followers and replays get the same stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::follow::frame;
use super::stream::RunOutlet;
use super::ApiError;
use crate::agents::{AgentError, ErrorCode, EventOutlet};
use crate::agui::{Event, Profile, RunAgentInput, Shaper};
use crate::auth::User;
use crate::state::{AppState, Stored};
use crate::store::{
    now_ms, LiveRun, RunEnd, RunLog, RunRecord, RunStatus, Started, ThreadRecord, Write,
};
use crate::telemetry::RunMeter;

/// How long starting a run waits for the database to record it before leaving it to the writer.
const START_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest thread name taken from its first message, in characters.
const NAME_CHARS: usize = 80;
/// How long a finished run stays among the live ones, for a follower that comes right after.
const LINGER: Duration = Duration::from_secs(5);

pub(super) struct Recorder {
    pub(super) run_id: String,
    log: Mutex<(Shaper, RunLog)>,
    pub(super) live: Arc<LiveRun>,
    pub(super) client: Arc<RunOutlet>,
    pub(super) meter: RunMeter,
}

impl EventOutlet for Recorder {
    fn push(&self, event: Event) {
        self.meter.observe(&event);
        // One lock: the sequence numbers go to the tail and the client in the order they were given.
        let mut guard = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let (shaper, log) = &mut *guard;
        shaper.push(event, std::time::Instant::now(), &mut |e| {
            self.record(log, &e)
        });
    }
}

impl Recorder {
    fn record(&self, log: &mut RunLog, event: &Event) {
        let json = serde_json::to_string(event).unwrap_or_else(|e| {
            let error = Event::from(AgentError::Failed {
                code: ErrorCode::Internal,
                message: format!("an event could not be encoded ({e}); this is a server bug"),
            });
            serde_json::to_string(&error).unwrap_or_default()
        });
        let seq = log.record(&json);
        self.live.push(seq, Arc::from(json.as_str()));
        self.client.push_frame(frame(&self.run_id, seq, &json));
    }

    /// Records how the run ended and lets its followers finish.
    pub(super) fn finish(&self, app: &AppState, status: RunStatus, end: RunEnd) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .finish(status, end);
        self.live.end();
        let (app, run_id) = (app.clone(), self.run_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            app.live.remove(&run_id);
        });
    }
}

/// What a run is recorded with, taken from its input before the agent has it.
pub(super) struct NewRun {
    thread: ThreadRecord,
    run: RunRecord,
}

impl NewRun {
    pub(super) fn of(room: &str, owner: &User, input: &RunAgentInput) -> Self {
        let now = now_ms();
        let name = input
            .messages
            .iter()
            .find(|m| m.role == "user")
            .map(|m| m.content.text())
            .map(|t| t.trim().chars().take(NAME_CHARS).collect::<String>());
        NewRun {
            thread: ThreadRecord {
                id: input.thread_id.clone(),
                room: room.to_owned(),
                owner: owner.name().to_owned(),
                created: now,
                name,
                description: None,
            },
            run: RunRecord {
                id: input.run_id.clone(),
                thread_id: input.thread_id.clone(),
                parent_run_id: input.parent_run_id.clone(),
                created: now,
                finished: None,
                status: RunStatus::Running,
                input: serde_json::to_string(input).unwrap_or_default(),
                result: None,
                usage: None,
                answer: None,
                llm_requests: None,
                events_cut: false,
                metadata: None,
            },
        }
    }

    /// Records the thread (if new) and the run before the stream starts (a pending run of that id
    /// becomes it): a run id used before, a thread id of another room, or a run past `max_runs`
    /// in its thread is refused. Should the database not answer, the writer records them when it
    /// is back and the run goes on.
    pub(super) async fn record(
        self,
        stored: &Stored,
        max_runs: Option<usize>,
    ) -> Result<(), ApiError> {
        if stored.writer.health.error().is_none() {
            let max = max_runs.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let at_once = stored.store.start_run(&self.thread, &self.run, max);
            match tokio::time::timeout(START_WRITE_TIMEOUT, at_once).await {
                Ok(Ok(outcome)) => {
                    let limit = max_runs.unwrap_or_default();
                    return recorded(outcome, &self.thread.id, &self.run.id, limit);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "store: cannot record a new run; the writer will")
                }
                Err(_) => tracing::warn!("store: recording a new run timed out; the writer will"),
            }
        }
        stored.writer.send(Write::Thread(self.thread));
        stored.writer.send(Write::Run(Box::new(self.run)));
        Ok(())
    }
}

/// What the store's answer to recording a run means for its request (`max_runs`: the limit it
/// was recorded within).
pub(super) fn recorded(
    outcome: Started,
    thread_id: &str,
    run_id: &str,
    max_runs: usize,
) -> Result<(), ApiError> {
    match outcome {
        Started::Recorded => Ok(()),
        Started::OtherRoom => Err(ApiError::ThreadNotFound(thread_id.to_owned())),
        Started::RunExists => Err(ApiError::RunIdReused(run_id.to_owned())),
        Started::ThreadFull => Err(ApiError::TooManyRuns(thread_id.to_owned(), max_runs)),
    }
}

/// The recorder of a run that was just recorded (or needs no recording); refused if a run with
/// that id is going on (or just finished) here.
pub(super) fn recorder(
    app: &AppState,
    room: &str,
    owner: &User,
    (thread_id, run_id): (&str, &str),
    profile: Profile,
    client: Arc<RunOutlet>,
) -> Result<Arc<Recorder>, ApiError> {
    let live = app
        .live
        .insert(run_id, room, owner.name(), thread_id)
        .ok_or_else(|| ApiError::RunIdReused(run_id.to_owned()))?;
    let writer = app.stored.as_ref().map(|s| s.writer.clone());
    let log = RunLog::new(writer, run_id, app.settings.max_events_per_run);
    Ok(Arc::new(Recorder {
        run_id: run_id.to_owned(),
        log: Mutex::new((Shaper::new(profile), log)),
        live,
        client,
        meter: RunMeter::new(room),
    }))
}
