//! The two SQL stores. Their SQL is the same text (`$n` parameters work in both), so one macro
//! writes both implementations; only opening the pool and the migrations differ.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{
    Connection, PgConnection, PgPool, Postgres, QueryBuilder, Sqlite, SqliteConnection, SqlitePool,
};
use tokio::sync::{Mutex, MutexGuard};

use super::notify::{self, Notices, CANCEL, EVENTS, HANDOVER};
use super::{
    FeedbackAdded, Orphan, Quotas, RunRecord, RunStatus, Started, Store, StoreError, StoredEvent,
    ThreadRecord, Turn, Write,
};

/// How long a statement waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in each pool: the writer, replays and the HTTP reads.
const POOL_SIZE: u32 = 8;
/// SQLite has one writer at a time anyway, and each connection is a thread with its own cache.
const SQLITE_POOL_SIZE: u32 = 4;
/// A pooled connection idle longer than this is pinged before use (the database may have dropped
/// it); busier ones are not, which saves a round trip on every use, a run's start included.
const PING_IDLE_FOR: Duration = Duration::from_millis(500);

/// Pools that check only the connections that sat idle. One the database dropped while in use
/// fails its next statement once; the pool pings every connection given back and closes it.
fn pool_options<DB: sqlx::Database>() -> PoolOptions<DB> {
    PoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Text as both databases store it: PostgreSQL refuses U+0000 in `TEXT`, so it is removed from
/// every text written (JSON text never holds it raw: serde escapes it).
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

fn storable_opt(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(storable)
}

/// Which file is at a path: its device and inode.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

pub struct SqliteStore {
    pool: SqlitePool,
    quotas: Quotas,
    /// This process in the store: the owner its running runs record.
    instance: String,
    /// An in-memory database ends with the process: nobody can take its runs up.
    in_memory: bool,
    /// Held by the run path's write transactions (a run starting, the writer's batch).
    writing: Mutex<()>,
    /// The database file and the device and inode it had when opened (none in memory).
    file: Option<(PathBuf, Option<(u64, u64)>)>,
    /// Whether the pool has a second connection to read a probe's write back from.
    single: bool,
    /// This process's row in `probe`.
    probe_id: String,
}

impl SqliteStore {
    pub async fn open(url: &str, quotas: Quotas) -> Result<Self, StoreError> {
        // WAL: readers do not block the writer and a crash leaves a consistent file;
        // `synchronous=NORMAL` is durable across process crashes in WAL mode.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let path = options.get_filename().to_owned();
        // Each in-memory connection would be its own database: keep exactly one, forever.
        let pool = if in_memory {
            pool_options()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool_options().max_connections(SQLITE_POOL_SIZE)
        }
        .connect_with(options)
        .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let store = Self {
            pool,
            quotas,
            instance: new_instance(),
            in_memory,
            writing: Mutex::new(()),
            file: (!in_memory).then(|| (path.clone(), file_id(&path))),
            single: in_memory,
            probe_id: uuid::Uuid::new_v4().to_string(),
        };
        store.forget_probes().await?;
        Ok(store)
    }

    /// A connection for a write of the run path, after checking the file is still the one
    /// opened (writes into a deleted file would be lost at the next start). SQLite has one writer
    /// at a time: a run starting while the writer's batch commits waits here for exactly that
    /// commit, where SQLite's busy handler would sleep 1, 2, 5… ms between tries.
    async fn acquire_write(
        &self,
    ) -> Result<(PoolConnection<Sqlite>, MutexGuard<'_, ()>), StoreError> {
        if let Some((path, opened)) = &self.file {
            if file_id(path) != *opened {
                return Err(StoreError::FileReplaced(path.display().to_string()));
            }
        }
        let turn = self.writing.lock().await;
        Ok((self.pool.acquire().await?, turn))
    }

    /// Takes the write lock at once, so that waiting for it is the busy timeout, not a deadlock
    /// found later.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_RECORD: &'static str = Self::BEGIN_WRITE;
}

pub struct PgStore {
    pool: PgPool,
    /// This process's row in `probe`.
    probe_id: String,
    single: bool,
    quotas: Quotas,
    instance: String,
    /// Other replicas' news, heard on one listening connection.
    notices: Arc<Notices>,
}

impl PgStore {
    pub async fn open(url: &str, quotas: Quotas) -> Result<Self, StoreError> {
        // A pool hides why it cannot connect ("timed out"); one plain connection says why.
        sqlx::PgConnection::connect(url).await?.close().await?;
        let pool = pool_options()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let notices = Arc::new(Notices::default());
        notify::listen(url, notices.clone()).await?;
        let store = Self {
            pool,
            probe_id: uuid::Uuid::new_v4().to_string(),
            single: false,
            quotas,
            instance: new_instance(),
            notices,
        };
        store.forget_probes().await?;
        Ok(store)
    }

    /// PostgreSQL locks rows, not the database: writers need no turns.
    async fn acquire_write(&self) -> Result<(PoolConnection<Postgres>, ()), StoreError> {
        Ok((self.pool.acquire().await?, ()))
    }

    const BEGIN_WRITE: &'static str = "BEGIN";
    /// The transaction recording a run on its way to its stream. Its commit does not wait for the
    /// WAL flush (an fsync): should the server crash (not this process: the database) within
    /// `wal_writer_delay` the run would be gone, as it would had it started that much later; the
    /// writer's next batch, which holds the run's first events, is durable and flushes it too.
    const BEGIN_RECORD: &'static str = "BEGIN; SET LOCAL synchronous_commit TO OFF";
}

/// A connection whose statement or transaction failed is closed, never given back to the pool:
/// it may still be inside the transaction (SQLite after a full disk), which would hold the write
/// lock and swallow every later write made on it.
fn release<DB: sqlx::Database>(conn: PoolConnection<DB>, failed: bool) {
    if failed {
        tokio::spawn(conn.detach().close());
    }
}

/// A fresh id for this process's store: a process that restarts is another owner.
fn new_instance() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    thread_id: String,
    parent_run_id: Option<String>,
    created: i64,
    finished: Option<i64>,
    status: String,
    /// Null when cut from a thread read.
    input: Option<String>,
    result: Option<String>,
    usage: Option<String>,
    answer: Option<String>,
    llm_requests: Option<i64>,
    events_cut: i64,
    metadata: Option<String>,
}

impl TryFrom<RunRow> for RunRecord {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Self, StoreError> {
        Ok(RunRecord {
            status: r.status.parse()?,
            id: r.id,
            thread_id: r.thread_id,
            parent_run_id: r.parent_run_id,
            created: r.created,
            finished: r.finished,
            input_cut: r.input.is_none(),
            input: r.input.unwrap_or_default(),
            result: r.result,
            usage: r.usage,
            answer: r.answer,
            llm_requests: r.llm_requests,
            events_cut: r.events_cut != 0,
            metadata: r.metadata,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ThreadRow {
    id: String,
    room: String,
    owner: String,
    created: i64,
    name: Option<String>,
    description: Option<String>,
}

impl From<ThreadRow> for ThreadRecord {
    fn from(t: ThreadRow) -> Self {
        ThreadRecord {
            id: t.id,
            room: t.room,
            owner: t.owner,
            created: t.created,
            name: t.name,
            description: t.description,
        }
    }
}

/// Where a thread being recorded stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ThreadIs {
    /// Inserted just now: it has no runs yet.
    New,
    /// There already, in the room and the owner's.
    Known,
    /// Another room's or user's.
    Other,
}

const RUN_COLUMNS: &str = "r.id, r.thread_id, r.parent_run_id, r.created, r.finished, r.status, \
                           r.input, r.result, r.usage, r.answer, r.llm_requests, r.events_cut, \
                           r.metadata";
const INSERT_THREAD: &str = "INSERT INTO threads (id, room, owner, created, name, description) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const INSERT_RUN: &str = "INSERT INTO runs (id, thread_id, parent_run_id, created, finished, \
                          status, input, result, usage, answer, llm_requests, events_cut, \
                          metadata, start_token, input_bytes, instance) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                          $15, $16) \
                          ON CONFLICT (id) DO NOTHING";
/// A pending run of the thread becomes the run starting: one conditional statement, so of two
/// starts of the same run (here or in another replica) only one finds it pending.
const START_PENDING: &str = "UPDATE runs SET status = $3, input = $4, input_bytes = $7, \
                             parent_run_id = COALESCE($5, parent_run_id), start_token = $6, \
                             instance = $8 \
                             WHERE id = $1 AND thread_id = $2 AND status = 'pending'";
/// Leases expired this long ago are deleted.
const OLD_LEASE_MS: i64 = 3_600_000;
/// Orphaned runs taken up in one check; the next check takes the rest.
const ORPHANS_AT_ONCE: i64 = 100;
/// Rows per multi-row event insert: 4 parameters each, far below either database's limit.
const EVENT_ROWS: usize = 500;

impl SqliteStore {
    /// SQLite has no notifications: other processes on the same file find news by polling.
    async fn announce(
        _conn: &mut SqliteConnection,
        _channel: &str,
        _payload: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn notices_of(&self) -> Option<Arc<Notices>> {
        None
    }

    fn outlives(&self) -> bool {
        !self.in_memory
    }
}

impl PgStore {
    /// Tells every listening replica on `channel`, when the transaction commits.
    async fn announce(
        conn: &mut PgConnection,
        channel: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    fn notices_of(&self) -> Option<Arc<Notices>> {
        Some(self.notices.clone())
    }

    fn outlives(&self) -> bool {
        true
    }
}

macro_rules! sql_store {
    ($Store:ident, $Db:ty) => {
        impl $Store {
            fn thread_query<'q>(
                t: &'q ThreadRecord,
            ) -> sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>> {
                sqlx::query(INSERT_THREAD)
                    .bind(&t.id)
                    .bind(&t.room)
                    .bind(storable(&t.owner))
                    .bind(t.created)
                    .bind(storable_opt(&t.name))
                    .bind(storable_opt(&t.description))
            }

            /// Inserts the thread if new; whether it was, or is in `thread.room` and
            /// `thread.owner`'s.
            async fn thread_in_room(
                conn: &mut <$Db as sqlx::Database>::Connection,
                thread: &ThreadRecord,
            ) -> Result<ThreadIs, StoreError> {
                if Self::thread_query(thread)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    > 0
                {
                    return Ok(ThreadIs::New);
                }
                let found: Option<(String, String)> =
                    sqlx::query_as("SELECT room, owner FROM threads WHERE id = $1")
                        .bind(&thread.id)
                        .fetch_optional(&mut *conn)
                        .await?;
                Ok(
                    if found.is_some_and(|(room, owner)| {
                        room == thread.room && owner == storable(&thread.owner)
                    }) {
                        ThreadIs::Known
                    } else {
                        ThreadIs::Other
                    },
                )
            }

            fn run_query<'q>(
                r: &'q RunRecord,
                created: i64,
                token: Option<&'q str>,
                instance: &'q str,
            ) -> sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>> {
                sqlx::query(INSERT_RUN)
                    .bind(&r.id)
                    .bind(&r.thread_id)
                    .bind(&r.parent_run_id)
                    .bind(created)
                    .bind(r.finished)
                    .bind(r.status.as_str())
                    .bind(storable(&r.input))
                    .bind(storable_opt(&r.result))
                    .bind(storable_opt(&r.usage))
                    .bind(storable_opt(&r.answer))
                    .bind(r.llm_requests)
                    .bind(i64::from(r.events_cut))
                    .bind(storable_opt(&r.metadata))
                    .bind(token)
                    .bind(input_bytes(r))
                    .bind(instance)
            }

            /// Starts the run if it is pending in its thread, giving it `token`; whether it was.
            async fn start_pending(
                conn: &mut <$Db as sqlx::Database>::Connection,
                r: &RunRecord,
                token: &str,
                instance: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(START_PENDING)
                    .bind(&r.id)
                    .bind(&r.thread_id)
                    .bind(r.status.as_str())
                    .bind(storable(&r.input))
                    .bind(&r.parent_run_id)
                    .bind(token)
                    .bind(input_bytes(r))
                    .bind(instance)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Why the run may not be recorded, if it may not: a parent that is not a run of its
            /// thread, or its owner's quotas (a new thread counted with the others).
            async fn refusal(
                &self,
                conn: &mut <$Db as sqlx::Database>::Connection,
                thread: &ThreadRecord,
                run: &RunRecord,
                thread_is: ThreadIs,
            ) -> Result<Option<Started>, StoreError> {
                if let Some(parent) = &run.parent_run_id {
                    let (found,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM runs WHERE id = $1 AND thread_id = $2",
                    )
                    .bind(parent)
                    .bind(&run.thread_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    if found == 0 {
                        return Ok(Some(Started::NoSuchParent));
                    }
                }
                let Quotas {
                    threads,
                    stored_bytes,
                    ..
                } = self.quotas;
                if threads > 0 && thread_is == ThreadIs::New {
                    let (owned,): (i64,) =
                        sqlx::query_as("SELECT COUNT(*) FROM threads WHERE owner = $1")
                            .bind(&thread.owner)
                            .fetch_one(&mut *conn)
                            .await?;
                    if owned > threads {
                        return Ok(Some(Started::OverThreadQuota));
                    }
                }
                if stored_bytes > 0 {
                    let (kept,): (i64,) = sqlx::query_as(
                        "SELECT CAST(COALESCE(SUM(r.input_bytes), 0) AS BIGINT) FROM runs r \
                         JOIN threads t ON t.id = r.thread_id WHERE t.owner = $1",
                    )
                    .bind(&thread.owner)
                    .fetch_one(&mut *conn)
                    .await?;
                    if kept.saturating_add(input_bytes(run)) > stored_bytes {
                        return Ok(Some(Started::OverByteQuota));
                    }
                }
                Ok(None)
            }

            /// Inserts the run unless its id is taken or its thread has `max_runs` runs; with the
            /// `created` it was given: later than its thread's other runs', so that oldest first
            /// is the order they were made in even within a millisecond.
            async fn insert_run(
                conn: &mut <$Db as sqlx::Database>::Connection,
                run: &RunRecord,
                max_runs: Option<i64>,
                token: Option<&str>,
                instance: &str,
            ) -> Result<(Started, i64), StoreError> {
                if max_runs.is_some() {
                    // Locks the thread's row (PostgreSQL; SQLite has one writer anyway), so that
                    // runs made at the same time in one thread are counted one after another.
                    sqlx::query("UPDATE threads SET owner = owner WHERE id = $1")
                        .bind(&run.thread_id)
                        .execute(&mut *conn)
                        .await?;
                }
                let (runs, latest): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(MAX(created), 0) FROM runs WHERE thread_id = $1",
                )
                .bind(&run.thread_id)
                .fetch_one(&mut *conn)
                .await?;
                let created = run.created.max(latest.saturating_add(1));
                if max_runs.is_some_and(|max| runs >= max) {
                    let (taken,): (i64,) =
                        sqlx::query_as("SELECT COUNT(*) FROM runs WHERE id = $1")
                            .bind(&run.id)
                            .fetch_one(&mut *conn)
                            .await?;
                    let refused = if taken > 0 {
                        Started::RunExists
                    } else {
                        Started::ThreadFull
                    };
                    return Ok((refused, created));
                }
                let done = Self::run_query(run, created, token, instance)
                    .execute(&mut *conn)
                    .await?;
                let outcome = if done.rows_affected() > 0 {
                    Started::Recorded
                } else {
                    Started::RunExists
                };
                Ok((outcome, created))
            }

            /// Records the run with its thread if new, in one transaction, committed only before
            /// `deadline` when given; a pending run of the thread is started when a start `token`
            /// is given (and the run is not pending itself). With the `created` an inserted run
            /// got.
            async fn record_run(
                &self,
                thread: &ThreadRecord,
                run: &RunRecord,
                max_runs: Option<i64>,
                (token, deadline): (Option<&str>, Option<Instant>),
            ) -> Result<(Started, i64), StoreError> {
                let (mut conn, _turn) = self.acquire_write().await?;
                let done = self.record_in(&mut conn, thread, run, max_runs, (token, deadline)).await;
                release(conn, done.is_err());
                done
            }

            async fn record_in(
                &self,
                conn: &mut <$Db as sqlx::Database>::Connection,
                thread: &ThreadRecord,
                run: &RunRecord,
                max_runs: Option<i64>,
                (token, deadline): (Option<&str>, Option<Instant>),
            ) -> Result<(Started, i64), StoreError> {
                let mut tx = conn.begin_with(Self::BEGIN_RECORD).await?;
                let thread_is = Self::thread_in_room(&mut tx, thread).await?;
                let start = token.filter(|_| run.status != RunStatus::Pending);
                if thread_is == ThreadIs::Other {
                    return Ok((Started::OtherRoom, run.created));
                }
                // Nothing is committed when refused: a thread inserted just now goes too.
                if let Some(refused) = self.refusal(&mut tx, thread, run, thread_is).await? {
                    return Ok((refused, run.created));
                }
                let outcome = match thread_is {
                    ThreadIs::Other => (Started::OtherRoom, run.created),
                    // A thread made just now has no runs: none pending, none to count or follow.
                    ThreadIs::New if max_runs.is_none_or(|max| max > 0) => {
                        let done = Self::run_query(run, run.created, token, &self.instance)
                            .execute(&mut *tx)
                            .await?;
                        let outcome = if done.rows_affected() > 0 {
                            Started::Recorded
                        } else {
                            Started::RunExists
                        };
                        (outcome, run.created)
                    }
                    _ if match start {
                        Some(token) => {
                            Self::start_pending(&mut tx, run, token, &self.instance).await?
                        }
                        None => false,
                    } =>
                    {
                        (Started::Recorded, run.created)
                    }
                    _ => Self::insert_run(&mut tx, run, max_runs, token, &self.instance).await?,
                };
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Its request was refused meanwhile: a run recorded now would never run.
                    tx.rollback().await?;
                    return Err(StoreError::Stalled);
                }
                if outcome.0 == Started::Recorded {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(outcome)
            }

            /// Applies the writes in one transaction on `conn`.
            async fn write_in(
                conn: &mut <$Db as sqlx::Database>::Connection,
                batch: &[Write],
            ) -> Result<(), StoreError> {
                let mut tx = conn.begin_with(Self::BEGIN_WRITE).await?;
                let mut events: Vec<(&str, i64, Cow<'_, str>, &str)> = Vec::new();
                // Runs with new events, for followers in other processes (told on commit).
                let mut grown: BTreeSet<&str> = BTreeSet::new();
                for write in batch {
                    match write {
                        Write::Event {
                            run_id,
                            token,
                            seq,
                            data,
                        } => {
                            grown.insert(run_id);
                            events.push((run_id, *seq, storable(data), token))
                        }
                        // Events go in before anything that follows them (their run's finish).
                        Write::Finish {
                            run_id,
                            token,
                            status,
                            finished,
                            end,
                        } => {
                            insert_events!($Db, &mut *tx, events);
                            // Only a run of this start that has not ended: a finished run is
                            // never rewritten.
                            sqlx::query(
                                "UPDATE runs SET status = $2, finished = $3, result = $4, \
                                 usage = $5, answer = $7, llm_requests = $8 \
                                 WHERE id = $1 AND start_token = $6 \
                                 AND status IN ('running', 'interrupted')",
                            )
                            .bind(run_id)
                            .bind(status.as_str())
                            .bind(finished)
                            .bind(storable_opt(&end.result))
                            .bind(storable_opt(&end.usage))
                            .bind(token.as_ref())
                            .bind(storable_opt(&end.answer))
                            .bind(end.llm_requests)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Write::Cut { run_id, token } => {
                            insert_events!($Db, &mut *tx, events);
                            sqlx::query(
                                "UPDATE runs SET events_cut = 1 WHERE id = $1 AND start_token = $2",
                            )
                            .bind(run_id)
                            .bind(token.as_ref())
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                insert_events!($Db, &mut *tx, events);
                for runs in notify::payloads(grown) {
                    Self::announce(&mut *tx, EVENTS, &runs).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// Ends a run of this instance `interrupted` with its `last` event under the reserved
            /// last id; false when it is not this instance's running run.
            async fn interrupt_in(
                conn: &mut <$Db as sqlx::Database>::Connection,
                instance: &str,
                run_id: &str,
                now: i64,
                last: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = conn.begin_with(Self::BEGIN_WRITE).await?;
                let done = sqlx::query(
                    "UPDATE runs SET status = 'interrupted', finished = $2 \
                     WHERE id = $1 AND status = 'running' AND instance = $3",
                )
                .bind(run_id)
                .bind(now)
                .bind(instance)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO events (run_id, seq, data) VALUES ($1, $2, $3) \
                     ON CONFLICT (run_id, seq) DO NOTHING",
                )
                .bind(run_id)
                .bind(super::FINAL_SEQ)
                .bind(last)
                .execute(&mut *tx)
                .await?;
                Self::announce(&mut *tx, EVENTS, run_id).await?;
                tx.commit().await?;
                Ok(true)
            }

            /// Drops the `probe` rows of processes gone for an hour or more.
            async fn forget_probes(&self) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM probe WHERE at < $1")
                    .bind(super::now_ms() - 3_600_000)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $Store {
            async fn put_thread(&self, thread: &ThreadRecord) -> Result<bool, StoreError> {
                let mut conn = self.pool.acquire().await?;
                let done = Self::thread_in_room(&mut conn, thread).await;
                release(conn, done.is_err());
                Ok(done? != ThreadIs::Other)
            }

            async fn create_run(
                &self,
                thread: &ThreadRecord,
                run: &mut RunRecord,
                max_runs: i64,
            ) -> Result<Started, StoreError> {
                let (outcome, created) = self.record_run(thread, run, Some(max_runs), (None, None)).await?;
                run.created = created;
                Ok(outcome)
            }

            async fn start_run(
                &self,
                thread: &ThreadRecord,
                run: &RunRecord,
                max_runs: Option<i64>,
                token: &str,
                deadline: Instant,
            ) -> Result<Started, StoreError> {
                let start = (Some(token), Some(deadline));
                Ok(self.record_run(thread, run, max_runs, start).await?.0)
            }

            async fn thread(
                &self,
                room: &str,
                id: &str,
            ) -> Result<Option<ThreadRecord>, StoreError> {
                let row: Option<ThreadRow> =
                    sqlx::query_as("SELECT * FROM threads WHERE id = $1 AND room = $2")
                        .bind(id)
                        .bind(room)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn turns(
                &self,
                thread_id: &str,
                before: Option<(i64, String)>,
                limit: i64,
            ) -> Result<Vec<Turn>, StoreError> {
                let (created, id) = before.unwrap_or((i64::MAX, String::new()));
                let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
                    "SELECT id, created, input, answer FROM runs \
                     WHERE thread_id = $1 AND status = 'finished' \
                     AND (created < $2 OR (created = $2 AND id < $3) OR $3 = '') \
                     AND created <= $2 ORDER BY created DESC, id DESC LIMIT $4",
                )
                .bind(thread_id)
                .bind(created)
                .bind(id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(run_id, created, input, answer)| Turn {
                        run_id,
                        created,
                        input,
                        answer,
                    })
                    .collect())
            }

            async fn threads(
                &self,
                room: &str,
                owner: &str,
                limit: i64,
                before: Option<(i64, String)>,
            ) -> Result<Vec<ThreadRecord>, StoreError> {
                let (created, id) = before.unwrap_or((i64::MAX, String::new()));
                let rows: Vec<ThreadRow> = sqlx::query_as(
                    "SELECT * FROM threads WHERE room = $1 AND owner = $5 \
                     AND (created < $2 OR (created = $2 AND id < $3) OR $3 = '') \
                     AND created <= $2 ORDER BY created DESC, id DESC LIMIT $4",
                )
                .bind(room)
                .bind(created)
                .bind(id)
                .bind(limit)
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_thread(&self, room: &str, id: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM threads WHERE id = $1 AND room = $2")
                    .bind(id)
                    .bind(room)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn rename_thread(
                &self,
                room: &str,
                id: &str,
                name: Option<&str>,
                description: Option<&str>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE threads SET name = $3, description = $4 WHERE id = $1 AND room = $2",
                )
                .bind(id)
                .bind(room)
                .bind(name.map(storable))
                .bind(description.map(storable))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn run(&self, room: &str, id: &str) -> Result<Option<RunRecord>, StoreError> {
                let row: Option<RunRow> = sqlx::query_as(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs r JOIN threads t ON t.id = r.thread_id \
                     WHERE r.id = $1 AND t.room = $2"
                ))
                .bind(id)
                .bind(room)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn thread_runs(
                &self,
                room: &str,
                thread_id: &str,
                input_bytes: i64,
            ) -> Result<Vec<RunRecord>, StoreError> {
                // An input is carried while the newer runs' inputs add up to less than
                // `input_bytes`: the newest always, older ones only as far as the bound goes.
                let rows: Vec<RunRow> = sqlx::query_as(
                    "SELECT r.id, r.thread_id, r.parent_run_id, r.created, r.finished, r.status, \
                     CASE WHEN COALESCE(SUM(r.input_bytes) OVER (ORDER BY r.created DESC, r.id \
                     DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < $3 \
                     THEN r.input END AS input, r.result, r.usage, r.answer, r.llm_requests, \
                     r.events_cut, r.metadata \
                     FROM runs r JOIN threads t ON t.id = r.thread_id \
                     WHERE t.id = $1 AND t.room = $2 ORDER BY r.created, r.id",
                )
                .bind(thread_id)
                .bind(room)
                .bind(input_bytes)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn events(
                &self,
                run_id: &str,
                after: i64,
                limit: i64,
            ) -> Result<Vec<StoredEvent>, StoreError> {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT seq, data FROM events WHERE run_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3",
                )
                .bind(run_id)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, data)| StoredEvent { seq, data })
                    .collect())
            }

            async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
                let (mut conn, _turn) = self.acquire_write().await?;
                let done = Self::write_in(&mut conn, batch).await;
                release(conn, done.is_err());
                done
            }

            fn instance(&self) -> &str {
                &self.instance
            }

            fn notices(&self) -> Option<Arc<Notices>> {
                Self::notices_of(self)
            }

            fn outlives_process(&self) -> bool {
                Self::outlives(self)
            }

            async fn renew_lease(&self, now: i64, expires: i64) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO leases (instance, expires) VALUES ($1, $2) \
                     ON CONFLICT (instance) DO UPDATE SET expires = excluded.expires",
                )
                .bind(&self.instance)
                .bind(expires)
                .execute(&mut *tx)
                .await?;
                // Leases of processes long gone: their runs are orphans with or without them.
                sqlx::query("DELETE FROM leases WHERE expires < $1")
                    .bind(now.saturating_sub(OLD_LEASE_MS))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn release_lease(&self) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE leases SET expires = 0 WHERE instance = $1")
                    .bind(&self.instance)
                    .execute(&mut *tx)
                    .await?;
                Self::announce(&mut *tx, HANDOVER, &self.instance).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn orphans(&self, now: i64) -> Result<Vec<Orphan>, StoreError> {
                let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                    "SELECT t.room, r.id, r.instance FROM runs r \
                     JOIN threads t ON t.id = r.thread_id \
                     WHERE r.status = 'running' AND COALESCE(r.instance, '') <> $2 \
                     AND NOT EXISTS (SELECT 1 FROM leases l \
                     WHERE l.instance = r.instance AND l.expires > $1) \
                     ORDER BY r.created LIMIT $3",
                )
                .bind(now)
                .bind(&self.instance)
                .bind(ORPHANS_AT_ONCE)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(room, run_id, owner)| Orphan {
                        room,
                        run_id,
                        owner,
                    })
                    .collect())
            }

            async fn claim(&self, orphan: &Orphan) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE runs SET instance = $2 WHERE id = $1 AND status = 'running' \
                     AND COALESCE(instance, '') = $3",
                )
                .bind(&orphan.run_id)
                .bind(&self.instance)
                .bind(orphan.owner.as_deref().unwrap_or_default())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn interrupt(
                &self,
                run_id: &str,
                now: i64,
                last: &str,
            ) -> Result<bool, StoreError> {
                let (mut conn, _turn) = self.acquire_write().await?;
                let done = Self::interrupt_in(&mut conn, &self.instance, run_id, now, last).await;
                release(conn, done.is_err());
                done
            }

            async fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
                )
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                Self::announce(&mut *tx, CANCEL, run_id).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn cancel_requests(&self) -> Result<Vec<String>, StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM runs WHERE status = 'running' AND instance = $1 \
                     AND cancel_requested = 1",
                )
                .bind(&self.instance)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn purge(&self, cutoff: i64) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                // A run made that long ago and never started will not be: it goes, and no longer
                // keeps its thread.
                sqlx::query("DELETE FROM runs WHERE status = 'pending' AND created < $1")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(
                    "DELETE FROM threads WHERE created < $1 AND NOT EXISTS (SELECT 1 FROM runs \
                     WHERE runs.thread_id = threads.id \
                     AND (runs.created >= $1 OR runs.status = 'running'))",
                )
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            async fn set_run_metadata(
                &self,
                room: &str,
                run_id: &str,
                metadata: Option<&str>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE runs SET metadata = $3 WHERE id = $1 \
                     AND thread_id IN (SELECT id FROM threads WHERE room = $2)",
                )
                .bind(run_id)
                .bind(room)
                .bind(metadata.map(storable))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn add_feedback(
                &self,
                run_id: &str,
                data: &str,
            ) -> Result<FeedbackAdded, StoreError> {
                // One statement: the quota is counted where the row is added (0: no limit).
                let done = sqlx::query(
                    "INSERT INTO feedback (run_id, created, data) \
                     SELECT r.id, $2, $3 FROM runs r JOIN threads t ON t.id = r.thread_id \
                     WHERE r.id = $1 AND ($4 = 0 OR (SELECT COUNT(*) FROM feedback f \
                     JOIN runs fr ON fr.id = f.run_id JOIN threads ft ON ft.id = fr.thread_id \
                     WHERE ft.owner = t.owner) < $4)",
                )
                .bind(run_id)
                .bind(super::now_ms())
                .bind(storable(data))
                .bind(self.quotas.feedback)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(FeedbackAdded::Added);
                }
                let (found,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(if found > 0 {
                    FeedbackAdded::OverQuota
                } else {
                    FeedbackAdded::NoSuchRun
                })
            }

            async fn probe(&self) -> Result<(), StoreError> {
                let nonce = uuid::Uuid::new_v4().to_string();
                let (conn, done) = {
                    let (mut conn, _turn) = self.acquire_write().await?;
                    let done = sqlx::query(
                        "INSERT INTO probe (id, nonce, at) VALUES ($1, $2, $3) \
                         ON CONFLICT (id) DO UPDATE SET nonce = excluded.nonce, at = excluded.at",
                    )
                    .bind(&self.probe_id)
                    .bind(&nonce)
                    .bind(super::now_ms())
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from);
                    (conn, done)
                };
                if let Err(e) = done {
                    release(conn, true);
                    return Err(e);
                }
                // Read back on another connection while this one is held (the one in-memory
                // SQLite connection reads its own).
                let (mut other, _held) = if self.single {
                    (conn, None)
                } else {
                    (self.pool.acquire().await?, Some(conn))
                };
                let seen: Option<String> =
                    sqlx::query_scalar("SELECT nonce FROM probe WHERE id = $1")
                        .bind(&self.probe_id)
                        .fetch_optional(&mut *other)
                        .await?;
                if seen.as_deref() == Some(nonce.as_str()) {
                    Ok(())
                } else {
                    Err(StoreError::NotVisible)
                }
            }
        }
    };
}

/// Inserts the collected events (multi-row, ignoring ones already there, and ones whose run row
/// does not hold their start's token) and empties the list.
macro_rules! insert_events {
    ($Db:ty, $conn:expr, $events:ident) => {
        for chunk in $events.chunks(EVENT_ROWS) {
            let mut insert = QueryBuilder::<$Db>::new("WITH v (run_id, seq, data, token) AS (");
            insert.push_values(chunk, |mut row, (run_id, seq, data, token)| {
                row.push_bind(*run_id)
                    .push_bind(*seq)
                    .push_bind(data.as_ref())
                    .push_bind(*token);
            });
            insert.push(
                ") INSERT INTO events (run_id, seq, data) SELECT v.run_id, v.seq, v.data \
                 FROM v, runs r WHERE r.id = v.run_id AND r.start_token = v.token \
                 ON CONFLICT (run_id, seq) DO NOTHING",
            );
            insert.build().execute($conn).await?;
        }
        $events.clear();
    };
}

/// The bytes of a run's input as its client sent it, counted for the storage quota.
fn input_bytes(run: &RunRecord) -> i64 {
    i64::try_from(run.input.len()).unwrap_or(i64::MAX)
}

sql_store!(SqliteStore, sqlx::Sqlite);
sql_store!(PgStore, sqlx::Postgres);
