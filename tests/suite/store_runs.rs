//! Runs and threads kept in the store, seen over HTTP: event ids, the thread and run routes,
//! replay and live follow with `Last-Event-ID`, the detached grace, cancel, and earlier turns filled
//! in for a client that sends only its new message.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::harness::{eventually, SseReader, TempDir, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{server_with, ROOM};

const VOTE: &str = "Which is better: Python or JavaScript?";

/// A server with the in-memory store and the given detached grace.
async fn stored(mock: &MockLlm, grace: Duration) -> TestServer {
    server_with(mock, "", move |s| {
        s.database_url = "sqlite::memory:".into();
        s.detached_grace = grace;
    })
    .await
}

async fn get_events(server: &TestServer, run_id: &str, last_id: Option<&str>) -> reqwest::Response {
    let mut req =
        TestServer::client().get(format!("{}/rooms/{ROOM}/runs/{run_id}/events", server.url));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.expect("GET events")
}

/// Every event of a stream with its `id:`.
async fn read_with_ids(resp: reqwest::Response) -> Vec<(String, Value)> {
    SseReader::new(resp).read_to_end_with_ids().await
}

/// Waits until the server's writer has written everything so far.
async fn flushed(server: &TestServer) {
    let stored = server.app.stored.as_ref().expect("a store");
    assert!(stored.writer.flush(Duration::from_secs(10)).await);
}

async fn run_status(server: &TestServer, run_id: &str) -> String {
    let (_, run) = server.get(&format!("/rooms/{ROOM}/runs/{run_id}")).await;
    run["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn store_runs_every_frame_carries_the_run_id_and_its_sequence_number() {
    let mock = MockLlm::start().await;
    let server = stored(&mock, Duration::ZERO).await;
    let body = json!({"runId": "r-ids", "prompt": VOTE});
    let resp = server.post(&format!("/rooms/{ROOM}/run"), &body).await;
    let events = read_with_ids(resp).await;
    assert_eq!(events.last().unwrap().1["type"], "RUN_FINISHED");
    for (i, (id, _)) in events.iter().enumerate() {
        assert_eq!(id, &format!("r-ids:{i}"));
    }
}

#[tokio::test]
async fn store_runs_threads_runs_and_delete_over_http() {
    let mock = MockLlm::start().await;
    let server = stored(&mock, Duration::ZERO).await;
    for (run_id, text) in [("run-1", VOTE), ("run-2", "And which is faster?")] {
        let body = json!({"threadId": "th-1", "runId": run_id, "prompt": text});
        assert_eq!(server.run(ROOM, body).await.last()["type"], "RUN_FINISHED");
    }
    let other = json!({"threadId": "th-2", "prompt": VOTE});
    server.run(ROOM, other).await;
    flushed(&server).await;

    let (status, list) = server.get(&format!("/rooms/{ROOM}/threads")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["th-2", "th-1"], "newest first");
    assert_eq!(
        list["threads"][1]["metadata"]["name"], VOTE,
        "named after its first message"
    );
    let (_, page) = server.get(&format!("/rooms/{ROOM}/threads?limit=1")).await;
    assert_eq!(page["next"], "th-2");
    let (_, rest) = server
        .get(&format!("/rooms/{ROOM}/threads?limit=1&before=th-2"))
        .await;
    assert_eq!(rest["threads"][0]["thread_id"], "th-1");

    let (status, thread) = server.get(&format!("/rooms/{ROOM}/threads/th-1")).await;
    assert_eq!(status, 200);
    let runs = thread["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["run_id"].as_str(), runs[0]["status"].as_str()),
        (Some("run-1"), Some("finished"))
    );
    assert!(runs[1]["finished"].is_string());

    let (status, run) = server.get(&format!("/rooms/{ROOM}/runs/run-2")).await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "finished");
    assert!(
        run["result"]["text"].is_string() && run["usage"].is_array(),
        "{run}"
    );
    // The run keeps its input as its client sent it: the new message alone (the earlier turn the
    // model saw is rebuilt from the thread, see `store_history`).
    let messages = run["run_input"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{run}");
    assert_eq!(messages[0]["content"], "And which is faster?");

    let delete = TestServer::client()
        .delete(format!("{}/rooms/{ROOM}/threads/th-1", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 204);
    for path in ["threads/th-1", "runs/run-1", "runs/run-1/events"] {
        let (status, body) = server.get(&format!("/rooms/{ROOM}/{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let (status, body) = server.get(&format!("/rooms/{ROOM}/threads/bad%20id")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_id"))
    );
    let (status, _) = server.get(&format!("/rooms/{ROOM}/runs/nope")).await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/rooms/nope/threads").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn store_runs_replay_is_the_stream_again_and_last_event_id_starts_after_it() {
    let mock = MockLlm::start().await;
    let server = stored(&mock, Duration::ZERO).await;
    let body = json!({"runId": "replay", "prompt": VOTE});
    let original = read_with_ids(server.post(&format!("/rooms/{ROOM}/run"), &body).await).await;
    flushed(&server).await;

    assert_eq!(
        read_with_ids(get_events(&server, "replay", None).await).await,
        original
    );
    let tail = read_with_ids(get_events(&server, "replay", Some("replay:4")).await).await;
    assert_eq!(tail, original[5..]);
    let after = TestServer::client()
        .get(format!(
            "{}/rooms/{ROOM}/runs/replay/events?after=4",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(read_with_ids(after).await, original[5..]);
    // Beyond the end: nothing more.
    let beyond = read_with_ids(get_events(&server, "replay", Some("replay:99999")).await).await;
    assert!(beyond.is_empty());
    // Malformed, or another run's: refused, never another run's events.
    for bad in ["replay:x", "other-run:3", "replay:-1"] {
        let resp = get_events(&server, "replay", Some(bad)).await;
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }
}

#[tokio::test]
async fn store_runs_a_dropped_client_resumes_live_with_every_event_once_in_order() {
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(5), Duration::from_millis(20));
    let server = stored(&mock, Duration::from_secs(30)).await;
    let body = json!({"runId": "resume", "prompt": VOTE});
    let resp = server.post(&format!("/rooms/{ROOM}/run"), &body).await;
    let mut reader = SseReader::new(resp);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let event = reader.next_event().await.expect("an event");
        seen.push((reader.last_id.clone().unwrap(), event));
    }
    drop(reader);
    let last = seen.last().unwrap().0.clone();
    let rest = read_with_ids(get_events(&server, "resume", Some(&last)).await).await;
    assert_eq!(
        rest.last().unwrap().1["type"],
        "RUN_FINISHED",
        "followed to the end"
    );
    seen.extend(rest);
    for (i, (id, _)) in seen.iter().enumerate() {
        assert_eq!(id, &format!("resume:{i}"), "every event once, in order");
    }
    flushed(&server).await;
    eventually("the run ended", || server.app.runs.is_empty()).await;
    flushed(&server).await;
    assert_eq!(run_status(&server, "resume").await, "finished");
}

#[tokio::test]
async fn store_runs_nobody_following_past_the_grace_cancels_the_run() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("a few words").hang());
    let server = stored(&mock, Duration::from_secs(2)).await;
    let body = json!({"runId": "left", "prompt": VOTE, "protocolVersion": "1.0"});
    let mut reader = SseReader::new(server.post(&format!("/rooms/{ROOM}/run"), &body).await);
    reader.read_until("TEXT_MESSAGE_CONTENT").await;
    eventually("every call in flight", || mock.in_flight() == 3).await;
    drop(reader);
    // Still going within the grace: a follower picks it up.
    assert_eq!(mock.in_flight(), 3);
    eventually("the calls closed after the grace", || mock.in_flight() == 0).await;
    eventually("the run ended", || server.app.runs.is_empty()).await;
    flushed(&server).await;
    assert_eq!(run_status(&server, "left").await, "cancelled");
    let replay = read_with_ids(get_events(&server, "left", None).await).await;
    assert_eq!(replay.last().unwrap().1["code"], "cancelled");
}

#[tokio::test]
async fn store_runs_cancel_route_stops_the_run_at_once() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("a few words").hang());
    let server = stored(&mock, Duration::from_secs(60)).await;
    let body = json!({"runId": "stop-me", "prompt": VOTE, "protocolVersion": "1.0"});
    let mut reader = SseReader::new(server.post(&format!("/rooms/{ROOM}/run"), &body).await);
    reader.read_until("TEXT_MESSAGE_CONTENT").await;
    let resp = server
        .post(&format!("/rooms/{ROOM}/runs/stop-me/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let rest = reader.read_to_end().await;
    let last = rest.last().expect("a last event");
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("RUN_ERROR"), Some("cancelled"))
    );
    eventually("every call closed", || mock.in_flight() == 0).await;
    let resp = server
        .post(&format!("/rooms/{ROOM}/runs/nope/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn store_runs_an_interrupted_run_replays_then_says_so() {
    use roomhost::store::{self, RunRecord, RunStatus, ThreadRecord, Write};
    let mock = MockLlm::start().await;
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path.join("rh.db").display());
    {
        // What a process killed mid-run leaves behind.
        let s = store::open(&url, store::Quotas::default())
            .await
            .unwrap()
            .unwrap();
        let thread = ThreadRecord {
            id: "t".into(),
            room: ROOM.into(),
            owner: String::new(),
            created: 1,
            name: None,
            description: None,
        };
        s.start_run(
            &thread,
            &RunRecord {
                id: "cut".into(),
                thread_id: "t".into(),
                parent_run_id: None,
                created: 2,
                finished: None,
                status: RunStatus::Running,
                input: "{}".into(),
                result: None,
                usage: None,
                answer: None,
                llm_requests: None,
                events_cut: false,
                input_cut: false,
                metadata: None,
            },
            None,
            "start",
            std::time::Instant::now() + Duration::from_secs(600),
        )
        .await
        .unwrap();
        let started = json!({"type": "RUN_STARTED", "threadId": "t", "runId": "cut"}).to_string();
        s.write(&[Write::Event {
            run_id: "cut".into(),
            token: "start".into(),
            seq: 0,
            data: started,
        }])
        .await
        .unwrap();
    }
    let server = server_with(&mock, "", move |s| s.database_url = url).await;
    // Its owner never held a lease: the server's first replica check ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while run_status(&server, "cut").await == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the run stays running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(run_status(&server, "cut").await, "interrupted");
    let replay = read_with_ids(get_events(&server, "cut", None).await).await;
    let types: Vec<&str> = replay
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["RUN_STARTED", "RUN_ERROR"]);
    assert_eq!(replay[1].1["code"], "interrupted");
    // The last event is stored with the reserved last id: no event the dead process sent but
    // never stored can have had it.
    let ids: Vec<&str> = replay.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["cut:0", "cut:4294967295"]);
}

#[tokio::test]
async fn store_runs_soliplex_post_with_last_event_id_resumes() {
    let mock = MockLlm::start().await;
    let server = stored(&mock, Duration::ZERO).await;
    let created = server
        .post(&format!("/api/v1/rooms/{ROOM}/agui"), &json!({}))
        .await;
    let created: Value = created.json().await.unwrap();
    let (thread, run) = (
        created["thread_id"].as_str().unwrap(),
        created["run_id"].as_str().unwrap(),
    );
    let path = format!("/api/v1/rooms/{ROOM}/agui/{thread}/{run}");
    let body = json!({"threadId": thread, "runId": run, "messages": [{"id": "m1", "role": "user", "content": VOTE}]});
    let original = read_with_ids(server.post(&path, &body).await).await;
    flushed(&server).await;
    let again = TestServer::client()
        .post(format!("{}{path}", server.url))
        .header("Last-Event-ID", format!("{run}:2"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status().as_u16(),
        200,
        "honoured before the run-already-started check"
    );
    assert_eq!(read_with_ids(again).await, original[3..]);
}

#[tokio::test]
async fn store_runs_readyz_shows_the_store() {
    let mock = MockLlm::start().await;
    let server = stored(&mock, Duration::ZERO).await;
    let (_, body) = server.get("/readyz").await;
    assert_eq!(body["store"], "ok");
}
