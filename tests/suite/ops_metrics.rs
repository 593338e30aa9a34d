//! `GET /metrics` after a known set of runs (one per strategy, one failing) parses with
//! prometheus_client's parser, and its counters equal what was run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::harness::{eventually, RunResult, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{server_with, ROOM};

/// Every sample as (name, labels, value), read by the reference parser in Python.
fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-metrics/bin/python");
    assert!(
        python.exists(),
        "no prometheus_client: run `python3 -m venv .venv-metrics && .venv-metrics/bin/pip install prometheus-client` (as .ci/run does)"
    );
    let mut child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the parser starts");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("metrics written");
    }
    let out = child.wait_with_output().expect("the parser ends");
    assert!(out.status.success(), "/metrics does not parse:\n{text}");
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    samples
}

struct Samples(Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    /// The sum of `name`'s samples whose labels include every pair of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn run_body(prompt: &str, strategy: &str) -> Value {
    json!({"prompt": prompt, "forwardedProps": {"strategy": strategy}})
}

/// Output tokens `RUN_FINISHED` reported.
fn output_tokens(run: &RunResult) -> u64 {
    run.last()["usage"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["outputTokens"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn metrics_parse_and_count_what_was_run() {
    let mock = MockLlm::start().await;
    let server = server_with(&mock, "num_voters: 3", |s| {
        s.llm.max_concurrency = crate::support::harness::slots(3)
    })
    .await;
    let good = [
        ("Write about tea: Green, Black, Oolong", "sectioning"),
        ("Is tea better than coffee?", "voting"),
        (
            "Summarize: the first report | the second report",
            "map_reduce",
        ),
    ];
    let mut tokens = 0;
    for (prompt, strategy) in good {
        let run = server.run(ROOM, run_body(prompt, strategy)).await;
        assert_eq!(
            run.last()["type"],
            "RUN_FINISHED",
            "{strategy}: {:?}",
            run.types()
        );
        tokens += output_tokens(&run);
    }
    let good_calls = mock.request_count();
    mock.respond_with(|_| MockReply::new().status(400, "the model refuses"));
    let failed = server
        .run(ROOM, run_body("Is tea better than coffee?", "voting"))
        .await;
    assert_eq!(failed.last()["type"], "RUN_ERROR", "{:?}", failed.types());
    let calls = mock.request_count();

    let app = server.app.clone();
    eventually("every run let go", || app.runs.is_empty()).await;
    let text = TestServer::client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a body");
    let m = Samples(parse(&text));
    let room = ("room", ROOM);

    for strategy in ["sectioning", "map_reduce"] {
        assert_eq!(
            m.sum(
                "roomhost_runs_started_total",
                &[room, ("strategy", strategy)]
            ),
            1.0,
            "{strategy}"
        );
        let done = [room, ("strategy", strategy), ("outcome", "finished")];
        assert_eq!(
            m.sum("roomhost_runs_finished_total", &done),
            1.0,
            "{strategy}"
        );
        assert_eq!(
            m.sum("roomhost_run_duration_seconds_count", &done),
            1.0,
            "{strategy}"
        );
    }
    assert_eq!(
        m.sum(
            "roomhost_runs_started_total",
            &[room, ("strategy", "voting")]
        ),
        2.0
    );
    for outcome in ["finished", "error"] {
        let labels = [room, ("strategy", "voting"), ("outcome", outcome)];
        assert_eq!(
            m.sum("roomhost_runs_finished_total", &labels),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(
        m.sum("roomhost_runs_finished_total", &[("outcome", "cancelled")]),
        0.0
    );
    assert_eq!(m.sum("roomhost_run_first_text_seconds_count", &[room]), 3.0);

    let backend = ("endpoint", "backend 1");
    let model = ("model", "mock");
    assert_eq!(
        m.sum(
            "roomhost_llm_calls_total",
            &[backend, model, ("outcome", "ok")]
        ),
        good_calls as f64
    );
    assert_eq!(
        m.sum(
            "roomhost_llm_calls_total",
            &[backend, model, ("outcome", "error")]
        ),
        (calls - good_calls) as f64
    );
    assert_eq!(
        m.sum("roomhost_llm_call_duration_seconds_count", &[backend]),
        calls as f64
    );
    assert_eq!(
        m.sum("roomhost_llm_first_token_seconds_count", &[backend]),
        good_calls as f64
    );
    assert_eq!(
        m.sum("roomhost_llm_tokens_total", &[model, ("type", "output")]),
        tokens as f64
    );
    assert!(m.sum("roomhost_llm_tokens_total", &[model, ("type", "input")]) > 0.0);
    assert_eq!(m.sum("roomhost_llm_retries_total", &[]), 0.0);
    assert_eq!(m.sum("roomhost_llm_slots", &[backend]), 3.0);
    assert_eq!(m.sum("roomhost_llm_in_flight_calls", &[backend]), 0.0);
    assert_eq!(m.sum("roomhost_llm_queued_calls", &[]), 0.0);
    assert_eq!(m.sum("roomhost_runs_in_flight", &[]), 0.0);
    assert_eq!(m.sum("roomhost_open_streams", &[]), 0.0);
    // Bounded labels only: no run or thread id, no prompt.
    for (name, labels, _) in &m.0 {
        for key in labels.keys() {
            assert!(
                ["room", "strategy", "outcome", "endpoint", "model", "type", "le"]
                    .contains(&key.as_str()),
                "{name} has label {key}"
            );
        }
    }
}
