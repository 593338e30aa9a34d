//! The store's cost, measured in one run against the store off, SQLite and PostgreSQL (when
//! `--postgres` or `ROOMHOST_TEST_DATABASE_URL` names a server): the overhead ratio of
//! sectioning runs vs the critical path and their time to `RUN_STARTED` (the backends' runs
//! interleaved, so that the machine's load falls on each alike), 1,000 concurrent persisted runs
//! with the events written per second, database bytes per run, and the time from a reconnect to
//! the first replayed event.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sqlx::Connection;
use tokio::time::Instant;

use crate::client::{client, open, timed_run, Timing};
use crate::harness::{SseReader, TempDir};
use crate::mock_llm::MockLlm;
use crate::overhead::{calibrate, rooms, settings, SECTIONING};
use crate::script::paced_mocks;
use crate::server::ServerProc;
use crate::stats::{ms, Spread};
use crate::BenchError;

/// Calls in flight at once: never binds for the runs below.
const LIMIT: usize = 1024;
const ENDPOINTS: usize = 5;
/// Runs of the overhead rows at a time.
const CONCURRENCY: usize = 5;
/// Runs of one backend before the next backend's turn.
const ROUND: usize = 2 * CONCURRENCY;
/// Reconnects measured per backend.
const RECONNECTS: usize = 50;

pub enum Backend {
    None,
    Sqlite(TempDir),
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::None => "off",
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Backend::None => "none".into(),
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.path.join("bench.db").display()),
            Backend::Postgres(url) => url.clone(),
        }
    }

    /// The database's size on disk, bytes.
    async fn bytes(&self) -> Result<u64, BenchError> {
        match self {
            Backend::None => Ok(0),
            Backend::Sqlite(dir) => Ok(["bench.db", "bench.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(dir.path.join(f)).ok())
                .map(|m| m.len())
                .sum()),
            Backend::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.map_err(db)?;
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(db)?;
                Ok(u64::try_from(size).unwrap_or(0))
            }
        }
    }
}

fn db(e: sqlx::Error) -> BenchError {
    BenchError::Server(format!("database: {e}"))
}

/// A fresh database on the PostgreSQL server at `server`.
pub async fn fresh_postgres(server: &str) -> Result<String, BenchError> {
    let name = format!("rh_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server).await.map_err(db)?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .map_err(db)?;
    let mut url = reqwest::Url::parse(server).map_err(|e| BenchError::Server(e.to_string()))?;
    url.set_path(&name);
    Ok(url.to_string())
}

struct Row {
    backend: &'static str,
    overhead: Spread,
    first_event: Spread,
    burst: usize,
    burst_finished: usize,
    burst_wall: Duration,
    recorded: Duration,
    events: usize,
    bytes_per_run: f64,
    replay: Spread,
    resume: Spread,
}

pub async fn run(
    runs: usize,
    call: Duration,
    burst: usize,
    postgres: Option<String>,
) -> Result<(), BenchError> {
    let http = client();
    let mocks = paced_mocks(ENDPOINTS, call).await;
    let l = calibrate(&http, &mocks[0], runs).await?.median;
    let mut backends = vec![Backend::None, Backend::Sqlite(TempDir::new())];
    match postgres {
        Some(server) => backends.push(Backend::Postgres(fresh_postgres(&server).await?)),
        None => println!("(PostgreSQL skipped: give --postgres URL or ROOMHOST_TEST_DATABASE_URL)"),
    }
    let mut servers = Vec::new();
    for backend in &backends {
        servers.push(serve(backend, &mocks, burst).await?);
    }
    let overheads = interleaved(&servers, runs).await?;
    let mut rows = Vec::new();
    for ((backend, server), (overhead, first_event)) in backends.iter().zip(&servers).zip(overheads)
    {
        rows.push(measure(backend, server, overhead, first_event, burst).await?);
    }
    println!(
        "\n{runs} sectioning runs ({} tasks, {CONCURRENCY} at a time, the backends taking turns every {ROUND}) per overhead row, L = {} ms alone; a burst of {burst} concurrent runs",
        SECTIONING.tasks,
        ms(l)
    );
    println!(
        "{:<11} {:>17} {:>13} {:>13} {:>17} {:>16} {:>14} {:>12} {:>16} {:>16}",
        "store",
        "run p50 / p99",
        "ratio vs L",
        "vs off",
        "RUN_STARTED",
        "burst finished",
        "burst wall",
        "events/s",
        "bytes per run",
        "reconnect p50/p99"
    );
    let off = rows[0].overhead.median.as_secs_f64();
    for r in &rows {
        let ratio = r.overhead.median.as_secs_f64() / l.as_secs_f64();
        let vs_off = r.overhead.median.as_secs_f64() / off;
        let rate = if r.backend == "off" {
            "-".to_owned()
        } else {
            format!("{:.0}", r.events as f64 / r.recorded.as_secs_f64())
        };
        println!(
            "{:<11} {:>17} {:>13} {:>13} {:>17} {:>16} {:>14} {:>12} {:>16} {:>16}",
            r.backend,
            r.overhead.ms(),
            format!("{ratio:.3}"),
            format!("{vs_off:.4}"),
            r.first_event.ms(),
            format!("{}/{}", r.burst_finished, r.burst),
            format!("{} ms", ms(r.burst_wall)),
            rate,
            format!("{:.0}", r.bytes_per_run),
            if r.backend == "off" {
                "-".to_owned()
            } else {
                r.resume.ms()
            },
        );
        if r.backend != "off" {
            println!(
                "{:<11} first replayed event of a finished run: {} ms; every burst event written {} ms after the burst began",
                "", r.replay.ms(), ms(r.recorded)
            );
        }
    }
    println!("(times in ms; RUN_STARTED = request sent to the run's first event read, p50 / p99; reconnect = GET .../events with Last-Event-ID of a live run to its next event)");
    Ok(())
}

/// A server on the backend, warmed up by one run.
async fn serve(
    backend: &Backend,
    mocks: &[MockLlm],
    burst: usize,
) -> Result<ServerProc, BenchError> {
    let mock_refs: Vec<&MockLlm> = mocks.iter().collect();
    let mut config = settings(&mock_refs, LIMIT, burst * SECTIONING.tasks * 2);
    config.database_url = backend.url();
    let server = ServerProc::start(config, &rooms()).await?;
    timed_run(&client(), &server.run_url("five"), &SECTIONING.body()).await?;
    Ok(server)
}

/// `runs` sectioning runs on each server, [`ROUND`] at a time per server in turn (the first
/// server of each round rotating): each one's total and time to its first event.
async fn interleaved(
    servers: &[ServerProc],
    runs: usize,
) -> Result<Vec<(Spread, Spread)>, BenchError> {
    let http = client();
    let body = SECTIONING.body();
    let mut timings: Vec<Vec<Timing>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..runs.div_ceil(ROUND) {
        let count = ROUND.min(runs - round * ROUND);
        for turn in 0..servers.len() {
            let i = (round + turn) % servers.len();
            let url = servers[i].run_url("five");
            let done: Vec<Result<Timing, BenchError>> = futures::stream::iter(0..count)
                .map(|_| timed_run(&http, &url, &body))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for t in done {
                timings[i].push(t?);
            }
        }
    }
    Ok(timings
        .iter()
        .map(|t| {
            (
                Spread::of(t.iter().map(|t| t.total).collect()),
                Spread::of(t.iter().map(|t| t.first_event).collect()),
            )
        })
        .collect())
}

async fn measure(
    backend: &Backend,
    server: &ServerProc,
    overhead: Spread,
    first_event: Spread,
    burst: usize,
) -> Result<Row, BenchError> {
    let http = client();
    let url = server.run_url("five");

    // The burst: every run at once, each with its own id to look it up afterwards.
    let bytes_before = backend.bytes().await?;
    let start = Instant::now();
    let ids: Vec<String> = (0..burst)
        .map(|i| format!("burst-{i}-{}", uuid::Uuid::new_v4()))
        .collect();
    let done: Vec<Result<Timing, BenchError>> = futures::stream::iter(ids.iter())
        .map(|id| {
            let body = json!({"runId": id, "prompt": SECTIONING.prompt, "forwardedProps": {"strategy": "sectioning"}});
            let (http, url) = (&http, &url);
            async move { timed_run(http, url, &body).await }
        })
        .buffer_unordered(burst)
        .collect()
        .await;
    let burst_wall = start.elapsed();
    let burst_finished = done.iter().flatten().filter(|t| t.finished()).count();
    let events: usize = done.iter().flatten().map(|t| t.events).sum();
    let recorded = match backend {
        Backend::None => burst_wall,
        _ => {
            // Recorded once the last run reads `finished`: the writer writes in order.
            for id in ids.iter().rev().take(1) {
                wait_recorded(&http, &server.url, id).await?;
            }
            for id in &ids {
                wait_recorded(&http, &server.url, id).await?;
            }
            start.elapsed()
        }
    };
    let bytes_per_run = (backend.bytes().await?.saturating_sub(bytes_before)) as f64 / burst as f64;

    let (replay, resume) = match backend {
        Backend::None => (Spread::default(), Spread::default()),
        _ => reconnects(&http, &server.url, &url, &ids).await?,
    };
    Ok(Row {
        backend: backend.name(),
        overhead,
        first_event,
        burst,
        burst_finished,
        burst_wall,
        recorded,
        events,
        bytes_per_run,
        replay,
        resume,
    })
}

/// `GET .../events` (after `last_id`, if given): the time to its first event, and the rest.
async fn first_event(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    last_id: Option<String>,
) -> Result<(Duration, SseReader), BenchError> {
    let start = Instant::now();
    let mut req = http.get(format!("{base}/rooms/five/runs/{run_id}/events"));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let mut reader = SseReader::new(req.send().await?);
    reader
        .next_event()
        .await
        .ok_or_else(|| BenchError::Run(format!("no event to follow in run {run_id}")))?;
    Ok((start.elapsed(), reader))
}

async fn wait_recorded(http: &reqwest::Client, base: &str, run_id: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run: serde_json::Value = http
            .get(format!("{base}/rooms/five/runs/{run_id}"))
            .send()
            .await?
            .json()
            .await?;
        if run["status"] == "finished" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Run(format!(
                "run {run_id} never recorded: {run}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Time to the first event: replaying finished runs from the start, and following a live run
/// after a dropped connection (`Last-Event-ID` of the last event read).
async fn reconnects(
    http: &reqwest::Client,
    base: &str,
    run_url: &str,
    finished: &[String],
) -> Result<(Spread, Spread), BenchError> {
    let mut replay = Vec::new();
    for id in finished.iter().take(RECONNECTS) {
        let (elapsed, _) = first_event(http, base, id, None).await?;
        replay.push(elapsed);
    }
    let mut resume = Vec::new();
    for _ in 0..RECONNECTS {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"runId": id, "prompt": SECTIONING.prompt, "forwardedProps": {"strategy": "sectioning"}});
        let mut reader = open(http, run_url, &body).await?;
        for _ in 0..8 {
            reader
                .next_event()
                .await
                .ok_or_else(|| BenchError::Run("run ended early".into()))?;
        }
        let last = reader.last_id.clone();
        drop(reader);
        let (elapsed, mut reader) = first_event(http, base, &id, last).await?;
        resume.push(elapsed);
        reader.read_to_end().await;
    }
    Ok((Spread::of(replay), Spread::of(resume)))
}
