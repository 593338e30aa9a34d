//! Scale: many concurrent 5-task sectioning runs with a generous limit, then thousands of open
//! streams that wait on a mock that never answers.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::client::{client, open, timed_run, Timing};
use crate::mock_llm::MockLlm;
use crate::overhead::{calibrate, rooms, settings, SECTIONING};
use crate::script::{hanging, paced_mocks};
use crate::server::ServerProc;
use crate::stats::{kib_each, mib, ms, Spread};
use crate::system::Usage;
use crate::BenchError;

/// Endpoints the calls are spread over: one endpoint's limit tops out at 1,024.
const ENDPOINTS: usize = 5;
const TASKS: usize = 5;
/// Idle time before RSS is read again after a burst.
const SETTLE: Duration = Duration::from_secs(20);

pub async fn concurrent_runs(runs: usize, call: Duration) -> Result<(), BenchError> {
    let http = client();
    let mocks = paced_mocks(ENDPOINTS, call).await;
    let l = calibrate(&http, &mocks[0], 20).await?.median;
    let limit = (runs * TASKS).div_ceil(ENDPOINTS).clamp(1, 1024);
    let mock_refs: Vec<&MockLlm> = mocks.iter().collect();
    let mut server = ServerProc::start(settings(&mock_refs, limit, runs * TASKS), &rooms()).await?;
    let url = server.run_url("five");
    let body = SECTIONING.body();
    timed_run(&http, &url, &body).await?;
    let idle = server.usage().await?;
    let here = Usage::now()?;

    // The first wave opens the connections (client to server, server to mocks); the second is
    // measured.
    let warm_up = Instant::now();
    wave(&http, &url, &body, runs).await;
    let warm_up = warm_up.elapsed();
    let start = Instant::now();
    let timings = wave(&http, &url, &body, runs).await;
    let wall = start.elapsed();
    let after = server.usage().await?;
    let here_after = Usage::now()?;
    let (idle_ok, _) = server.wait_idle(&http, Duration::from_secs(10)).await?;
    // Whether the allocator gives the burst's memory back once the server is idle again.
    tokio::time::sleep(SETTLE).await;
    let settled = server.usage().await?;
    let walls = warm_up + wall;
    let done: Vec<&Timing> = timings.iter().flatten().collect();
    let finished = done.iter().filter(|t| t.finished()).count();
    let errors = timings.iter().filter(|t| t.is_err()).count();
    let total = Spread::of(done.iter().map(|t| t.total).collect());
    let peak = mocks.iter().map(MockLlm::peak_in_flight).sum::<usize>();
    let events = done.iter().map(|t| t.events).sum::<usize>() / done.len().max(1);
    println!(
        "{runs} concurrent {TASKS}-task sectioning runs, L = {} ms nominal ({} ms alone), limit {limit} x {ENDPOINTS} endpoints",
        ms(call),
        ms(l)
    );
    println!(
        "  completed: {finished}/{runs} finished, {errors} failed; wall {} ms -> {:.0} runs/s",
        ms(wall),
        runs as f64 / wall.as_secs_f64()
    );
    println!(
        "  run time p50 / p99: {} ms; vs ideal {} ms: ratio {:.3} / {:.3}",
        total.ms(),
        ms(l),
        total.median.as_secs_f64() / l.as_secs_f64(),
        total.p99.as_secs_f64() / l.as_secs_f64()
    );
    println!(
        "  {events} events per run; mock calls in flight at the peak: {peak}; server back to idle after: {}",
        if idle_ok { "yes" } else { "NO" }
    );
    println!(
        "  server RSS: idle {}, peak {} -> {} per open stream; {} s after the burst {}",
        mib(idle.rss_kib),
        mib(after.peak_rss_kib),
        kib_each(after.peak_rss_kib.saturating_sub(idle.rss_kib), runs),
        SETTLE.as_secs(),
        mib(settled.rss_kib),
    );
    println!(
        "  CPU over both waves: server {:.2} s, mock + load generator {:.2} s (2 waves, {:.1} s wall)",
        after.cpu_since(&idle).as_secs_f64(),
        here_after.cpu_since(&here).as_secs_f64(),
        walls.as_secs_f64()
    );
    Ok(())
}

/// `runs` runs at once.
async fn wave(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    runs: usize,
) -> Vec<Result<Timing, BenchError>> {
    futures::stream::iter(0..runs)
        .map(|_| timed_run(http, url, body))
        .buffer_unordered(runs)
        .collect()
        .await
}

pub async fn idle_streams(streams: usize) -> Result<(), BenchError> {
    let http = client();
    let mock = MockLlm::start().await;
    hanging(&mock);
    let mut settings = settings(&[&mock], 64, streams * TASKS);
    settings.llm.first_byte_timeout = Duration::from_secs(3600);
    settings.llm.request_timeout = Duration::from_secs(3600);
    // Runs end as their clients leave: with a grace they would go on detached for it, and the
    // server could not be idle within the wait below.
    settings.detached_grace = Duration::ZERO;
    let mut server = ServerProc::start(settings, &rooms()).await?;
    let before = server.usage().await?;
    println!(
        "{streams} open streams waiting on a mock that never answers (5-task sectioning, limit 64), three rounds; server RSS before: {}",
        mib(before.rss_kib)
    );
    // Later rounds show whether the memory of the first is reused or lost.
    for round in 1..=3 {
        idle_round(&http, &mut server, &mock, streams, before, round).await?;
    }
    Ok(())
}

async fn idle_round(
    http: &reqwest::Client,
    server: &mut ServerProc,
    mock: &MockLlm,
    streams: usize,
    before: Usage,
    round: usize,
) -> Result<(), BenchError> {
    let url = server.run_url("five");
    let body = SECTIONING.body();
    let start = Instant::now();
    let opened: Vec<Result<_, BenchError>> = futures::stream::iter(0..streams)
        .map(|_| async {
            let mut reader = open(http, &url, &body).await?;
            reader.next_event().await;
            Ok(reader)
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let open_time = start.elapsed();
    let failed = opened.iter().filter(|r| r.is_err()).count();
    let ok = streams - failed;
    let (settled, _) = server
        .wait_for(http, Duration::from_secs(60), |s| {
            let calls = s["llm"]["in_flight"].as_u64().unwrap_or(0)
                + s["llm"]["queued"].as_u64().unwrap_or(0);
            s["runs_in_flight"] == ok && calls == (ok * TASKS) as u64
        })
        .await?;
    let held = server.usage().await?;
    drop(opened);
    let (closed, stats) = server.wait_idle(http, Duration::from_secs(60)).await?;
    let after = server.usage().await?;
    println!(
        "  round {round}: opened {ok} in {} ms ({failed} failed), every run and call registered: {}",
        ms(open_time),
        if settled { "yes" } else { "NO" },
    );
    println!(
        "    RSS with the streams open {} -> {} per stream; after the clients left {}",
        mib(held.rss_kib),
        kib_each(held.rss_kib.saturating_sub(before.rss_kib), ok),
        mib(after.rss_kib)
    );
    println!(
        "    after the clients left: server idle {} ({stats}), mock calls still open {}",
        if closed { "yes" } else { "NO" },
        mock.in_flight(),
    );
    Ok(())
}
