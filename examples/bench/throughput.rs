//! Streaming throughput: one run whose mock streams its tokens as fast as it can; events the
//! server encodes per second and its CPU time per token.

use std::time::Duration;

use serde_json::json;

use crate::client::{client, timed_run};
use crate::mock_llm::MockLlm;
use crate::overhead::{rooms, settings};
use crate::script::{direct_call, flood};
use crate::server::ServerProc;
use crate::stats::{ms, Spread};
use crate::BenchError;

/// The run writes two sections, each one call streaming half the tokens.
const SECTIONS: usize = 2;
const RUNS: usize = 5;

pub async fn run(tokens: usize) -> Result<(), BenchError> {
    let http = client();
    let mock = MockLlm::start().await;
    let per_call = tokens / SECTIONS;
    flood(&mock, per_call);
    let (alone, lines) = direct_call(&http, &mock).await?;
    let mut server = ServerProc::start(settings(&[&mock], 64, 64), &rooms()).await?;
    let url = server.run_url("five");
    let body = json!({
        "prompt": "Write about throughput: Encoding, Decoding",
        "forwardedProps": {"strategy": "sectioning"},
    });
    timed_run(&http, &url, &body).await?;
    let before = server.usage().await?;
    let mut times = Vec::new();
    let mut events = 0;
    for _ in 0..RUNS {
        let run = timed_run(&http, &url, &body).await?;
        if !run.finished() {
            return Err(BenchError::Run(format!(
                "throughput run failed: {}",
                run.last
            )));
        }
        let words = run.text.matches("tok").count();
        if words != per_call * SECTIONS {
            return Err(BenchError::Run(format!(
                "the answer has {words} tokens, not {}",
                per_call * SECTIONS
            )));
        }
        events += run.events;
        times.push(run.total);
    }
    let after = server.usage().await?;
    let total: Duration = times.iter().sum();
    let streamed = per_call * SECTIONS * RUNS;
    let cpu = after.cpu_since(&before);
    let spread = Spread::of(times);
    println!(
        "{} tokens per run ({SECTIONS} sections streamed at once), {RUNS} runs; mock alone streams one call of {per_call} tokens in {} ms ({lines} lines)",
        per_call * SECTIONS,
        ms(alone)
    );
    println!(
        "  run time p50 / max: {} ms; {:.0} tokens/s; {:.0} events/s encoded ({} events per run)",
        spread.ms(),
        streamed as f64 / total.as_secs_f64(),
        events as f64 / total.as_secs_f64(),
        events / RUNS
    );
    println!(
        "  server CPU: {:.1} ms per run, {:.2} us per token, {:.2} us per event",
        cpu.as_secs_f64() * 1000.0 / RUNS as f64,
        cpu.as_secs_f64() * 1e6 / streamed as f64,
        cpu.as_secs_f64() * 1e6 / events as f64
    );
    Ok(())
}
