//! Shutdown under load: with 100 runs in flight, every stream ends with `RUN_FINISHED` (it made
//! the grace period) or `RUN_ERROR` code `shutdown` (it did not); none is cut without a final event.

use std::time::Duration;

use crate::support::harness::eventually;
use crate::support::harness::{
    slots, test_settings, verify_agui, RunResult, SseReader, TempDir, TestServer,
};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization;
use crate::support::test_agent;
use futures::future::join_all;
use serde_json::{json, Value};

const SHORT_WORDS: u64 = 5;

/// Rooms `{prefix}-short` and `{prefix}-long`; the prefix keeps each test's agent counters apart.
async fn server(grace: Duration, prefix: &str) -> TestServer {
    // Short runs take 0.5 s, well inside the grace period; long ones 20 s, far past it.
    let short = test_agent::room(&format!("{prefix}-short"), SHORT_WORDS, 100, false);
    let long = test_agent::room(&format!("{prefix}-long"), 1000, 20, false);
    let dir = TempDir::with_rooms(&[&short, &long]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    settings.shutdown_grace = grace;
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

/// Opens `n` runs of `room` and waits until each has started.
async fn open_runs(server: &TestServer, room: &str, n: usize) -> Vec<SseReader> {
    join_all((0..n).map(|i| async move {
        let mut reader = server
            .open_run(room, json!({"prompt": format!("{room} {i}")}))
            .await;
        let first = reader.next_event().await.expect("a first event");
        assert_eq!(first["type"], "RUN_STARTED");
        reader
    }))
    .await
}

async fn read_all(readers: Vec<SseReader>) -> Vec<Vec<Value>> {
    join_all(readers.into_iter().map(|mut r| async move {
        let mut events = vec![json!({"type": "RUN_STARTED"})];
        events.extend(r.read_to_end().await);
        events
    }))
    .await
}

#[tokio::test]
async fn a_hundred_runs_in_flight_each_end_with_a_final_event() {
    let mut server = server(Duration::from_millis(1500), "drain").await;
    let short = open_runs(&server, "drain-short", 50).await;
    let long = open_runs(&server, "drain-long", 50).await;
    assert_eq!(server.app.runs.len(), 100);

    server.shutdown();
    let (short, long) = futures::join!(read_all(short), read_all(long));

    let want: String = (0..SHORT_WORDS).map(|i| format!("word{i} ")).collect();
    for events in &short {
        verify_agui(events).unwrap_or_else(|e| panic!("short run: {e}"));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_FINISHED", "{last}");
        let text: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(text, want, "a short run lost text");
    }
    for events in &long {
        verify_agui(events).unwrap_or_else(|e| panic!("long run: {e}"));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_ERROR", "{last}");
        assert_eq!(last["code"], "shutdown", "{last}");
    }
    assert!(
        server.wait_stopped(Duration::from_secs(5)).await,
        "the server did not stop after draining"
    );
    assert!(server.app.runs.is_empty(), "run tasks left after shutdown");
    let started = test_agent::started("drain-short") + test_agent::started("drain-long");
    assert_eq!(started, 100);
    assert_eq!(
        test_agent::cancelled("drain-short"),
        0,
        "no short run's agent future is dropped"
    );
    assert_eq!(
        test_agent::cancelled("drain-long"),
        50,
        "every long run's agent future is dropped, no short one's"
    );
}

/// Requests that race the shutdown signal are refused (no connection, or 503) or run to the end;
/// a `200` is never followed by a cut stream.
#[tokio::test]
async fn runs_requested_during_shutdown_are_refused_or_complete() {
    let mut server = server(Duration::from_secs(5), "race").await;
    let in_flight = open_runs(&server, "race-short", 100).await;
    let url = server.url.clone();
    let late = (0..50).map(|i| {
        let url = url.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(i * 3)).await;
            let resp = TestServer::client()
                .post(format!("{url}/rooms/race-short/run"))
                .json(&json!({"prompt": format!("late {i}")}))
                .send()
                .await;
            match resp {
                Ok(resp) => Some(RunResult::read(resp).await),
                Err(_) => None,
            }
        }
    });
    let late = async { join_all(late).await };
    let app = server.app.clone();
    let stop = async {
        // Once one late run is in, so that some are sure to start and some to be refused.
        for _ in 0..500 {
            if app.runs.len() > 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.shutdown();
    };
    let (late, (), finished) = futures::join!(late, stop, read_all(in_flight));

    for events in &finished {
        verify_agui(events).unwrap_or_else(|e| panic!("in-flight run: {e}"));
        assert_eq!(events.last().expect("events")["type"], "RUN_FINISHED");
    }
    let (mut ran, mut refused) = (0, 0);
    for run in late.iter().flatten() {
        match run.status {
            200 => {
                verify_agui(&run.events).unwrap_or_else(|e| panic!("late run: {e}"));
                assert_eq!(run.last()["type"], "RUN_FINISHED");
                ran += 1;
            }
            503 => {
                assert_eq!(run.error_body["error"]["code"], "shutting_down");
                refused += 1;
            }
            other => panic!("late run answered {other}: {}", run.error_body),
        }
    }
    let unanswered = late.iter().filter(|r| r.is_none()).count();
    assert!(
        ran > 0 && refused + unanswered > 0,
        "the requests did not race the shutdown: {ran} ran, {refused} refused, {unanswered} unconnected"
    );
    assert!(server.wait_stopped(Duration::from_secs(5)).await);
    assert!(server.app.runs.is_empty());
}

/// The parallelization room with LLM calls in flight and queued: the shutdown ends every run with
/// `RUN_ERROR` code `shutdown`, and the calls go with the runs: the backend sees them closed, the
/// limiter is idle, the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_fan_outs_in_flight_end_and_release_their_calls() {
    let mock = MockLlm::start().await;
    // Distinct words: a repeated one would be cut by the repetition guard, ending runs early.
    let text: String = (0..2000).map(|i| format!("word{i} ")).collect();
    mock.respond_with(move |_| {
        MockReply::new()
            .text(text.clone())
            .chunk_delay(Duration::from_millis(10))
    });
    let mut server = parallelization::server_with(&mock, "", |s| {
        s.llm.max_concurrency = slots(32);
        s.llm.max_queue = 512;
        s.shutdown_grace = Duration::from_millis(500);
    })
    .await;
    let readers = join_all((0..100).map(|i| {
        let server = &server;
        async move {
            let body = json!({
                "prompt": format!("Write about stopping {i}: Start, Middle, End"),
                "forwardedProps": {"strategy": "sectioning"},
            });
            let mut reader = server.open_run(parallelization::ROOM, body).await;
            assert_eq!(
                reader.next_event().await.expect("a first event")["type"],
                "RUN_STARTED"
            );
            reader
        }
    }))
    .await;
    eventually("the limiter is full", || {
        server.app.llm.load().in_flight == 32
    })
    .await;

    server.shutdown();
    for events in read_all(readers).await {
        verify_agui(&events).unwrap_or_else(|e| panic!("{e}"));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_ERROR", "{last}");
        assert_eq!(last["code"], "shutdown", "{last}");
    }
    assert!(server.wait_stopped(Duration::from_secs(5)).await);
    eventually("every LLM call is closed", || {
        let load = server.app.llm.load();
        mock.in_flight() == 0 && load.in_flight == 0 && load.queued == 0
    })
    .await;
    assert_eq!(mock.disconnects(), mock.request_count());
    assert!(server.app.runs.is_empty());
}
