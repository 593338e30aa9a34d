//! Thread and run ids: short and plain (UUIDs on the soliplex routes), a thread bound to its room,
//! a bounded number of runs per thread, and only runs that start are recorded.

use crate::support::harness::{RunResult, TempDir, TestServer};
use crate::support::test_agent;
use roomhost::store::MAX_RUNS_PER_THREAD;
use serde_json::{json, Value};

async fn server() -> TestServer {
    let dir = TempDir::with_rooms(&[
        &test_agent::room("ids-a", 1, 0, false),
        &test_agent::room("ids-b", 1, 0, false),
    ]);
    let settings = crate::support::harness::test_settings("http://127.0.0.1:9", dir.path.clone());
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn new_thread(s: &TestServer, room: &str) -> (String, String) {
    let created: Value = s
        .post(&format!("/api/v1/rooms/{room}/agui"), &json!({}))
        .await
        .json()
        .await
        .expect("thread JSON");
    let id = |k: &str| created[k].as_str().expect("an id").to_owned();
    (id("thread_id"), id("run_id"))
}

async fn run_at(s: &TestServer, path: &str, prompt: &str) -> RunResult {
    RunResult::read(s.post(path, &json!({ "prompt": prompt })).await).await
}

#[tokio::test]
async fn ids_in_the_body_must_be_short_and_plain() {
    let s = server().await;
    let long = "a".repeat(129);
    for (key, id) in [
        ("threadId", "line\nbreak"),
        ("runId", "\u{1b}[31mred"),
        ("runId", long.as_str()),
        ("parentRunId", "../up"),
    ] {
        let run = RunResult::read(
            s.post("/rooms/ids-a/run", &json!({"prompt": "hi", key: id}))
                .await,
        )
        .await;
        assert_eq!(run.status, 400, "{key} {id:?}");
        assert_eq!(run.error_body["error"]["code"], "invalid_id");
        let message = run.error_body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(key) && !message.contains(id), "{message}");
    }
    let fine = "thread-1:a.B_9".to_owned() + &"x".repeat(114);
    let run = RunResult::read(
        s.post(
            "/rooms/ids-a/run",
            &json!({"prompt": "hi", "threadId": fine}),
        )
        .await,
    )
    .await;
    assert_eq!(run.last()["type"], "RUN_FINISHED");
    assert_eq!(run.events[0]["threadId"], fine.as_str());
}

#[tokio::test]
async fn soliplex_routes_take_uuids_and_threads_stay_in_their_room() {
    let s = server().await;
    let (thread, run) = new_thread(&s, "ids-a").await;
    let bad = run_at(
        &s,
        &format!("/api/v1/rooms/ids-a/agui/{thread}/run-1"),
        "hi",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.error_body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("UUID"));
    let resp = s
        .post("/api/v1/rooms/ids-a/agui/not-a-uuid", &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 400);

    let elsewhere = run_at(
        &s,
        &format!("/api/v1/rooms/ids-b/agui/{thread}/{run}"),
        "hi",
    )
    .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.error_body);
    assert!(elsewhere.error_body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("not found"));
    let resp = s
        .post(&format!("/api/v1/rooms/ids-b/agui/{thread}"), &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 404);

    let home = run_at(
        &s,
        &format!("/api/v1/rooms/ids-a/agui/{thread}/{run}"),
        "hi",
    )
    .await;
    assert_eq!(home.last()["type"], "RUN_FINISHED");
}

#[tokio::test]
async fn a_run_the_agent_refuses_is_not_recorded() {
    let s = server().await;
    let (thread, run) = new_thread(&s, "ids-a").await;
    let path = format!("/api/v1/rooms/ids-a/agui/{thread}/{run}");
    let refused = run_at(&s, &path, "/reject this").await;
    assert_eq!(refused.status, 400);
    assert!(refused.error_body["detail"].is_string());
    let retried = run_at(&s, &path, "hi").await;
    assert_eq!(
        retried.last()["type"],
        "RUN_FINISHED",
        "{}",
        retried.error_body
    );
    let again = run_at(&s, &path, "hi").await;
    assert!(again.error_body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("already been run"));
}

#[tokio::test]
async fn a_thread_has_a_bounded_number_of_runs() {
    let s = server().await;
    let (thread, _) = new_thread(&s, "ids-a").await;
    let path = format!("/api/v1/rooms/ids-a/agui/{thread}");
    for _ in 1..MAX_RUNS_PER_THREAD {
        let resp = s.post(&path, &json!({})).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let resp = s.post(&path, &json!({})).await;
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.expect("JSON");
    assert!(body["detail"].as_str().unwrap_or("").contains("limit"));
    // A run id made up by the client counts too.
    let made_up = run_at(&s, &format!("{path}/{}", uuid::Uuid::new_v4()), "hi").await;
    assert_eq!(made_up.status, 409);
}
