//! Where a run's events go: shaped for the profile of the client that started the run, numbered,
//! handed to the store's writer, kept in the run's live tail for followers, and queued for that
//! client (if it is still there), in that one order. Followers and replays get the same stream.
//! A run's last event waits for its records to be in the database, so that whoever saw it reads
//! the run finished with all its events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::follow::frame;
use super::stream::RunOutlet;
use super::ApiError;
use crate::agents::{AgentError, ErrorCode, EventOutlet};
use crate::agui::{Event, Profile, RunAgentInput, Shaper};
use crate::auth::User;
use crate::state::{AppState, Stored};
use crate::store::{
    now_ms, LiveRun, RunEnd, RunLog, RunRecord, RunStatus, Started, StoreError, ThreadRecord,
    MAX_RUNS_PER_THREAD,
};
use crate::telemetry::RunMeter;

/// Longest thread name taken from its first message, in characters.
const NAME_CHARS: usize = 80;
/// How long a finished run stays among the live ones, for a follower that comes right after.
const LINGER: Duration = Duration::from_secs(5);

pub(super) struct Recorder {
    pub(super) run_id: String,
    /// What this start records the run with; its writes carry it.
    pub(super) token: String,
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
        let (seq, json) = logged(log, event);
        self.deliver(seq, &json);
    }

    /// Hands a recorded event to the run's live tail and its client.
    fn deliver(&self, seq: i64, json: &str) {
        self.live.push(seq, Arc::from(json));
        self.client.push_frame(frame(&self.run_id, seq, json));
    }

    /// Ends the run with its `last` event: records it and how the run ended, waits (at most
    /// `store_timeout`) for the writer to commit everything the run recorded, one commit for the
    /// run's tail, and only then sends the last event to the client and the followers. Past the
    /// bound (the database away) it goes out anyway; the records wait in the writer's queue.
    pub(super) async fn end(
        &self,
        app: &AppState,
        status: RunStatus,
        last: Event,
        run_end: RunEnd,
    ) {
        self.meter.observe(&last);
        let mut held = Vec::new();
        let writer = {
            let mut guard = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let (shaper, log) = &mut *guard;
            shaper.push(last, std::time::Instant::now(), &mut |e| {
                held.push(logged(log, &e))
            });
            log.finish(status, run_end);
            log.writer().cloned()
        };
        if let Some(writer) = writer {
            if !writer.flush(app.settings.store_timeout).await {
                tracing::warn!(
                    "store: a run's last records are not written yet; its last event goes out anyway"
                );
            }
        }
        for (seq, json) in &held {
            self.deliver(*seq, json);
        }
        self.close(app);
    }

    /// Records a run that never started as ended and lets its followers finish.
    pub(super) fn finish(&self, app: &AppState, status: RunStatus) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .finish(status, RunEnd::default());
        self.close(app);
    }

    /// Ends the run here without a last event: it stays `running` in the store for the replica
    /// that takes it up once this process has handed its runs over.
    pub(super) fn hand_over(&self, app: &AppState) {
        self.close(app);
    }

    /// Lets the run's followers finish; it stays among the live runs a moment longer.
    fn close(&self, app: &AppState) {
        self.live.end();
        let (app, run_id) = (app.clone(), self.run_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            app.live.remove(&run_id);
        });
    }
}

/// Numbers an event in the run's log; its sequence number and JSON.
fn logged(log: &mut RunLog, event: &Event) -> (i64, String) {
    let json = serde_json::to_string(event).unwrap_or_else(|e| {
        let error = Event::from(AgentError::Failed {
            code: ErrorCode::Internal,
            message: format!("an event could not be encoded ({e}); this is a server bug"),
        });
        serde_json::to_string(&error).unwrap_or_default()
    });
    (log.record(&json), json)
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
                input_cut: false,
                metadata: None,
            },
        }
    }

    /// Records the thread (if new) and the run, with the start's `token`, before the stream
    /// starts (a pending run of that id becomes it): a run id used before, a thread id of another
    /// room, a run past [`MAX_RUNS_PER_THREAD`] in its thread, a parent not of the thread or a run
    /// past its owner's quotas is refused; so is the run when the database fails or does not
    /// answer within `store_timeout` (503: a run never goes on unrecorded, whose checks were
    /// skipped).
    pub(super) async fn record(
        self,
        app: &AppState,
        stored: &Stored,
        token: &str,
    ) -> Result<(), ApiError> {
        let max = Some(MAX_RUNS_PER_THREAD);
        let (store, token) = (stored.store.clone(), token.to_owned());
        let (thread_id, run) = (self.thread.id.clone(), self.run.clone());
        // A task of its own: given up on, it still ends its transaction (none is left open on a
        // pooled connection); it commits nothing past the deadline, and should its commit itself
        // outlast it, the run it recorded is ended `failed` at once.
        let bound = app.settings.store_timeout;
        let deadline = std::time::Instant::now() + bound;
        let mut start = {
            let token = token.clone();
            tokio::spawn(async move {
                store
                    .start_run(&self.thread, &self.run, max, &token, deadline)
                    .await
            })
        };
        let outcome = match tokio::time::timeout(bound, &mut start).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(panicked)) => {
                return Err(StoreError::Corrupt(format!("recording a run: {panicked}")).into())
            }
            Err(_) => {
                let late = RunLog::new(Some(stored.writer.clone()), &run.id, &token, 0);
                tokio::spawn(async move {
                    if let Ok(Ok(Started::Recorded)) = start.await {
                        late.finish(RunStatus::Failed, RunEnd::default());
                    }
                });
                return Err(StoreError::Stalled.into());
            }
        };
        recorded(outcome, &thread_id, &run)
    }
}

/// What the store's answer to recording a run means for its request.
pub(super) fn recorded(outcome: Started, thread_id: &str, run: &RunRecord) -> Result<(), ApiError> {
    match outcome {
        Started::Recorded => Ok(()),
        Started::OtherRoom => Err(ApiError::ThreadNotFound(thread_id.to_owned())),
        Started::RunExists => Err(ApiError::RunIdReused(run.id.clone())),
        Started::ThreadFull => Err(ApiError::TooManyRuns(
            thread_id.to_owned(),
            MAX_RUNS_PER_THREAD,
        )),
        Started::NoSuchParent => Err(ApiError::NoSuchParent(
            run.parent_run_id.clone().unwrap_or_default(),
        )),
        Started::OverThreadQuota => Err(ApiError::ThreadQuota),
        Started::OverByteQuota => Err(ApiError::StorageQuota),
    }
}

/// The recorder of a run that was just recorded (or needs no recording), stopped by `cancel`;
/// refused if a run with that id is going on (or just finished) here.
pub(super) fn recorder(
    app: &AppState,
    room: &str,
    owner: &User,
    (thread_id, run_id): (&str, &str),
    profile: Profile,
    (client, cancel): (Arc<RunOutlet>, CancellationToken),
) -> Result<Arc<Recorder>, ApiError> {
    let live = app
        .live
        .insert(run_id, room, owner.name(), thread_id, cancel)
        .ok_or_else(|| ApiError::RunIdReused(run_id.to_owned()))?;
    let writer = app.stored.as_ref().map(|s| s.writer.clone());
    let token = uuid::Uuid::new_v4().to_string();
    let log = RunLog::new(writer, run_id, &token, app.settings.max_events_per_run);
    Ok(Arc::new(Recorder {
        run_id: run_id.to_owned(),
        token,
        log: Mutex::new((Shaper::new(profile), log)),
        live,
        client,
        meter: RunMeter::new(room),
    }))
}
