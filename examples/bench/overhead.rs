//! Overhead vs the critical path, per strategy: every mock call takes L, so a run's ideal time is
//! its number of waves times L (measured on the mock alone). Also time to first event and to the
//! first text of the answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use roomhost::auth::AuthMode;
use roomhost::config::Settings;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::client::{client, timed_run, Timing};
use crate::harness::{slots, TempDir};
use crate::mock_llm::MockLlm;
use crate::script::paced;
use crate::server::{room, ServerProc};
use crate::stats::{ms, Spread};
use crate::BenchError;

/// Tokens per mock call.
pub const TOKENS: usize = 20;
/// Concurrency limit that never binds.
const GENEROUS: usize = 64;
/// Runs at a time when the limit does not bind; one at a time when it does (the limit is shared).
const GENEROUS_CONCURRENCY: usize = 5;

pub struct Case {
    pub name: &'static str,
    pub room: &'static str,
    pub strategy: &'static str,
    pub prompt: &'static str,
    /// Parallel calls.
    pub tasks: usize,
    /// Calls after the fan-out: the reduce, the judge.
    pub after: usize,
}

pub const SECTIONING: Case = Case {
    name: "sectioning",
    room: "five",
    strategy: "sectioning",
    prompt: "Write about renewable energy: Solar, Wind, Hydro, Geothermal, Tidal",
    tasks: 5,
    after: 0,
};
const MAP_REDUCE: Case = Case {
    name: "map-reduce",
    room: "five",
    strategy: "map_reduce",
    prompt: "Summarize: the first report | the second report | the third report | the fourth report | the fifth report",
    tasks: 5,
    after: 1,
};
const VOTING: Case = Case {
    name: "voting",
    room: "five",
    strategy: "voting",
    prompt: "Is remote work better than office work?",
    tasks: 5,
    after: 0,
};
// Four voters alternate yes/no: a tie, broken by a judge call.
const VOTING_TIED: Case = Case {
    name: "voting, tie + judge",
    room: "four",
    strategy: "voting",
    prompt: "Is remote work better than office work?",
    tasks: 4,
    after: 1,
};

pub fn rooms() -> Vec<String> {
    vec![
        room("five", "    num_voters: 5\n"),
        room("four", "    num_voters: 4\n    tie_break: judge\n"),
    ]
}

impl Case {
    pub fn body(&self) -> serde_json::Value {
        json!({"prompt": self.prompt, "forwardedProps": {"strategy": self.strategy}})
    }

    fn waves(&self, limit: usize) -> usize {
        self.tasks.div_ceil(limit) + self.after
    }
}

struct Row {
    name: &'static str,
    tasks: usize,
    limit: usize,
    waves: usize,
    ideal: Duration,
    total: Spread,
    first_event: Spread,
    first_text: Spread,
    finished: usize,
    runs: usize,
    calls: usize,
    calls_expected: usize,
}

pub async fn run(runs: usize, call: Duration) -> Result<(), BenchError> {
    let http = client();
    let calibration = MockLlm::start().await;
    paced(&calibration, call, TOKENS);
    let alone = calibrate(&http, &calibration, runs).await?;
    let l = alone.median;
    println!(
        "L, one mock call alone: nominal {} ms ({TOKENS} tokens {} ms apart); measured median / p99 {} ms",
        ms(call),
        ms(call / TOKENS as u32),
        alone.ms()
    );

    let mut rows = Vec::new();
    for case in [SECTIONING, MAP_REDUCE, VOTING, VOTING_TIED] {
        rows.push(
            measure(
                &case,
                GENEROUS,
                GENEROUS_CONCURRENCY,
                runs,
                call,
                l,
                &Ops::ON,
            )
            .await?,
        );
    }
    let limited = [SECTIONING, MAP_REDUCE, VOTING];
    let limited = futures::future::join_all(
        limited
            .iter()
            .map(|case| measure(case, 2, 1, runs, call, l, &Ops::ON)),
    )
    .await;
    for row in limited {
        rows.push(row?);
    }
    print_rows(&rows, runs);
    Ok(())
}

/// The mock alone, `runs` calls, a few at a time like the runs.
pub async fn calibrate(
    http: &reqwest::Client,
    mock: &MockLlm,
    runs: usize,
) -> Result<Spread, BenchError> {
    let times: Vec<Result<(Duration, usize), BenchError>> = futures::stream::iter(0..runs)
        .map(|_| crate::script::direct_call(http, mock))
        .buffer_unordered(GENEROUS_CONCURRENCY)
        .collect()
        .await;
    let times = times
        .into_iter()
        .map(|t| t.map(|(d, _)| d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Spread::of(times))
}

pub fn settings(mocks: &[&MockLlm], limit: usize, queue: usize) -> Settings {
    let mut settings = Settings {
        // The store's cost is measured on its own (`store` section).
        database_url: "none".into(),
        ..Settings::default()
    };
    settings.llm.base_urls = mocks.iter().map(|m| m.url()).collect();
    settings.llm.max_concurrency = slots(limit);
    settings.llm.max_queue = queue;
    settings
}

/// Metrics, sign-in, traces and the store for a row: off, or on (metrics recorded, every
/// request's API key checked, every run and LLM call exported as a span, runs kept in SQLite).
pub struct Ops {
    name: &'static str,
    metrics: bool,
    api_key: Option<&'static str>,
    traces: bool,
    store: bool,
}

impl Ops {
    /// The defaults with the store off (the `store` section measures it on its own).
    const ON: Ops = Ops {
        name: "metrics",
        metrics: true,
        api_key: None,
        traces: false,
        store: false,
    };
    /// The `ops` section's rows, with the default store (SQLite) on.
    const ROWS: [Ops; 4] = [
        Ops {
            name: "off",
            metrics: false,
            ..Ops::STORED
        },
        Ops::STORED,
        Ops {
            name: "metrics + keys",
            api_key: Some("bench-key"),
            ..Ops::STORED
        },
        Ops {
            name: "metrics + traces",
            traces: true,
            ..Ops::STORED
        },
    ];
    const STORED: Ops = Ops {
        store: true,
        ..Ops::ON
    };

    fn apply(&self, settings: &mut Settings) {
        settings.metrics = self.metrics;
        if let Some(key) = self.api_key {
            let hex: String = Sha256::digest(key.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            settings.auth = AuthMode::Keys;
            settings.api_keys = vec![format!("bench:{hex}")];
        }
    }

    fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = self
            .api_key
            .and_then(|key| reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).ok())
        {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .default_headers(headers)
            .build()
            .unwrap_or_else(|_| client())
    }
}

/// The same rows with metrics, sign-in and traces off, then on: what they cost a run.
pub async fn ops(runs: usize, call: Duration) -> Result<(), BenchError> {
    let calibration = MockLlm::start().await;
    paced(&calibration, call, TOKENS);
    let l = calibrate(&client(), &calibration, runs).await?.median;
    println!("L measured median {} ms", ms(l));
    println!(
        "{:<12} {:<16} {:>17} {:>13} {:>17}",
        "strategy", "ops", "run p50 / p99", "ratio p50/p99", "1st answer text"
    );
    for case in [SECTIONING, VOTING] {
        // The p50 ratio of the row with everything off, and of the metrics row.
        let (mut off, mut metrics) = (f64::NAN, f64::NAN);
        for ops in &Ops::ROWS {
            let r = measure(&case, GENEROUS, GENEROUS_CONCURRENCY, runs, call, l, ops).await?;
            let ratio = |d: Duration| d.as_secs_f64() / r.ideal.as_secs_f64();
            println!(
                "{:<12} {:<16} {:>17} {:>13} {:>17}",
                r.name,
                ops.name,
                r.total.ms(),
                format!("{:.3} / {:.3}", ratio(r.total.median), ratio(r.total.p99)),
                r.first_text.ms(),
            );
            let p50 = ratio(r.total.median);
            match (ops.metrics, ops.api_key.is_some(), ops.traces) {
                (false, ..) => off = p50,
                (true, false, false) => {
                    metrics = p50;
                    println!(
                        "  metrics vs off: p50 ratio {:+.2}%",
                        (p50 / off - 1.0) * 100.0
                    )
                }
                (true, true, _) => println!(
                    "  metrics + keys vs off: p50 ratio {:+.2}%",
                    (p50 / off - 1.0) * 100.0
                ),
                (true, false, true) => println!(
                    "  traces on vs off (metrics row): p50 ratio {:+.2}%",
                    (p50 / metrics - 1.0) * 100.0
                ),
            }
        }
    }
    println!(
        "(store: SQLite file; traces sent to a local OTLP sink: {} KiB received)",
        EXPORTED.load(Ordering::Relaxed) / 1024
    );
    Ok(())
}

/// Bytes of trace exports the sinks received, to show the traced rows did export.
static EXPORTED: AtomicUsize = AtomicUsize::new(0);

/// An OTLP/HTTP collector that takes every export and keeps nothing.
async fn trace_sink() -> Result<String, BenchError> {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|body: axum::body::Bytes| async move {
            EXPORTED.fetch_add(body.len(), Ordering::Relaxed);
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[allow(clippy::too_many_arguments)] // one row's parameters, each named at the call
async fn measure(
    case: &Case,
    limit: usize,
    concurrency: usize,
    runs: usize,
    call: Duration,
    l: Duration,
    ops: &Ops,
) -> Result<Row, BenchError> {
    let mock = MockLlm::start().await;
    paced(&mock, call, TOKENS);
    let mut settings = settings(&[&mock], limit, 1024);
    ops.apply(&mut settings);
    let db = TempDir::new();
    if ops.store {
        settings.database_url = format!("sqlite://{}", db.path.join("bench.db").display());
    }
    if ops.traces {
        settings.otlp_endpoint = Some(trace_sink().await?);
    }
    let server = ServerProc::start(settings, &rooms()).await?;
    let http = ops.client();
    let url = server.run_url(case.room);
    let body = case.body();
    // Warm-up: connections, lazily built state.
    timed_run(&http, &url, &body).await?;
    mock.reset_stats();
    let timings: Vec<Result<Timing, BenchError>> = futures::stream::iter(0..runs)
        .map(|_| timed_run(&http, &url, &body))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let timings = timings.into_iter().collect::<Result<Vec<_>, _>>()?;
    let waves = case.waves(limit);
    Ok(Row {
        name: case.name,
        tasks: case.tasks,
        limit,
        waves,
        ideal: l * waves as u32,
        total: Spread::of(timings.iter().map(|t| t.total).collect()),
        first_event: Spread::of(timings.iter().map(|t| t.first_event).collect()),
        first_text: Spread::of(timings.iter().filter_map(|t| t.first_text).collect()),
        finished: timings.iter().filter(|t| t.finished()).count(),
        runs,
        calls: mock.request_count(),
        calls_expected: runs * (case.tasks + case.after),
    })
}

fn print_rows(rows: &[Row], runs: usize) {
    println!(
        "\n{runs} runs per row; limit P = LLM calls in flight; 5 runs at a time when P does not bind, 1 when it does"
    );
    println!(
        "{:<20} {:>2} {:>3} {:>5} {:>8} {:>17} {:>17} {:>13} {:>15} {:>17} {:>9} {:>9}",
        "strategy",
        "N",
        "P",
        "waves",
        "ideal",
        "run p50 / p99",
        "overhead p50/p99",
        "ratio p50/p99",
        "1st event",
        "1st answer text",
        "finished",
        "calls"
    );
    for r in rows {
        let over = |d: Duration| d.as_secs_f64() * 1000.0 - r.ideal.as_secs_f64() * 1000.0;
        let ratio = |d: Duration| d.as_secs_f64() / r.ideal.as_secs_f64();
        println!(
            "{:<20} {:>2} {:>3} {:>5} {:>8} {:>17} {:>17} {:>13} {:>15} {:>17} {:>9} {:>9}",
            r.name,
            r.tasks,
            r.limit,
            r.waves,
            ms(r.ideal),
            r.total.ms(),
            format!("{:+.1} / {:+.1}", over(r.total.median), over(r.total.p99)),
            format!("{:.3} / {:.3}", ratio(r.total.median), ratio(r.total.p99)),
            r.first_event.ms(),
            r.first_text.ms(),
            format!("{}/{}", r.finished, r.runs),
            format!("{}/{}", r.calls, r.calls_expected),
        );
    }
    println!("(times in ms; ideal = waves x L measured alone; calls = mock requests / expected)");
}
