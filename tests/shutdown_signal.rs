//! A real SIGTERM to the `roomhost` binary with 100 fan-out runs in flight: every stream ends
//! with a final event, then the process exits cleanly.

mod support;

use std::process::Stdio;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use support::harness::{verify_agui, SseReader, TempDir, TestServer};
use support::mock_llm::{MockLlm, MockReply};
use support::parallelization::{eventually, room_yaml, ROOM};

const RUNS: usize = 100;

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

async fn wait_healthy(url: &str) {
    for _ in 0..500 {
        if let Ok(resp) = TestServer::client()
            .get(format!("{url}/healthz"))
            .send()
            .await
        {
            if resp.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("roomhost did not come up at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hundred_runs_in_flight_ends_every_stream_then_exits() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| {
        MockReply::new()
            .text("word ".repeat(2000))
            .chunk_delay(Duration::from_millis(10))
    });
    let rooms = TempDir::with_rooms(&[&room_yaml("")]);
    let port = free_port().await;
    let url = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roomhost"))
        .env_clear()
        .env("ROOMHOST_ADDR", format!("127.0.0.1:{port}"))
        .env("ROOMHOST_ROOMS_DIR", &rooms.path)
        .env("OLLAMA_BASE_URL", mock.url())
        .env("ROOMHOST_MAX_CONCURRENCY", "32")
        .env("ROOMHOST_MAX_QUEUE", "512")
        .env("ROOMHOST_SHUTDOWN_GRACE_SECS", "0.5")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the roomhost binary");
    wait_healthy(&url).await;

    let client = TestServer::client();
    let readers: Vec<SseReader> = join_all((0..RUNS).map(|i| {
        let (client, url) = (&client, &url);
        async move {
            let resp = client
                .post(format!("{url}/rooms/{ROOM}/run"))
                .json(&json!({
                    "prompt": format!("Write about signals {i}: Start, Middle, End"),
                    "forwardedProps": {"strategy": "sectioning"},
                }))
                .send()
                .await
                .expect("the run starts");
            let mut reader = SseReader::new(resp);
            let first = reader.next_event().await.expect("a first event");
            assert_eq!(first["type"], "RUN_STARTED");
            reader
        }
    }))
    .await;
    eventually("calls are in flight", || mock.in_flight() == 32).await;

    let pid = child.id().expect("the child is running");
    // SAFETY: kill only sends a signal to the process we started.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) },
        0,
        "SIGTERM"
    );
    let ends = join_all(readers.into_iter().map(|mut r| async move {
        let mut events = vec![json!({"type": "RUN_STARTED"})];
        events.extend(r.read_to_end().await);
        events
    }))
    .await;
    for events in &ends {
        verify_agui(events).unwrap_or_else(|e| panic!("{e}"));
        let last = events.last().expect("events");
        assert_eq!(last["type"], "RUN_ERROR", "{last}");
        assert_eq!(last["code"], "shutdown", "{last}");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("roomhost exits after draining")
        .expect("exit status");
    assert!(status.success(), "roomhost exited with {status}");
    eventually("the backend sees every call closed", || {
        mock.in_flight() == 0
    })
    .await;
}
