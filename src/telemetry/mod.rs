//! Metrics: the `metrics` facade records, a Prometheus recorder (installed once per process) keeps
//! and renders them for `GET /metrics`. Without the recorder every record is a no-op. Labels are
//! bounded: room ids and models come from the configuration, strategies and outcomes are fixed
//! sets, endpoints are `backend N`; never a run id, user or prompt. Traces: see `trace`.

mod run;
mod trace;

pub use run::{OpenStream, RunMeter};
pub use trace::{init, subscriber, TraceError, Traces, RUN_SPAN_TARGET};

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds, from a fast first token to a long map-reduce run.
const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None` when
/// another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?;
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!("metrics are off: {e}");
                    return None;
                }
            };
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(
                    "no metrics upkeep thread ({e}): histograms are folded at scrape time only"
                );
            }
            describe();
            Some(handle)
        })
        .clone()
}

/// One batch written to the store (or not) in `elapsed`.
pub fn store_write(elapsed: Duration, ok: bool) {
    metrics::histogram!("roomhost_store_write_duration_seconds").record(elapsed.as_secs_f64());
    if !ok {
        metrics::counter!("roomhost_store_write_errors_total").increment(1);
    }
}

fn describe() {
    describe_counter!(
        "roomhost_runs_started_total",
        "Runs started, by room and strategy"
    );
    describe_counter!(
        "roomhost_runs_finished_total",
        "Runs ended, by room, strategy and outcome (finished, error, cancelled)"
    );
    describe_histogram!(
        "roomhost_run_duration_seconds",
        Unit::Seconds,
        "Run time from RUN_STARTED to its end"
    );
    describe_histogram!(
        "roomhost_run_first_text_seconds",
        Unit::Seconds,
        "Time from RUN_STARTED to the first text of the answer"
    );
    describe_gauge!("roomhost_runs_in_flight", "Runs whose stream is open");
    describe_gauge!("roomhost_open_streams", "SSE responses open");
    describe_counter!(
        "roomhost_llm_calls_total",
        "LLM calls by endpoint, model and outcome (ok, error, cancelled)"
    );
    describe_histogram!(
        "roomhost_llm_first_token_seconds",
        Unit::Seconds,
        "Time from sending an LLM call (queueing excluded) to its first token"
    );
    describe_histogram!(
        "roomhost_llm_call_duration_seconds",
        Unit::Seconds,
        "LLM call time, queueing excluded, retries included"
    );
    describe_counter!(
        "roomhost_llm_tokens_total",
        "Tokens by model and type (input, output, reasoning; reasoning is part of output)"
    );
    describe_counter!("roomhost_llm_retries_total", "LLM call attempts retried");
    describe_gauge!("roomhost_llm_queued_calls", "LLM calls waiting for a slot");
    describe_gauge!(
        "roomhost_llm_reserved_places",
        "Queue places (slots and queue) held by admitted runs"
    );
    describe_gauge!(
        "roomhost_llm_in_flight_calls",
        "LLM calls holding a slot, per endpoint"
    );
    describe_gauge!("roomhost_llm_slots", "LLM call slots per endpoint");
    describe_histogram!(
        "roomhost_store_write_duration_seconds",
        Unit::Seconds,
        "Thread store batch write time"
    );
    describe_counter!(
        "roomhost_store_write_errors_total",
        "Thread store batch writes that failed (retried)"
    );
}
