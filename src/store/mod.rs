//! The store: threads, runs, every run's events and feedback, kept in SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas). Both implement [`Store`] with the same SQL; the
//! schema is migrated at start-up. Event writes go through one batching [`Writer`] per process so
//! the streaming path never waits for the database.

pub mod history;
mod live;
mod sql;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use live::{Follower, LiveRun, LiveRuns, Since};
pub use writer::{Health, RunEnd, RunLog, Writer, MAX_QUEUED_EVENTS};

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
    /// The answer's text, of a finished run.
    pub answer: Option<String>,
    /// The LLM requests a finished run had answered.
    pub llm_requests: Option<i64>,
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
    /// Left `running` by a process that died; found at the next start-up.
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

/// A thread's last finished run: its id, input and answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LastTurn {
    pub run_id: String,
    pub input: String,
    pub answer: Option<String>,
}

/// One stored event: its sequence number in the run and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub data: String,
}

/// A write the [`Writer`] batches. Each is idempotent, so a batch that failed is retried whole.
#[derive(Debug)]
pub enum Write {
    /// Inserts the thread if it is not there yet.
    Thread(ThreadRecord),
    /// Starts the run if it is pending in its thread, else inserts it if it is not there yet.
    Run(Box<RunRecord>),
    Event {
        run_id: String,
        seq: i64,
        data: String,
    },
    Finish {
        run_id: String,
        status: RunStatus,
        finished: i64,
        end: Box<RunEnd>,
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
    /// Marks runs left `running` as `interrupted` (pending ones wait to be started); how many.
    async fn interrupt_running(&self, now: i64) -> Result<u64, StoreError>;
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

/// Opens the database at `url`, applies the migrations and marks runs a dead process left
/// `running` as `interrupted`. `none` (or empty) runs without a store.
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
    let interrupted = store.interrupt_running(now_ms()).await?;
    if interrupted > 0 {
        tracing::warn!(
            runs = interrupted,
            "runs cut by a previous stop marked interrupted"
        );
    }
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
