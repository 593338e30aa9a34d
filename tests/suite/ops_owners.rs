//! Ownership: every thread and run belongs to the user who made it; another user gets 404 for it
//! on every route (list, get, events, resume, delete, cancel, a new run in the thread).

use std::time::Duration;

use roomhost::auth::AuthMode;
use serde_json::{json, Value};

use crate::support::harness::{RunResult, SseReader, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{server_with, ROOM};
use crate::support::tokens::api_key_entry;

const ALICE: &str = "alice-key";
const BOB: &str = "bob-key";

async fn server(mock: &MockLlm) -> TestServer {
    server_with(mock, "num_voters: 2", |s| {
        s.auth = AuthMode::Keys;
        s.api_keys = vec![api_key_entry("alice", ALICE), api_key_entry("bob", BOB)];
        s.database_url = "sqlite::memory:".into();
        s.detached_grace = Duration::ZERO;
    })
    .await
}

/// `method path` as the holder of `key`, with an optional JSON body and `Last-Event-ID`.
pub(crate) async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = TestServer::client()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("request")
}

async fn status(server: &TestServer, method: reqwest::Method, path: &str, key: &str) -> u16 {
    call(server, method, path, key, None, None)
        .await
        .status()
        .as_u16()
}

/// The thread ids `key`'s holder sees in the room.
async fn threads(server: &TestServer, key: &str) -> Vec<String> {
    let path = format!("/rooms/{ROOM}/threads");
    let list: Value = call(server, reqwest::Method::GET, &path, key, None, None)
        .await
        .json()
        .await
        .expect("a thread list");
    list["threads"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["thread_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn another_users_threads_and_runs_are_not_found_on_any_route() {
    let mock = MockLlm::start().await;
    let server = server(&mock).await;
    let run_path = format!("/rooms/{ROOM}/run");
    let body =
        json!({"threadId": "th-a", "runId": "run-a", "prompt": "Is tea better than coffee?"});
    let resp = call(
        &server,
        reqwest::Method::POST,
        &run_path,
        ALICE,
        Some(body),
        None,
    )
    .await;
    assert_eq!(RunResult::read(resp).await.last()["type"], "RUN_FINISHED");
    let stored = server.app.stored.as_ref().expect("a store");
    assert!(stored.writer.flush(Duration::from_secs(10)).await);

    assert_eq!(threads(&server, ALICE).await, ["th-a"]);
    assert!(threads(&server, BOB).await.is_empty());
    // Bob cannot add a turn to Alice's thread (nor read her earlier turns through it).
    let intrude = json!({"threadId": "th-a", "runId": "run-b", "prompt": "And now?"});
    let resp = call(
        &server,
        reqwest::Method::POST,
        &run_path,
        BOB,
        Some(intrude),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "thread_not_found", "{body}");
    let (get, post, delete) = (
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    );
    for (method, path) in [
        (get.clone(), format!("/rooms/{ROOM}/threads/th-a")),
        (get.clone(), format!("/rooms/{ROOM}/threads?before=th-a")),
        (get.clone(), format!("/rooms/{ROOM}/runs/run-a")),
        (get.clone(), format!("/rooms/{ROOM}/runs/run-a/events")),
        (post.clone(), format!("/rooms/{ROOM}/runs/run-a/cancel")),
        (delete.clone(), format!("/rooms/{ROOM}/threads/th-a")),
    ] {
        assert_eq!(
            status(&server, method.clone(), &path, BOB).await,
            404,
            "bob: {method} {path}"
        );
        assert_ne!(
            status(&server, method.clone(), &path, ALICE).await,
            404,
            "alice: {method} {path}"
        );
    }
    // Alice deleted her thread above; it is gone for her too.
    assert!(threads(&server, ALICE).await.is_empty());
}

#[tokio::test]
async fn another_user_can_neither_follow_resume_nor_cancel_a_live_run() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().hang());
    let server = server(&mock).await;
    let post = reqwest::Method::POST;
    let created: Value = call(
        &server,
        post.clone(),
        &format!("/api/v1/rooms/{ROOM}/agui"),
        ALICE,
        Some(json!({})),
        None,
    )
    .await
    .json()
    .await
    .expect("a new thread");
    let (thread, run) = (
        created["thread_id"].as_str().expect("thread id").to_owned(),
        created["run_id"].as_str().expect("run id").to_owned(),
    );
    let run_url = format!("/api/v1/rooms/{ROOM}/agui/{thread}/{run}");
    let body = json!({"threadId": thread, "runId": run, "prompt": "Is tea better than coffee?", "protocolVersion": "1.0"});
    let resp = call(
        &server,
        post.clone(),
        &run_url,
        ALICE,
        Some(body.clone()),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut alice = SseReader::new(resp);
    assert_eq!(
        alice.next_event().await.expect("RUN_STARTED")["type"],
        "RUN_STARTED"
    );

    let resume = call(
        &server,
        post.clone(),
        &run_url,
        BOB,
        Some(body),
        Some(&format!("{run}:0")),
    )
    .await;
    assert_eq!(resume.status().as_u16(), 404, "bob resumes alice's run");
    let events = format!("/rooms/{ROOM}/runs/{run}/events");
    assert_eq!(
        status(&server, reqwest::Method::GET, &events, BOB).await,
        404
    );
    let cancel = format!("/rooms/{ROOM}/runs/{run}/cancel");
    assert_eq!(status(&server, post.clone(), &cancel, BOB).await, 404);
    assert_eq!(status(&server, post, &cancel, ALICE).await, 202);
    let last = alice.read_to_end().await;
    let last = last.last().expect("a last event");
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "cancelled");
}
