//! Ten thousand persisted runs held open at once, the store off and on (SQLite), side by side:
//! `RUN_STARTED` under a burst, the rate runs are admitted at, memory per open run, CPU while
//! they all wait on a backend that never answers, and the cancel storm when every client leaves
//! (how long until the server is idle, and the backend calls it made meanwhile: each one wasted).

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::client::{client, open};
use crate::harness::{SseReader, TempDir};
use crate::mock_llm::MockLlm;
use crate::overhead::{rooms, settings, SECTIONING};
use crate::script::hanging;
use crate::server::ServerProc;
use crate::stats::{ms, Spread};
use crate::store::Backend;
use crate::BenchError;

/// Runs opening at once in the burst, and at most in flight while the rest are admitted.
const BURST: usize = 256;
/// Backend slots: a few runs' calls are in flight, the rest wait in the queue.
const SLOTS: usize = 64;
/// How long the held runs' CPU is measured.
const IDLE: Duration = Duration::from_secs(10);
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

struct Row {
    backend: &'static str,
    opened: usize,
    burst: Spread,
    admit_rate: f64,
    kib_per_run: f64,
    idle_cores: f64,
    cancel: Duration,
    idle_after: bool,
    wasted: usize,
}

pub async fn run(runs: usize) -> Result<(), BenchError> {
    let mut rows = Vec::new();
    for backend in [Backend::None, Backend::Sqlite(TempDir::new())] {
        rows.push(measure(&backend, runs).await?);
    }
    println!(
        "{runs} {}-task sectioning runs held open on a backend that never answers ({SLOTS} slots); clients leave at once (no detached grace)",
        SECTIONING.tasks
    );
    println!(
        "{:<7} {:>8} {:>22} {:>12} {:>13} {:>10} {:>12} {:>14}",
        "store",
        "opened",
        "RUN_STARTED (burst)",
        "admitted/s",
        "RSS per run",
        "idle CPU",
        "cancel all",
        "calls wasted"
    );
    for r in &rows {
        println!(
            "{:<7} {:>8} {:>22} {:>12.0} {:>13} {:>10} {:>12} {:>14}",
            r.backend,
            format!("{}/{runs}", r.opened),
            format!("{} ms", r.burst.ms()),
            r.admit_rate,
            format!("{:.1} KiB", r.kib_per_run),
            format!("{:.3} core", r.idle_cores),
            format!(
                "{} ms{}",
                ms(r.cancel),
                if r.idle_after { "" } else { " (NOT idle)" }
            ),
            r.wasted,
        );
    }
    println!("(RUN_STARTED: p50 / p99 of {BURST} runs opened at once on an idle server, request sent to the event read; admitted/s: the other runs, {BURST} at a time; idle CPU over {} s with every run held; cancel all: every client gone to no run left; calls wasted: backend calls begun after the clients left)", IDLE.as_secs());
    Ok(())
}

async fn measure(backend: &Backend, runs: usize) -> Result<Row, BenchError> {
    let http = client();
    let mock = MockLlm::start().await;
    hanging(&mock);
    let mut config = settings(&[&mock], SLOTS, runs * SECTIONING.tasks);
    config.database_url = backend.url();
    config.detached_grace = Duration::ZERO;
    config.max_connections = runs + 2 * BURST;
    config.llm.first_byte_timeout = Duration::from_secs(3600);
    config.llm.request_timeout = Duration::from_secs(3600);
    let mut server = ServerProc::start(config, &rooms()).await?;
    let url = server.run_url("five");
    let body = SECTIONING.body();
    let before = server.usage().await?;

    let open_one = || async {
        let start = Instant::now();
        let mut reader: SseReader = open(&http, &url, &body).await?;
        reader
            .next_event()
            .await
            .ok_or_else(|| BenchError::Run("a stream ended before RUN_STARTED".into()))?;
        Ok::<_, BenchError>((reader, start.elapsed()))
    };
    let burst: Vec<Result<_, BenchError>> = futures::stream::iter(0..BURST.min(runs))
        .map(|_| open_one())
        .buffer_unordered(BURST)
        .collect()
        .await;
    let start = Instant::now();
    let rest: Vec<Result<_, BenchError>> = futures::stream::iter(BURST.min(runs)..runs)
        .map(|_| open_one())
        .buffer_unordered(BURST)
        .collect()
        .await;
    let admit = start.elapsed();
    let burst_times = Spread::of(burst.iter().flatten().map(|(_, t)| *t).collect());
    let admitted = rest.iter().flatten().count();
    let readers: Vec<SseReader> = burst
        .into_iter()
        .chain(rest)
        .filter_map(|r| r.ok().map(|(reader, _)| reader))
        .collect();
    let opened = readers.len();
    server
        .wait_for(&http, SETTLE_LIMIT, |s| {
            let calls = SLOTS.min(opened * SECTIONING.tasks);
            s["runs_in_flight"] == opened
                && s["llm"]["in_flight"] == calls
                && mock.in_flight() == calls
        })
        .await?;

    let held = server.usage().await?;
    tokio::time::sleep(IDLE).await;
    let idle = server.usage().await?;

    let sent = mock.request_count();
    let start = Instant::now();
    drop(readers);
    let (idle_after, _) = server.wait_idle(&http, SETTLE_LIMIT).await?;
    let cancel = start.elapsed();
    Ok(Row {
        backend: backend.name(),
        opened,
        burst: burst_times,
        admit_rate: admitted as f64 / admit.as_secs_f64(),
        kib_per_run: held.rss_kib.saturating_sub(before.rss_kib) as f64 / opened.max(1) as f64,
        idle_cores: idle.cpu_since(&held).as_secs_f64() / IDLE.as_secs_f64(),
        cancel,
        idle_after,
        wasted: mock.request_count().saturating_sub(sent),
    })
}
