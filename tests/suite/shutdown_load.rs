//! Shutdown under load: with 100 runs in flight, every stream ends with `RUN_FINISHED` (it made
//! the grace period) or `RUN_ERROR` code `shutdown` (it did not); none is cut without a final event.
//! Nothing here depends on how fast the machine is: the scripted runs wait at a gate until the test
//! releases them, and the grace period's end is the test's own signal.

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

const WORDS: u64 = 5;
/// Longer than any test here: a grace period ends when the test ends it (`force_stop`).
const LONG_GRACE: Duration = Duration::from_secs(600);

/// Gated rooms `{prefix}-short` and `{prefix}-long`; the prefix keeps each test's agent counters
/// and gates apart.
async fn server(prefix: &str) -> TestServer {
    let short = test_agent::gated_room(&format!("{prefix}-short"), WORDS);
    let long = test_agent::gated_room(&format!("{prefix}-long"), WORDS);
    let dir = TempDir::with_rooms(&[&short, &long]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    settings.shutdown_grace = LONG_GRACE;
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

/// A run that finished with all its words.
fn complete(events: &[Value]) {
    verify_agui(events).unwrap_or_else(|e| panic!("{e}"));
    let last = events.last().expect("events");
    assert_eq!(last["type"], "RUN_FINISHED", "{last}");
    let want: String = (0..WORDS).map(|i| format!("word{i} ")).collect();
    let text: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(text, want, "a run lost text");
}

#[tokio::test]
async fn a_hundred_runs_in_flight_each_end_with_a_final_event() {
    let mut server = server("drain").await;
    let short = open_runs(&server, "drain-short", 50).await;
    let long = open_runs(&server, "drain-long", 50).await;
    assert_eq!(server.app.runs.len(), 100);

    server.shutdown();
    eventually("the server is draining", || {
        server.app.shutdown.is_cancelled()
    })
    .await;
    // The short runs finish within the grace period; then it ends, with the long ones held.
    test_agent::release("drain-short");
    for events in read_all(short).await {
        complete(&events);
    }
    server.app.force_stop.cancel();
    for events in read_all(long).await {
        verify_agui(&events).unwrap_or_else(|e| panic!("long run: {e}"));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_ERROR", "{last}");
        assert_eq!(last["code"], "shutdown", "{last}");
    }
    assert!(
        server.wait_stopped(Duration::from_secs(30)).await,
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

/// A run requested of `url`'s `race-short` room: its whole answer, or `None` if it could not
/// connect.
async fn request(url: &str, i: usize) -> Option<RunResult> {
    let resp = TestServer::client()
        .post(format!("{url}/rooms/race-short/run"))
        .json(&json!({"prompt": format!("late {i}")}))
        .send()
        .await
        .ok()?;
    Some(RunResult::read(resp).await)
}

/// Requests made before the shutdown run to the end; requests after it are refused (no connection,
/// or 503); requests racing it are either; a `200` is never followed by a cut stream.
#[tokio::test]
async fn runs_requested_during_shutdown_are_refused_or_complete() {
    let mut server = server("race").await;
    let in_flight = open_runs(&server, "race-short", 100).await;
    // Accepted before the shutdown: started, and held at the gate like the others.
    let before = open_runs(&server, "race-short", 10).await;
    let url = server.url.clone();
    // Sent while the server shuts down; the runs of those accepted are held at the gate too.
    let racing = tokio::spawn({
        let url = url.clone();
        async move { join_all((0..20).map(|i| request(&url, i))).await }
    });
    server.shutdown();
    eventually("the server is draining", || {
        server.app.shutdown.is_cancelled()
    })
    .await;
    let after = join_all((0..10).map(|i| request(&url, 200 + i))).await;
    for run in after.iter().flatten() {
        assert_eq!(run.status, 503, "{}", run.error_body);
        assert_eq!(run.error_body["error"]["code"], "shutting_down");
    }
    test_agent::release("race-short");
    let (finished, before) = futures::join!(read_all(in_flight), read_all(before));
    for events in finished.iter().chain(&before) {
        complete(events);
    }
    for run in racing.await.expect("the racing requests").iter().flatten() {
        match run.status {
            200 => complete(&run.events),
            503 => assert_eq!(run.error_body["error"]["code"], "shutting_down"),
            other => panic!("a racing run answered {other}: {}", run.error_body),
        }
    }
    assert!(server.wait_stopped(Duration::from_secs(30)).await);
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
