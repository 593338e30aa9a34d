//! The store: threads, runs, every run's events and feedback, kept in SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas). Both implement [`Store`] with the same SQL; the
//! schema is migrated at start-up. Event writes go through one batching [`Writer`] per process so
//! the streaming path never waits for the database.

mod fault;
pub mod history;
mod live;
mod notify;
mod probe;
mod sql;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use fault::Fault;
pub use live::{Follower, LiveRun, LiveRuns, Since};
pub use notify::Notices;
pub use probe::Probe;
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
    /// True when `input` was left out (empty) of a thread read to bound its size; reading the
    /// run itself gives it.
    pub input_cut: bool,
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
    /// The run names a parent that is not a run of its thread; nothing was written.
    NoSuchParent,
    /// The owner has as many threads as [`Quotas::threads`] allows; nothing was written.
    OverThreadQuota,
    /// The run's input would take the owner past [`Quotas::stored_bytes`]; nothing was written.
    OverByteQuota,
}

/// Runs one thread may have, pending ones included, whichever route made them; past it a new
/// run in the thread is refused.
pub const MAX_RUNS_PER_THREAD: i64 = 100;

/// What one user (thread owner) may keep in the store; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    pub threads: i64,
    /// Bytes of run inputs (what clients sent), over all the user's threads.
    pub stored_bytes: i64,
    /// Feedback rows, over all the user's runs.
    pub feedback: i64,
}

/// An earlier finished run of a thread, for rebuilding the history its new run continues: the
/// input its client sent and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub run_id: String,
    pub created: i64,
    pub input: String,
    pub answer: Option<String>,
}

/// What [`Store::add_feedback`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackAdded {
    Added,
    NoSuchRun,
    /// The run's owner has as many feedback rows as [`Quotas::feedback`] allows.
    OverQuota,
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

/// A write the [`Writer`] batches, of a run recorded by a start that holds `token`: each is
/// written only while the run row holds that token (checked in SQL), so nothing attaches to a run
/// this start did not make. Each is idempotent, so a batch that failed is retried whole.
#[derive(Debug)]
pub enum Write {
    Event {
        run_id: String,
        token: Arc<str>,
        seq: i64,
        data: String,
    },
    Finish {
        run_id: String,
        token: Arc<str>,
        status: RunStatus,
        finished: i64,
        end: Box<RunEnd>,
    },
    /// The run's log stops here (cap reached, events dropped while the database was away, or an
    /// event the database refused).
    Cut { run_id: String, token: Arc<str> },
}

impl Write {
    /// The run the write belongs to, and its start's token.
    fn run(&self) -> (&str, &Arc<str>) {
        match self {
            Write::Event { run_id, token, .. }
            | Write::Finish { run_id, token, .. }
            | Write::Cut { run_id, token } => (run_id, token),
        }
    }
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
    #[error("the database file {0} was deleted or replaced since it was opened")]
    FileReplaced(String),
    #[error("the database did not answer in time")]
    Stalled,
    #[error("the write was not seen from a second connection")]
    NotVisible,
}

/// Where the store keeps things. Every method is one statement or one transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts the thread; true if it is now there in `thread.room` (false: the id belongs to
    /// another room).
    async fn put_thread(&self, thread: &ThreadRecord) -> Result<bool, StoreError>;
    async fn thread(&self, room: &str, id: &str) -> Result<Option<ThreadRecord>, StoreError>;
    /// Up to `limit` finished runs of the thread made before `before` (created, id) when given,
    /// newest first.
    async fn turns(
        &self,
        thread_id: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Turn>, StoreError>;
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
    /// new, in one transaction, unless the thread has `max_runs` runs already, its parent is not
    /// a run of the thread, or it takes its owner past the store's [`Quotas`]. Its `created` is
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
    /// [`Store::create_run`] does, within `max_runs` when given. The run row gets `token`, which
    /// its later writes ([`Write`]) must carry. Past `deadline` nothing is committed
    /// ([`StoreError::Stalled`]).
    async fn start_run(
        &self,
        thread: &ThreadRecord,
        run: &RunRecord,
        max_runs: Option<i64>,
        token: &str,
        deadline: Instant,
    ) -> Result<Started, StoreError>;
    async fn run(&self, room: &str, id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// A thread's runs, oldest first; the inputs of older runs are cut (see
    /// [`RunRecord::input_cut`]) once the newer ones' add up to `input_bytes`.
    async fn thread_runs(
        &self,
        room: &str,
        thread_id: &str,
        input_bytes: i64,
    ) -> Result<Vec<RunRecord>, StoreError>;
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
    /// Adds feedback to a run, within its owner's quota.
    async fn add_feedback(&self, run_id: &str, data: &str) -> Result<FeedbackAdded, StoreError>;
    /// Proves the store takes writes: one committed on one connection is read back from
    /// another, and (SQLite) the file at the path is still the one opened.
    async fn probe(&self) -> Result<(), StoreError>;
}

/// Opens the database at `url` and applies the migrations; runs a dead process left `running` are
/// taken up by the replica check (`server::replica`). `none` (or empty) runs without a store.
pub async fn open(url: &str, quotas: Quotas) -> Result<Option<Arc<dyn Store>>, StoreError> {
    let url = url.trim();
    let store: Arc<dyn Store> = if url.is_empty() || url.eq_ignore_ascii_case("none") {
        return Ok(None);
    } else if url.starts_with("sqlite:") {
        Arc::new(sql::SqliteStore::open(url, quotas).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(sql::PgStore::open(url, quotas).await?)
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
