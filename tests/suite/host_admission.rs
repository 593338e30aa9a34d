//! Whole-run admission: a run whose LLM calls cannot all get a place in the queue is refused before
//! its stream (429, or 503 when no backend is reachable) with `Retry-After` and the JSON error;
//! admitted runs keep their places and finish; no run holds more than its fair share; the queue
//! is empty again afterwards.

use std::time::Duration;

use crate::support::harness::{eventually, slots, SseReader, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{assert_idle, finished, server_with, ROOM};
use serde_json::{json, Value};

fn question() -> Value {
    json!({"prompt": "Is tea better than coffee?"})
}

/// Starts `n` runs and reads each up to `RUN_STARTED`.
async fn admit(server: &TestServer, n: usize) -> Vec<SseReader> {
    let mut runs = Vec::new();
    for _ in 0..n {
        let mut run = server.open_run(ROOM, question()).await;
        let first = run.next_event().await.expect("a first event");
        assert_eq!(first["type"], "RUN_STARTED");
        runs.push(run);
    }
    runs
}

/// Posts a run that must be refused with `status` and `code`; returns its `Retry-After`.
async fn refused(server: &TestServer, status: u16, code: &str) -> u64 {
    let resp = server
        .post(&format!("/rooms/{ROOM}/run"), &question())
        .await;
    assert_eq!(resp.status().as_u16(), status);
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("retry in {retry_after} s")),
        "{message}"
    );
    retry_after
}

#[tokio::test]
async fn runs_that_do_not_fit_the_queue_are_refused_and_admitted_ones_keep_their_places() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().hang());
    let server = server_with(&mock, "num_voters: 3", |s| {
        s.llm.max_concurrency = slots(1);
        s.llm.max_queue = 8;
    })
    .await;
    // 9 places (1 slot + 8 queued); a run holds at most max(1, 8 / 4) = 2 though it has 3 voters.
    let admitted = admit(&server, 4).await;
    let held = || {
        let load = server.app.llm.load();
        (load.in_flight, load.queued, load.reserved)
    };
    eventually("two calls of each run are in the queue", || {
        held() == (1, 7, 8)
    })
    .await;
    refused(&server, 429, "backend_saturated").await;
    refused(&server, 429, "backend_saturated").await;
    assert_eq!(held(), (1, 7, 8), "the admitted runs keep their places");
    assert_eq!(mock.request_count(), 1, "one slot, one call at the backend");
    assert_eq!(server.app.runs.len(), 4, "refused runs never started");

    drop(admitted);
    assert_idle(&server, &mock).await;
    assert_eq!(server.app.llm.load().reserved, 0);
}

#[tokio::test]
async fn admitted_runs_finish_while_others_are_refused() {
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(200), Duration::ZERO);
    let server = server_with(&mock, "num_voters: 3", |s| {
        s.llm.max_concurrency = slots(1);
        s.llm.max_queue = 3;
    })
    .await;
    // 4 places, one per run: each run's voters take turns inside the run.
    let admitted = admit(&server, 4).await;
    refused(&server, 429, "backend_saturated").await;
    for mut run in admitted {
        let events = run.read_to_end().await;
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_FINISHED", "{last}");
        assert_eq!(last["result"]["votes"]["valid"], 3);
    }
    assert_eq!(mock.request_count(), 12);
    assert_eq!(mock.peak_in_flight(), 1);
    assert_idle(&server, &mock).await;
    assert_eq!(server.app.llm.load().reserved, 0);
    // Places freed, runs are admitted again.
    finished(&server.run(ROOM, question()).await);
}

#[tokio::test]
async fn a_full_queue_with_every_backend_unreachable_is_503() {
    let mock = MockLlm::start().await;
    mock.stop();
    let server = server_with(&mock, "num_voters: 1", |s| {
        s.llm.max_concurrency = slots(1);
        s.llm.max_queue = 0;
        s.llm.max_retries = 1;
        // The one admitted run holds the only place while it waits to retry.
        s.llm.retry_base_delay = Duration::from_secs(4);
    })
    .await;
    let mut admitted = admit(&server, 1).await;
    // Until its first attempt fails the backend is not known to be down: a plain 429.
    let mut tries = 0;
    loop {
        let resp = server
            .post(&format!("/rooms/{ROOM}/run"), &question())
            .await;
        match resp.status().as_u16() {
            503 => break,
            429 => {}
            other => panic!("expected 429 or 503, got {other}"),
        }
        tries += 1;
        assert!(tries < 200, "never answered 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    refused(&server, 503, "backend_unreachable").await;
    let events = admitted[0].read_to_end().await;
    let last = events.last().expect("events");
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], "llm_unreachable", "{last}");
    assert_idle(&server, &mock).await;
}
