//! The soliplex API on the store, called as soliplex's terminal client (`soliplex/tui/rest_api.py`,
//! `tui/main.py`) and Flutter frontend (`soliplex_api.dart`) call it: login, rooms, threads,
//! runs with their events, rename, feedback and delete, and errors as `{"detail": ...}`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::harness::{test_settings, RunResult, TempDir, TestServer};
use crate::support::test_agent;

const ROOM: &str = "sx";

async fn server() -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room(ROOM, 1, 0, false)]);
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn flushed(s: &TestServer) {
    let stored = s.app.stored.as_ref().expect("a store");
    assert!(stored.writer.flush(Duration::from_secs(10)).await);
}

async fn post_json(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let resp = s.post(path, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn agui(rest: &str) -> String {
    format!("/api/v1/rooms/{ROOM}/agui{rest}")
}

#[tokio::test]
async fn soliplex_api_the_terminal_clients_sequence() {
    let s = server().await;
    let client = TestServer::client();
    // Start-up: no login systems, then the rooms and the room.
    assert_eq!(s.get("/api/login").await, (200, json!({})));
    let (status, rooms) = s.get("/api/v1/rooms").await;
    assert_eq!(status, 200);
    assert!(rooms.get(ROOM).is_some(), "{rooms}");
    assert_eq!(s.get(&format!("/api/v1/rooms/{ROOM}")).await.0, 200);

    // A new thread (the terminal client sends its name at the top level: ignored) and its run.
    let (status, created) = post_json(&s, &agui(""), &json!({"name": "ignored"})).await;
    assert_eq!(status, 200, "{created}");
    let thread = created["thread_id"].as_str().expect("thread id").to_owned();
    let runs = created["runs"].as_object().expect("runs");
    assert_eq!(runs.len(), 1);
    let (first, run) = runs.iter().next().expect("one run");
    let first = first.clone();
    assert_eq!(run["run_input"]["state"], json!({}));
    assert!(created["created"].is_string() && created["metadata"].is_object());

    // The terminal client's body: snake_case, null `name` and `encrypted_value`.
    let body = json!({"thread_id": thread, "run_id": first, "state": {}, "tools": [],
        "context": [], "forwarded_props": {},
        "messages": [{"id": "m1", "role": "user", "content": "hi", "name": null,
            "encrypted_value": null}]});
    let run = RunResult::read(s.post(&agui(&format!("/{thread}/{first}")), &body).await).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED", "{}", run.error_body);
    assert_eq!(run.events[0]["threadId"], thread.as_str());

    // The next run: `parent_run_id` is there even when not sent.
    let (status, next) = post_json(&s, &agui(&format!("/{thread}")), &json!({})).await;
    assert_eq!(status, 200);
    assert!(next
        .as_object()
        .expect("a run")
        .contains_key("parent_run_id"));
    assert_eq!(next["parent_run_id"], Value::Null);
    let (_, next) = post_json(
        &s,
        &agui(&format!("/{thread}")),
        &json!({"parent_run_id": first}),
    )
    .await;
    assert_eq!(next["parent_run_id"], first.as_str());
    let second = next["run_id"].as_str().expect("run id").to_owned();
    // The history sent back holds an activity message with object content.
    let body = json!({"threadId": thread, "runId": second, "parentRunId": first,
        "messages": [
            {"id": "m1", "role": "user", "content": "hi"},
            {"id": "a1", "role": "activity", "activityType": "fanout", "content": {"tasks": []}},
            {"id": "t1", "role": "assistant", "content": "hello"},
            {"id": "m2", "role": "user", "content": "again"}]});
    let run = RunResult::read(s.post(&agui(&format!("/{thread}/{second}")), &body).await).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED", "{}", run.error_body);
    flushed(&s).await;

    // Reopen: the list, the thread with its runs oldest first, a run with its events.
    let (status, list) = s.get(&agui("")).await;
    assert_eq!(status, 200);
    assert_eq!(list["threads"][0]["thread_id"], thread.as_str());
    let (status, got) = s.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(status, 200, "{got}");
    let runs = got["runs"].as_object().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs.values() {
        for key in [
            "run_id",
            "parent_run_id",
            "created",
            "finished",
            "run_input",
            "metadata",
        ] {
            assert!(
                run.as_object().expect("run").contains_key(key),
                "{key} in {run}"
            );
        }
    }
    assert_eq!(runs[&second]["parent_run_id"], first.as_str());
    let (status, run) = s.get(&agui(&format!("/{thread}/{second}"))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["events"][0]["type"], "RUN_STARTED");
    assert_eq!(
        run["events"]
            .as_array()
            .expect("events")
            .last()
            .expect("an event")["type"],
        "RUN_FINISHED"
    );
    assert_eq!(run["run_input"]["messages"][3]["content"], "again");

    // Feedback and rename: 205.
    let path = agui(&format!("/{thread}/{second}/feedback"));
    let resp = s
        .post(&path, &json!({"feedback": "thumbs_up", "reason": "good"}))
        .await;
    assert_eq!(resp.status().as_u16(), 205);
    let resp = s
        .post(
            &agui(&format!("/{thread}/meta")),
            &json!({"name": "Renamed", "description": "d"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 205);
    let (_, list) = s.get(&agui("")).await;
    assert_eq!(list["threads"][0]["metadata"]["name"], "Renamed");

    // Delete: 204, then 404 everywhere.
    let url = format!("{}{}", s.url, agui(&format!("/{thread}")));
    let resp = client.delete(&url).send().await.expect("DELETE");
    assert_eq!(resp.status().as_u16(), 204);
    let (status, body) = send(client.delete(&url)).await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(s.get(&agui(&format!("/{thread}"))).await.0, 404);
    assert_eq!(
        post_json(&s, &agui(&format!("/{thread}")), &json!({}))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn soliplex_api_a_new_thread_keeps_its_metadata() {
    let s = server().await;
    let meta = json!({"name": "Trip", "description": "planning"});
    let (_, created) = post_json(&s, &agui(""), &json!({"metadata": meta})).await;
    assert_eq!(created["metadata"], meta);
    let thread = created["thread_id"].as_str().expect("thread id");
    let (status, got) = s.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(status, 200);
    assert_eq!(got["metadata"], meta);
    assert_eq!(got["runs"], json!({}));
}

#[tokio::test]
async fn soliplex_api_errors_are_details_with_soliplexs_statuses() {
    let s = server().await;
    let (_, created) = post_json(&s, &agui(""), &json!({})).await;
    let thread = created["thread_id"].as_str().expect("thread id").to_owned();
    let run = created["run_id"].as_str().expect("run id").to_owned();
    let other = uuid::Uuid::new_v4().to_string();

    // The body's ids must be the path's.
    let path = agui(&format!("/{thread}/{run}"));
    for body in [
        json!({"threadId": other, "prompt": "hi"}),
        json!({"runId": other, "prompt": "hi"}),
        json!({"run_id": other, "prompt": "hi"}),
    ] {
        let (status, err) = post_json(&s, &path, &body).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            err["detail"].as_str().expect("detail").contains("path"),
            "{err}"
        );
    }
    let (status, err) = s.get(&agui(&format!("/{other}"))).await;
    assert_eq!(status, 404);
    assert!(err["detail"].is_string());
    // A run not started yet is not in the store.
    assert_eq!(s.get(&agui(&format!("/{thread}/{run}"))).await.0, 404);
    assert_eq!(s.get(&agui(&format!("/{thread}/{other}"))).await.0, 404);
    let fb = agui(&format!("/{thread}/{other}/feedback"));
    assert_eq!(post_json(&s, &fb, &json!({"feedback": "x"})).await.0, 404);
    assert_eq!(
        post_json(&s, &agui(&format!("/{other}/meta")), &json!({}))
            .await
            .0,
        404
    );
    let (status, err) = s.get(&agui("/not-a-uuid")).await;
    assert_eq!(status, 400);
    assert!(err["detail"].is_string());
    let (status, err) = s.get("/api/v1/rooms/nope/agui").await;
    assert_eq!(status, 404);
    assert!(err["detail"].as_str().expect("detail").contains("nope"));
    let (status, _) = post_json(&s, &agui(""), &json!({"metadata": 5})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn soliplex_api_cors_allows_delete() {
    let s = server().await;
    let resp = TestServer::client()
        .request(reqwest::Method::OPTIONS, format!("{}{}", s.url, agui("/x")))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "DELETE")
        .send()
        .await
        .expect("preflight");
    let allowed = resp
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(allowed.contains("DELETE"), "{allowed}");
}
