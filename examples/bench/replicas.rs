//! Several replicas on one store (PostgreSQL when `--postgres` names a server, else one SQLite
//! file): how far a follower on another replica lags the client of the replica running the run
//! (per event, counted from when the follower had caught up), and how long after a replica is
//! killed (SIGKILL) its runs' followers elsewhere read how they ended, with the default lease.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{client, open};
use crate::harness::{SseReader, TempDir};
use crate::mock_llm::{auto_reply, MockLlm};
use crate::overhead::{rooms, settings};
use crate::server::ServerProc;
use crate::stats::ms;
use crate::store::fresh_postgres;
use crate::BenchError;

const LIMIT: usize = 1024;
/// Runs followed at once from the other replica.
const AT_ONCE: usize = 10;

fn vote(run_id: &str) -> Value {
    json!({"runId": run_id, "prompt": "Is Python or JavaScript better for web scraping?",
           "forwardedProps": {"strategy": "voting"}})
}

/// Every event of the stream with when it arrived, by sequence number.
async fn arrivals(mut reader: SseReader) -> Vec<(i64, Instant, Value)> {
    let mut out = Vec::new();
    while let Some(event) = reader.next_event().await {
        let seq = reader
            .last_id
            .as_deref()
            .and_then(|id| id.rsplit_once(':'))
            .and_then(|(_, seq)| seq.parse().ok())
            .unwrap_or(-1);
        out.push((seq, Instant::now(), event));
    }
    out
}

async fn follower(
    http: &reqwest::Client,
    server: &ServerProc,
    run_id: &str,
) -> Result<SseReader, BenchError> {
    let resp = http
        .get(format!("{}/rooms/five/runs/{run_id}/events", server.url))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(BenchError::Run(format!("follow: HTTP {}", resp.status())));
    }
    Ok(SseReader::new(resp))
}

/// p50, p95 and max of a sample, milliseconds.
fn spread(mut sample: Vec<Duration>) -> String {
    if sample.is_empty() {
        return "none".into();
    }
    sample.sort();
    let rank =
        |p: f64| sample[((p * sample.len() as f64).ceil() as usize).clamp(1, sample.len()) - 1];
    format!(
        "p50 {} / p95 {} / max {} ms ({} samples)",
        ms(rank(0.5)),
        ms(rank(0.95)),
        ms(rank(1.0)),
        sample.len()
    )
}

pub async fn run(runs: usize, postgres: Option<String>) -> Result<(), BenchError> {
    let dir = TempDir::new();
    let (backend, url) = match &postgres {
        Some(server) => ("PostgreSQL", fresh_postgres(server).await?),
        None => (
            "SQLite file",
            format!("sqlite://{}", dir.path.join("replicas.db").display()),
        ),
    };
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(5), Duration::from_millis(20));
    mock.set_words(40);
    let mut config = settings(&[&mock], LIMIT, LIMIT * 4);
    config.database_url = url;
    config.detached_grace = Duration::from_secs(60);
    let a = ServerProc::start(config.clone(), &rooms()).await?;
    let b = ServerProc::start(config.clone(), &rooms()).await?;
    let http = client();

    // Cross-replica follow: run on A, followed from B.
    let mut lags = Vec::new();
    let mut done = 0;
    while done < runs {
        let batch: Vec<String> = (done..(done + AT_ONCE).min(runs))
            .map(|i| format!("f{i}"))
            .collect();
        done += batch.len();
        let rounds = batch.iter().map(|id| {
            let (http, a, b) = (&http, &a, &b);
            async move {
                let client = open(http, &a.run_url("five"), &vote(id)).await?;
                let follower = follower(http, b, id).await?;
                let (own, other) = tokio::join!(arrivals(client), arrivals(follower));
                Ok::<_, BenchError>((own, other))
            }
        });
        for result in join_all(rounds).await {
            let (own, other) = result?;
            if own.last().map(|(_, _, e)| e["type"].clone()) != Some(json!("RUN_FINISHED")) {
                return Err(BenchError::Run("a followed run did not finish".into()));
            }
            if other.len() != own.len() {
                return Err(BenchError::Run(format!(
                    "the follower got {} events of {}",
                    other.len(),
                    own.len()
                )));
            }
            // Only events made after the follower had caught up with the stored ones.
            let caught_up = other.first().map(|(_, t, _)| *t);
            for ((seq, at, _), (seq2, there, _)) in own.iter().zip(&other) {
                if seq != seq2 {
                    return Err(BenchError::Run("the follower's events differ".into()));
                }
                if caught_up.is_some_and(|c| *at > c) {
                    lags.push(there.saturating_duration_since(*at));
                }
            }
        }
    }
    println!("  {backend}, {runs} voting runs on replica A followed from replica B");
    println!(
        "  follow lag of B behind A's client, per event: {}",
        spread(lags)
    );

    // A replica killed mid-run: its runs' followers on B read how they ended.
    // Calls held open for good: the runs are mid-fan-out when killed.
    let never = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    mock.respond_with(move |req| auto_reply(req, 4).gate(never.clone()));
    let c = ServerProc::start(config.clone(), &rooms()).await?;
    let mut followers = Vec::new();
    for i in 0..AT_ONCE {
        let id = format!("k{i}");
        let mut own = open(&http, &c.run_url("five"), &vote(&id)).await?;
        own.read_until("STEP_STARTED").await;
        let mut other = follower(&http, &b, &id).await?;
        other.read_until("STEP_STARTED").await;
        followers.push(other);
    }
    drop(c);
    let killed = Instant::now();
    let ends = join_all(followers.into_iter().map(|f| async move {
        let events = arrivals(f).await;
        (
            Instant::now().duration_since(killed),
            events.last().map(|(_, _, e)| match &e["code"] {
                Value::Null => e["type"].clone(),
                code => code.clone(),
            }),
        )
    }))
    .await;
    if ends
        .iter()
        .any(|(_, code)| *code != Some(json!("interrupted")))
    {
        return Err(BenchError::Run(format!(
            "a killed replica's run did not end interrupted: {:?}",
            ends.iter().map(|e| &e.1).collect::<Vec<_>>()
        )));
    }
    let lease = config.lease;
    println!(
        "  SIGKILL of a replica to its runs' last event at a follower elsewhere (lease {} s, heartbeat {} s): {}",
        lease.as_secs_f64(),
        config.heartbeat.as_secs_f64(),
        spread(ends.into_iter().map(|(d, _)| d).collect())
    );
    drop((a, b));
    Ok(())
}
