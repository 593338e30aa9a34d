//! The two SQL stores. Their SQL is the same text (`$n` parameters work in both), so one macro
//! writes both implementations; only opening the pool and the migrations differ.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use super::{
    LastTurn, RunRecord, RunStatus, Started, Store, StoreError, StoredEvent, ThreadRecord,
    ThreadTurn, Write,
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

pub struct SqliteStore {
    pool: SqlitePool,
    /// Held by the run path's write transactions (a run starting, the writer's batch).
    writing: Mutex<()>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // WAL: readers do not block the writer and a crash leaves a consistent file;
        // `synchronous=NORMAL` is durable across process crashes in WAL mode.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
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
        Ok(Self {
            pool,
            writing: Mutex::new(()),
        })
    }

    /// A write transaction of the run path. SQLite has one writer at a time: a run starting
    /// while the writer's batch commits waits here for exactly that commit, where SQLite's busy
    /// handler would sleep 1, 2, 5… ms between tries.
    async fn begin_write(
        &self,
    ) -> Result<(Transaction<'static, Sqlite>, MutexGuard<'_, ()>), StoreError> {
        let turn = self.writing.lock().await;
        Ok((self.pool.begin().await?, turn))
    }

    async fn begin_record(
        &self,
    ) -> Result<(Transaction<'static, Sqlite>, MutexGuard<'_, ()>), StoreError> {
        self.begin_write().await
    }
}

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // A pool hides why it cannot connect ("timed out"); one plain connection says why.
        sqlx::PgConnection::connect(url).await?.close().await?;
        let pool = pool_options()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// PostgreSQL locks rows, not the database: writers need no turns.
    async fn begin_write(&self) -> Result<(Transaction<'static, Postgres>, ()), StoreError> {
        Ok((self.pool.begin().await?, ()))
    }

    /// The transaction recording a run on its way to its stream. Its commit does not wait for the
    /// WAL flush (an fsync): should the server crash (not this process: the database) within
    /// `wal_writer_delay` the run would be gone, as it would had it started that much later; the
    /// writer's next batch, which holds the run's first events, is durable and flushes it too.
    async fn begin_record(&self) -> Result<(Transaction<'static, Postgres>, ()), StoreError> {
        let tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit TO OFF")
            .await?;
        Ok((tx, ()))
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    thread_id: String,
    parent_run_id: Option<String>,
    created: i64,
    finished: Option<i64>,
    status: String,
    input: String,
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
            input: r.input,
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

#[derive(sqlx::FromRow)]
struct TurnRow {
    owner: String,
    run_id: Option<String>,
    input: Option<String>,
    answer: Option<String>,
}

const RUN_COLUMNS: &str = "r.id, r.thread_id, r.parent_run_id, r.created, r.finished, r.status, \
                           r.input, r.result, r.usage, r.answer, r.llm_requests, r.events_cut, \
                           r.metadata";
const INSERT_THREAD: &str = "INSERT INTO threads (id, room, owner, created, name, description) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const INSERT_RUN: &str = "INSERT INTO runs (id, thread_id, parent_run_id, created, finished, \
                          status, input, result, usage, answer, llm_requests, events_cut, metadata) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                          ON CONFLICT (id) DO NOTHING";
/// A pending run of the thread becomes the run starting: one conditional statement, so of two
/// starts of the same run (here or in another replica) only one finds it pending.
const START_PENDING: &str = "UPDATE runs SET status = $3, input = $4, \
                             parent_run_id = COALESCE($5, parent_run_id) \
                             WHERE id = $1 AND thread_id = $2 AND status = 'pending'";
/// Rows per multi-row event insert: 3 parameters each, far below either database's limit.
const EVENT_ROWS: usize = 500;

macro_rules! sql_store {
    ($Store:ident, $Db:ty) => {
        impl $Store {
            fn thread_query<'q>(
                t: &'q ThreadRecord,
            ) -> sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>> {
                sqlx::query(INSERT_THREAD)
                    .bind(&t.id)
                    .bind(&t.room)
                    .bind(&t.owner)
                    .bind(t.created)
                    .bind(&t.name)
                    .bind(&t.description)
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
                        room == thread.room && owner == thread.owner
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
            ) -> sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>> {
                sqlx::query(INSERT_RUN)
                    .bind(&r.id)
                    .bind(&r.thread_id)
                    .bind(&r.parent_run_id)
                    .bind(created)
                    .bind(r.finished)
                    .bind(r.status.as_str())
                    .bind(&r.input)
                    .bind(&r.result)
                    .bind(&r.usage)
                    .bind(&r.answer)
                    .bind(r.llm_requests)
                    .bind(i64::from(r.events_cut))
                    .bind(&r.metadata)
            }

            /// Starts the run if it is pending in its thread; whether it was.
            async fn start_pending(
                conn: &mut <$Db as sqlx::Database>::Connection,
                r: &RunRecord,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(START_PENDING)
                    .bind(&r.id)
                    .bind(&r.thread_id)
                    .bind(r.status.as_str())
                    .bind(&r.input)
                    .bind(&r.parent_run_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Inserts the run unless its id is taken or its thread has `max_runs` runs; with the
            /// `created` it was given: later than its thread's other runs', so that oldest first
            /// is the order they were made in even within a millisecond.
            async fn insert_run(
                conn: &mut <$Db as sqlx::Database>::Connection,
                run: &RunRecord,
                max_runs: Option<i64>,
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
                let done = Self::run_query(run, created).execute(&mut *conn).await?;
                let outcome = if done.rows_affected() > 0 {
                    Started::Recorded
                } else {
                    Started::RunExists
                };
                Ok((outcome, created))
            }

            /// Records the run with its thread if new, in one transaction; a pending run of the
            /// thread is started when `start` (and the run is not pending itself). With the
            /// `created` an inserted run got.
            async fn record_run(
                &self,
                thread: &ThreadRecord,
                run: &RunRecord,
                max_runs: Option<i64>,
                start: bool,
            ) -> Result<(Started, i64), StoreError> {
                let (mut tx, _turn) = self.begin_record().await?;
                let thread_is = Self::thread_in_room(&mut tx, thread).await?;
                let started = start && run.status != RunStatus::Pending;
                let outcome = match thread_is {
                    ThreadIs::Other => return Ok((Started::OtherRoom, run.created)),
                    // A thread made just now has no runs: none pending, none to count or follow.
                    ThreadIs::New if max_runs.is_none_or(|max| max > 0) => {
                        let done = Self::run_query(run, run.created).execute(&mut *tx).await?;
                        let outcome = if done.rows_affected() > 0 {
                            Started::Recorded
                        } else {
                            Started::RunExists
                        };
                        (outcome, run.created)
                    }
                    _ if started && Self::start_pending(&mut tx, run).await? => {
                        (Started::Recorded, run.created)
                    }
                    _ => Self::insert_run(&mut tx, run, max_runs).await?,
                };
                if outcome.0 == Started::Recorded {
                    tx.commit().await?;
                }
                Ok(outcome)
            }
        }

        #[async_trait]
        impl Store for $Store {
            async fn put_thread(&self, thread: &ThreadRecord) -> Result<bool, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Ok(Self::thread_in_room(&mut conn, thread).await? != ThreadIs::Other)
            }

            async fn create_run(
                &self,
                thread: &ThreadRecord,
                run: &mut RunRecord,
                max_runs: i64,
            ) -> Result<Started, StoreError> {
                let (outcome, created) =
                    self.record_run(thread, run, Some(max_runs), false).await?;
                run.created = created;
                Ok(outcome)
            }

            async fn start_run(
                &self,
                thread: &ThreadRecord,
                run: &RunRecord,
                max_runs: Option<i64>,
            ) -> Result<Started, StoreError> {
                Ok(self.record_run(thread, run, max_runs, true).await?.0)
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

            async fn thread_turn(
                &self,
                room: &str,
                id: &str,
            ) -> Result<Option<ThreadTurn>, StoreError> {
                let row: Option<TurnRow> = sqlx::query_as(
                    "SELECT t.owner, r.id AS run_id, r.input, r.answer FROM threads t \
                     LEFT JOIN runs r ON r.id = (SELECT id FROM runs WHERE thread_id = t.id \
                     AND status = 'finished' ORDER BY created DESC, id DESC LIMIT 1) \
                     WHERE t.id = $1 AND t.room = $2",
                )
                .bind(id)
                .bind(room)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| ThreadTurn {
                    owner: r.owner,
                    last: r.run_id.zip(r.input).map(|(run_id, input)| LastTurn {
                        run_id,
                        input,
                        answer: r.answer,
                    }),
                }))
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
                .bind(name)
                .bind(description)
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
            ) -> Result<Vec<RunRecord>, StoreError> {
                let rows: Vec<RunRow> = sqlx::query_as(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs r JOIN threads t ON t.id = r.thread_id \
                     WHERE t.id = $1 AND t.room = $2 ORDER BY r.created, r.id"
                ))
                .bind(thread_id)
                .bind(room)
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
                let (mut tx, _turn) = self.begin_write().await?;
                let mut events: Vec<(&str, i64, &str)> = Vec::new();
                for write in batch {
                    if let Write::Event { run_id, seq, data } = write {
                        events.push((run_id, *seq, data));
                        continue;
                    }
                    // Events go in before anything that follows them (their run's finish).
                    insert_events!($Db, &mut *tx, events);
                    match write {
                        Write::Thread(t) => {
                            Self::thread_query(t).execute(&mut *tx).await?;
                        }
                        Write::Run(r) => {
                            if !Self::start_pending(&mut tx, r).await? {
                                Self::run_query(r, r.created).execute(&mut *tx).await?;
                            }
                        }
                        Write::Finish {
                            run_id,
                            status,
                            finished,
                            end,
                        } => {
                            // Only a run that has not ended: a finished run is never rewritten
                            // by a later one that reused its id while the database was away.
                            sqlx::query(
                                "UPDATE runs SET status = $2, finished = $3, result = $4, \
                                 usage = $5, answer = $6, llm_requests = $7 \
                                 WHERE id = $1 AND status IN ('running', 'interrupted')",
                            )
                            .bind(run_id)
                            .bind(status.as_str())
                            .bind(finished)
                            .bind(&end.result)
                            .bind(&end.usage)
                            .bind(&end.answer)
                            .bind(end.llm_requests)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Write::Cut { run_id } => {
                            sqlx::query("UPDATE runs SET events_cut = 1 WHERE id = $1")
                                .bind(run_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                        Write::Event { .. } => {}
                    }
                }
                insert_events!($Db, &mut *tx, events);
                tx.commit().await?;
                Ok(())
            }

            async fn interrupt_running(&self, now: i64) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE runs SET status = 'interrupted', finished = $1 \
                     WHERE status = 'running'",
                )
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
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
                .bind(metadata)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn add_feedback(&self, run_id: &str, data: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "INSERT INTO feedback (run_id, created, data) \
                     SELECT id, $2, $3 FROM runs WHERE id = $1",
                )
                .bind(run_id)
                .bind(super::now_ms())
                .bind(data)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

/// Inserts the collected events (multi-row, ignoring ones already there) and empties the list.
macro_rules! insert_events {
    ($Db:ty, $conn:expr, $events:ident) => {
        for chunk in $events.chunks(EVENT_ROWS) {
            let mut insert = QueryBuilder::<$Db>::new("INSERT INTO events (run_id, seq, data) ");
            insert.push_values(chunk, |mut row, (run_id, seq, data)| {
                row.push_bind(*run_id).push_bind(*seq).push_bind(*data);
            });
            insert.push(" ON CONFLICT (run_id, seq) DO NOTHING");
            insert.build().execute($conn).await?;
        }
        $events.clear();
    };
}

sql_store!(SqliteStore, sqlx::Sqlite);
sql_store!(PgStore, sqlx::Postgres);
