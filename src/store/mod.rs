//! The store: threads, runs, every run's events and feedback, kept in SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas). Both implement [`Store`] with the same SQL; the
//! schema is migrated at start-up. Event writes go through one batching [`Writer`] per process so
//! the streaming path never waits for the database.

pub mod history;
mod live;
mod notify;
mod sql;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use live::{Follower, LiveRun, LiveRuns, Since};
pub use notify::Notices;
pub use writer::{Health, RunLog, Writer, MAX_QUEUED_EVENTS};

/// A thread: a conversation in one room.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRecord {
    pub id: String,
    pub room: String,
    /// The user who made it; empty when sign-in is off (one shared owner).
    pub owner: String,
    /// Unix milliseconds.
    pub created: i64,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A run of a thread. JSON columns are kept as text, as they were produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub thread_id: String,
    pub parent_run_id: Option<String>,
    pub created: i64,
    pub finished: Option<i64>,
    pub status: RunStatus,
    /// The `RunAgentInput` as JSON (of a pending run: its ids and empty state).
    pub input: String,
    pub result: Option<String>,
    pub usage: Option<String>,
    /// True when the run had more events than the store keeps per run.
    pub events_cut: bool,
    /// What the client that made it said about it (soliplex's run `metadata`).
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Made (soliplex's new thread or new run) but not started yet.
    Pending,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// Left `running` by a process that died and taken up by none.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl FromStr for RunStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "interrupted" => RunStatus::Interrupted,
            other => return Err(StoreError::Corrupt(format!("unknown run status '{other}'"))),
        })
    }
}

/// What [`Store::create_run`] and [`Store::start_run`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Recorded,
    /// The thread id belongs to another room or user; nothing was written.
    OtherRoom,
    /// A run with that id exists (and is not a pending run of the thread being started); nothing
    /// was written.
    RunExists,
    /// The thread has as many runs as it may; nothing was written.
    ThreadFull,
}

/// What a new run of a known thread needs from the store: who owns the thread and its last
/// finished run (the one holding its earlier turns), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadTurn {
    pub owner: String,
    pub last: Option<LastTurn>,
}

/// A thread's last finished run: its id, input and result (JSON text).
#[derive(Debug, Clone, PartialEq)]
pub struct LastTurn {
    pub run_id: String,
    pub input: String,
    pub result: Option<String>,
}

/// The sequence number of the last event stored for a run that a process left unfinished (ended
/// `interrupted` by another): above any number a run's own events reach, and the highest a
/// `Last-Event-ID` can name, so it is never the id of another event, even one a client was sent
/// but the dead process never stored, and a client resuming from any id it has reads it.
pub const FINAL_SEQ: i64 = u32::MAX as i64;

/// One stored event: its sequence number in the run and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub data: String,
}

/// A running run whose owner's lease has expired (or that never had an owner).
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub room: String,
    pub run_id: String,
    /// The instance that ran it.
    pub owner: Option<String>,
}

/// A write the [`Writer`] batches. Each is idempotent, so a batch that failed is retried whole.
#[derive(Debug)]
pub enum Write {
    /// Inserts the thread if it is not there yet.
    Thread(ThreadRecord),
    /// Starts the run if it is pending in its thread, else inserts it if it is not there yet.
    Run(RunRecord),
    Event {
        run_id: String,
        seq: i64,
        data: String,
    },
    Finish {
        run_id: String,
        status: RunStatus,
        finished: i64,
        result: Option<String>,
        usage: Option<String>,
    },
    /// The run's log stops here (cap reached or events dropped while the database was away).
    Cut { run_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported scheme; use sqlite://FILE, sqlite::memory:, postgres://... or none")]
    Scheme,
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
}

/// Where the store keeps things. Every method is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts the thread; true if it is now there in `thread.room` (false: the id belongs to
    /// another room).
    async fn put_thread(&self, thread: &ThreadRecord) -> Result<bool, StoreError>;
    async fn thread(&self, room: &str, id: &str) -> Result<Option<ThreadRecord>, StoreError>;
    /// The room's thread's owner and last finished run, in one read; `None` if the room has no
    /// such thread.
    async fn thread_turn(&self, room: &str, id: &str) -> Result<Option<ThreadTurn>, StoreError>;
    /// The room's threads of `owner`, newest first, older than `before` (created, id) when given.
    async fn threads(
        &self,
        room: &str,
        owner: &str,
        limit: i64,
        before: Option<(i64, String)>,
    ) -> Result<Vec<ThreadRecord>, StoreError>;
    /// Deletes the thread with its runs, events and feedback; false if there was none.
    async fn delete_thread(&self, room: &str, id: &str) -> Result<bool, StoreError>;
    /// Sets the thread's name and description; false if there is no such thread in the room.
    async fn rename_thread(
        &self,
        room: &str,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Inserts a run (soliplex makes its runs `pending` before they start) with its thread if
    /// new, in one transaction, unless the thread has `max_runs` runs already. Its `created` is
    /// moved past the thread's latest run's if need be (so a thread's runs, oldest first, are in
    /// the order they were made).
    async fn create_run(
        &self,
        thread: &ThreadRecord,
        run: &mut RunRecord,
        max_runs: i64,
    ) -> Result<Started, StoreError>;
    /// Records a run starting, with its thread if new, in one transaction (one commit on the
    /// run's way to its stream). A pending run of the thread with that id becomes the run (its
    /// status, input and, when the run has one, parent; its `created` and `metadata` stay), at
    /// most once however many start it at the same time; any other id is inserted as
    /// [`Store::create_run`] does, within `max_runs` when given.
    async fn start_run(
        &self,
        thread: &ThreadRecord,
        run: &RunRecord,
        max_runs: Option<i64>,
    ) -> Result<Started, StoreError>;
    async fn run(&self, room: &str, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// A thread's runs, oldest first.
    async fn thread_runs(&self, room: &str, thread_id: &str) -> Result<Vec<RunRecord>, StoreError>;
    /// Up to `limit` events of the run with `seq > after`, in order.
    async fn events(
        &self,
        run_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Applies the writes in one transaction.
    async fn write(&self, batch: &[Write]) -> Result<(), StoreError>;
    /// This process in the store: running runs it records or claims name it as their owner.
    fn instance(&self) -> &str;
    /// Whether the data stays when this process ends (not an in-memory database): only then can
    /// another process, or this one restarted, take up its runs.
    fn outlives_process(&self) -> bool;
    /// What other processes on the same database announce (PostgreSQL); `None` when nobody can.
    fn notices(&self) -> Option<Arc<Notices>>;
    /// Holds this process's lease until `expires` (Unix ms).
    async fn renew_lease(&self, now: i64, expires: i64) -> Result<(), StoreError>;
    /// Ends this process's lease now, so that its running runs are orphans at once.
    async fn release_lease(&self) -> Result<(), StoreError>;
    /// Running runs of other processes whose lease expired before `now` (or that have none),
    /// oldest first, a bounded number at a time. Pending runs are not anyone's yet.
    async fn orphans(&self, now: i64) -> Result<Vec<Orphan>, StoreError>;
    /// Makes this process the orphan's owner, atomically: false when it is no longer running or
    /// another process claimed it first.
    async fn claim(&self, orphan: &Orphan) -> Result<bool, StoreError>;
    /// Ends a running run of this process as `interrupted`, with `last` (an event's JSON) stored as
    /// its last event under [`FINAL_SEQ`]; false if it was not running here.
    async fn interrupt(&self, run_id: &str, now: i64, last: &str) -> Result<bool, StoreError>;
    /// Asks a running run's owner, wherever it is, to cancel it; false if it is not running.
    async fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError>;
    /// This process's running runs that were asked to cancel.
    async fn cancel_requests(&self) -> Result<Vec<String>, StoreError>;
    /// Deletes threads created before `cutoff` with no run since, and runs made before it that
    /// never started; how many threads.
    async fn purge(&self, cutoff: i64) -> Result<u64, StoreError>;
    /// Sets a run's metadata (JSON text; `None` erases it); false if the room has no such run.
    async fn set_run_metadata(
        &self,
        room: &str,
        run_id: &str,
        metadata: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Adds feedback to a run; false if there is no such run.
    async fn add_feedback(&self, run_id: &str, data: &str) -> Result<bool, StoreError>;
}

/// Opens the database at `url` and applies the migrations; runs a dead process left `running` are
/// taken up by the replica check (`server::replica`). `none` (or empty) runs without a store.
pub async fn open(url: &str) -> Result<Option<Arc<dyn Store>>, StoreError> {
    let url = url.trim();
    let store: Arc<dyn Store> = if url.is_empty() || url.eq_ignore_ascii_case("none") {
        return Ok(None);
    } else if url.starts_with("sqlite:") {
        Arc::new(sql::SqliteStore::open(url).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(sql::PgStore::open(url).await?)
    } else {
        return Err(StoreError::Scheme);
    };
    Ok(Some(store))
}

/// The URL with its password (if any) replaced by `***`, for messages and logs.
pub fn mask_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes threads older than `keep` every hour, for as long as the process runs.
pub fn spawn_purge(store: Arc<dyn Store>, keep: Duration) {
    const EVERY: Duration = Duration::from_secs(3600);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            match store.purge(now_ms().saturating_sub(keep_ms)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(threads = n, "retention: old threads deleted"),
                Err(e) => tracing::warn!(error = %e, "retention: purge failed"),
            }
        }
    });
}
