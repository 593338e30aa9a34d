//! Several replicas on one store: a replica starting leaves the others' live runs alone, a cancel
//! sent to any replica stops the run, a follower on another replica gets the run's events with
//! the same ids and keep-alives while it waits, and SIGTERM hands a run over instead of ending it.
//! Each case runs on a shared SQLite file (two servers in this process) and, when
//! `ROOMHOST_TEST_DATABASE_URL` names a server, on PostgreSQL (notifications).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::process_lifecycle::{
    free_port, roomhost, wait_exit, wait_healthy, Running, ROOM as LIFECYCLE_ROOM,
};
use crate::store::postgres;
use crate::support::harness::{eventually, SseReader, TempDir, TestServer};
use crate::support::mock_llm::{auto_reply, MockLlm};
use crate::support::parallelization::{server_with, ROOM};

const VOTE: &str = "Which is better: Python or JavaScript?";

/// The databases every case runs on: a SQLite file, and PostgreSQL when there is one.
async fn databases(dir: &TempDir) -> Vec<(&'static str, String)> {
    let mut all = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path.join("shared.db").display()),
    )];
    if let Some(url) = postgres().await {
        all.push(("postgres", url));
    }
    all
}

/// A replica on `url` whose keep-alive comments come every 50 ms.
async fn replica(mock: &MockLlm, url: &str) -> TestServer {
    let url = url.to_owned();
    server_with(mock, "", move |s| {
        s.database_url = url;
        s.keep_alive = Duration::from_millis(50);
        s.detached_grace = Duration::from_secs(60);
    })
    .await
}

/// Every LLM call waits for a permit of the returned gate, then answers.
fn gated(mock: &MockLlm) -> Arc<Semaphore> {
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    mock.respond_with(move |req| auto_reply(req, 4).gate(held.clone()));
    gate
}

fn vote(run_id: &str) -> Value {
    json!({"threadId": format!("t-{run_id}"), "runId": run_id, "prompt": VOTE,
           "forwardedProps": {"strategy": "voting"}})
}

async fn follow(server: &TestServer, run_id: &str) -> reqwest::Response {
    let resp = TestServer::client()
        .get(format!("{}/rooms/{ROOM}/runs/{run_id}/events", server.url))
        .send()
        .await
        .expect("GET events");
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

/// Waits until every call of the run is held by the mock, then reads the events the run sent
/// meanwhile, up to the keep-alive comment that comes while nothing else can.
async fn held(mock: &MockLlm, calls: usize, reader: &mut SseReader) -> Vec<(String, Value)> {
    eventually("every call is held", || mock.in_flight() == calls).await;
    reader.until_comment().await.expect("a keep-alive comment")
}

async fn flushed(server: &TestServer) {
    let stored = server.app.stored.as_ref().expect("a store");
    assert!(stored.writer.flush(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn replicas_a_start_leaves_live_runs_alone_and_cancel_from_another_replica_stops_them() {
    let dir = TempDir::new();
    for (backend, url) in databases(&dir).await {
        let mock = MockLlm::start().await;
        let gate = gated(&mock);
        let a = replica(&mock, &url).await;
        let mut client = a.open_run(ROOM, vote("r1")).await;
        held(&mock, 3, &mut client).await;

        // A second replica starts while the run is held mid-stream: the run is not its orphan.
        let b = replica(&mock, &url).await;
        let b_store = &b.app.stored.as_ref().expect("a store").store;
        let orphans = b_store.orphans(roomhost::store::now_ms()).await.unwrap();
        assert_eq!(orphans, [], "{backend}");
        let (status, run) = b.get(&format!("/rooms/{ROOM}/runs/r1")).await;
        assert_eq!((status, run["status"].as_str()), (200, Some("running")));

        // Cancel sent to the replica that is not running it.
        let resp = b
            .post(&format!("/rooms/{ROOM}/runs/r1/cancel"), &json!({}))
            .await;
        assert_eq!(resp.status().as_u16(), 202, "{backend}");
        let rest = client.read_to_end().await;
        flushed(&a).await;
        let last = rest.last().expect("a last event");
        assert_eq!(
            (last["type"].as_str(), last["code"].as_str()),
            (Some("RUN_ERROR"), Some("cancelled")),
            "{backend}: {last}"
        );
        let (_, run) = b.get(&format!("/rooms/{ROOM}/runs/r1")).await;
        assert_eq!(run["status"], "cancelled", "{backend}");
        // A finished run is cancelled nowhere.
        let again = b
            .post(&format!("/rooms/{ROOM}/runs/r1/cancel"), &json!({}))
            .await;
        assert_eq!(again.status().as_u16(), 409, "{backend}");
        gate.add_permits(100);
    }
}

#[tokio::test]
async fn replicas_a_follower_on_another_replica_gets_keep_alives_then_the_same_events_and_ids() {
    let dir = TempDir::new();
    for (backend, url) in databases(&dir).await {
        let mock = MockLlm::start().await;
        let gate = gated(&mock);
        let a = replica(&mock, &url).await;
        let b = replica(&mock, &url).await;
        let mut client = a.open_run(ROOM, vote("r2")).await;
        let mut seen = held(&mock, 3, &mut client).await;
        flushed(&a).await;

        // Following from the other replica: the stored events, then keep-alives while held.
        let mut follower = SseReader::new(follow(&b, "r2").await);
        let mut followed = follower.until_comment().await.expect("a keep-alive");
        assert_eq!(followed, seen, "{backend}");

        gate.add_permits(100);
        seen.extend(client.read_to_end_with_ids().await);
        followed.extend(follower.read_to_end_with_ids().await);
        assert_eq!(
            seen.last().map(|(_, e)| e["type"].clone()),
            Some(json!("RUN_FINISHED")),
            "{backend}"
        );
        assert_eq!(
            followed, seen,
            "{backend}: the follower saw the client's stream"
        );
        let mut ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), seen.len(), "{backend}: no id names two events");
    }
}

/// A roomhost process on the SQLite file `db`: leases of a minute (a run can only change hands
/// by a handover), a shutdown grace shorter than the held run.
async fn process(dir: &TempDir, mock: &MockLlm, db: &str) -> (Running, String) {
    let port = free_port();
    let child = roomhost(&dir.path, &mock.url(), port)
        .env("ROOMHOST_DATABASE_URL", db)
        .env("ROOMHOST_LEASE", "60s")
        .env("ROOMHOST_SHUTDOWN_GRACE_SECS", "0.3")
        .env("ROOMHOST_DETACHED_GRACE_SECS", "60")
        .spawn()
        .expect("spawn roomhost");
    let url = format!("http://127.0.0.1:{port}");
    let child = Running(child);
    wait_healthy(&url).await;
    (child, url)
}

#[tokio::test]
async fn replicas_sigterm_stores_what_was_streamed_ends_streams_and_hands_the_run_over() {
    let mock = MockLlm::start().await;
    let _gate = gated(&mock);
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", LIFECYCLE_ROOM);
    let db = format!("sqlite://{}", dir.path.join("rh.db").display());
    let (mut first, url) = process(&dir, &mock, &db).await;
    let path = "/rooms/parallelization";
    let resp = TestServer::client()
        .post(format!("{url}{path}/run"))
        .json(&vote("h1"))
        .send()
        .await
        .expect("run starts");
    let mut client = SseReader::new(resp);
    eventually("every call is held", || mock.in_flight() == 3).await;
    let follower = TestServer::client()
        .get(format!("{url}{path}/runs/h1/events"))
        .send()
        .await
        .expect("follow");
    let mut follower = SseReader::new(follower);

    let term = Command::new("kill")
        .args(["-TERM", &first.0.id().to_string()])
        .status();
    assert!(term.expect("kill runs").success());
    // Both streams end within the grace, without a last event: their clients reconnect.
    let seen = client.read_to_end_with_ids().await;
    let followed = follower.read_to_end_with_ids().await;
    assert_eq!(followed, seen);
    let last = &seen.last().expect("events").1;
    assert!(
        !matches!(last["type"].as_str(), Some("RUN_FINISHED" | "RUN_ERROR")),
        "{last}"
    );
    assert!(wait_exit(&mut first, Duration::from_secs(10))
        .await
        .success());

    // Restarted: the run was handed over (its lease released), so it is taken up at once.
    let (_second, url) = process(&dir, &mock, &db).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let run = loop {
        let resp = TestServer::client()
            .get(format!("{url}{path}/runs/h1"))
            .send()
            .await
            .expect("GET run");
        let run: Value = resp.json().await.expect("JSON");
        if run["status"] != "running" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "never taken up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run["status"], "interrupted", "{run}");
    // Everything streamed was stored; the last event has the reserved last id.
    let (last_id, _) = seen.last().expect("events");
    let resp = TestServer::client()
        .get(format!("{url}{path}/runs/h1/events"))
        .send()
        .await
        .expect("replay");
    let replay = SseReader::new(resp).read_to_end_with_ids().await;
    assert_eq!(replay[..seen.len()], seen[..]);
    assert_eq!(replay.len(), seen.len() + 1);
    let (id, end) = replay.last().expect("a last event");
    assert_eq!(end["code"], "interrupted", "{end}");
    assert_eq!(id, &format!("h1:{}", roomhost::store::FINAL_SEQ));
    // A client resuming from its last id reads just that.
    let resp = TestServer::client()
        .get(format!("{url}{path}/runs/h1/events"))
        .header("Last-Event-ID", last_id.as_str())
        .send()
        .await
        .expect("resume");
    let rest = SseReader::new(resp).read_to_end_with_ids().await;
    assert_eq!(rest[..], replay[seen.len()..]);
}
