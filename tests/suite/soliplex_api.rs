//! The soliplex API on the store, called as soliplex's terminal client (`soliplex/tui/rest_api.py`,
//! `tui/main.py`) and Flutter frontend (`soliplex_api.dart`) call it: login, rooms, threads,
//! runs with their events, rename, feedback and delete, and errors as `{"detail": ...}`. Runs are
//! stored `pending` when made (listed oldest first, kept across restarts and replicas, started
//! once), and another user's threads are not there.

use std::time::Duration;

use reqwest::Method;
use roomhost::auth::AuthMode;
use roomhost::config::Settings;
use serde_json::{json, Value};

use crate::ops_owners::call;
use crate::support::harness::{test_settings, RunResult, TempDir, TestServer};
use crate::support::test_agent;
use crate::support::tokens::api_key_entry;

const ROOM: &str = "sx";

async fn server() -> TestServer {
    server_with(|_| {}).await
}

async fn server_with(change: impl FnOnce(&mut Settings)) -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room(ROOM, 1, 0, false)]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    change(&mut settings);
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

/// A server on the database at `url`.
async fn server_on(url: &str) -> TestServer {
    let url = url.to_owned();
    server_with(move |s| s.database_url = url).await
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
    // Made without a name: `null` metadata, as soliplex's server answers.
    assert!(
        created["created"].is_string() && created["metadata"].is_null(),
        "{created}"
    );

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
    assert_eq!(
        runs.len(),
        3,
        "the two that ran and the one made but never started"
    );
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
    // The input comes back as sent: soliplex's parser needs the activity's `activityType`.
    assert_eq!(run["run_input"]["messages"][1]["activityType"], "fanout");

    // A run label: 205, shown with the run; `{}` erases it.
    let meta = agui(&format!("/{thread}/{second}/meta"));
    let resp = s.post(&meta, &json!({"label": "second turn"})).await;
    assert_eq!(resp.status().as_u16(), 205);
    let (_, run) = s.get(&agui(&format!("/{thread}/{second}"))).await;
    assert_eq!(run["metadata"], json!({"label": "second turn"}));
    assert_eq!(s.post(&meta, &json!({})).await.status().as_u16(), 205);
    let (_, got) = s.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(got["runs"][&second]["metadata"], Value::Null);

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
    // Its first run, made with it, is there before it starts (as made, but for its `events`).
    let mut made = created["runs"].clone();
    for run in made.as_object_mut().expect("runs").values_mut() {
        run.as_object_mut().expect("a run").remove("events");
    }
    assert_eq!(got["runs"], made);
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
    // A run not started yet is there, with no events; one never made is not.
    let (status, pending) = s.get(&agui(&format!("/{thread}/{run}"))).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(
        (&pending["status"], &pending["events"]),
        (&json!("pending"), &json!([]))
    );
    assert_eq!(s.get(&agui(&format!("/{thread}/{other}"))).await.0, 404);
    let (status, err) = post_json(
        &s,
        &agui(&format!("/{thread}")),
        &json!({"parent_run_id": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
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
    // Metadata and feedback are kept for good: each body is small, or 413 and nothing kept.
    let big = "x".repeat(20_000);
    let label = agui(&format!("/{thread}/{run}/meta"));
    for (path, body) in [
        (agui(""), json!({"metadata": {"name": big}})),
        (agui(&format!("/{thread}/meta")), json!({"name": big})),
        (
            agui(&format!("/{thread}")),
            json!({"metadata": {"label": big}}),
        ),
        (label.clone(), json!({"label": big})),
        (
            agui(&format!("/{thread}/{run}/feedback")),
            json!({"feedback": "up", "reason": big}),
        ),
    ] {
        let (status, err) = post_json(&s, &path, &body).await;
        assert_eq!(status, 413, "{path}: {err}");
        assert!(err["detail"].is_string(), "{err}");
    }
    let (_, got) = s.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(got["runs"].as_object().map(|r| r.len()), Some(1));
    assert_eq!(got["metadata"]["name"], Value::Null);
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

/// Creates a thread; its id and its first run's.
async fn new_thread(s: &TestServer, body: &Value) -> (String, String) {
    let (status, created) = post_json(s, &agui(""), body).await;
    assert_eq!(status, 200, "{created}");
    let id = |k: &str| created[k].as_str().expect("an id").to_owned();
    (id("thread_id"), id("run_id"))
}

/// Makes a run in the thread; its id.
async fn new_run(s: &TestServer, thread: &str, body: &Value) -> String {
    let (status, run) = post_json(s, &agui(&format!("/{thread}")), body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().expect("run id").to_owned()
}

/// Starts the run and reads its stream (or its refusal).
async fn start(s: &TestServer, thread: &str, run: &str) -> RunResult {
    let body = json!({"threadId": thread, "runId": run, "prompt": "hi"});
    RunResult::read(s.post(&agui(&format!("/{thread}/{run}")), &body).await).await
}

#[tokio::test]
async fn soliplex_api_runs_are_stored_when_made_and_listed_oldest_first() {
    let s = server().await;
    let (thread, first) = new_thread(&s, &json!({})).await;
    // Runs until their ids are not in sorted order, so that a map sorted by id would show.
    let mut made = vec![first.clone()];
    while made.len() < 3 || made.windows(2).all(|w| w[0] < w[1]) {
        let body = json!({"parent_run_id": made.last(), "metadata": {"label": made.len()}});
        made.push(new_run(&s, &thread, &body).await);
    }
    let url = format!("{}{}", s.url, agui(&format!("/{thread}")));
    let raw = TestServer::client()
        .get(&url)
        .send()
        .await
        .expect("GET thread")
        .text()
        .await
        .expect("a body");
    let at: Vec<usize> = made
        .iter()
        .map(|id| {
            raw.find(&format!("\"{id}\":"))
                .expect("every run is listed")
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "oldest first: {raw}");

    let got: Value = serde_json::from_str(&raw).expect("JSON");
    for (i, id) in made.iter().enumerate() {
        let run = &got["runs"][id];
        assert_eq!(
            (&run["status"], &run["finished"]),
            (&json!("pending"), &Value::Null)
        );
        assert_eq!(run["run_input"]["runId"], id.as_str());
        assert_eq!(run["run_input"]["state"], json!({}));
        if i == 0 {
            assert_eq!(
                (&run["metadata"], &run["parent_run_id"]),
                (&Value::Null, &Value::Null)
            );
        } else {
            assert_eq!(run["metadata"], json!({"label": i}), "{run}");
            assert_eq!(run["parent_run_id"], made[i - 1].as_str());
        }
    }
    // The store's own thread route lists them too.
    let (_, listed) = s.get(&format!("/rooms/{ROOM}/threads/{thread}")).await;
    let statuses: Vec<&Value> = listed["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, vec![&json!("pending"); made.len()]);

    // Not started, it has nothing to follow: a clear 409, not an empty stream.
    let resume = TestServer::client()
        .post(format!("{}{}", s.url, agui(&format!("/{thread}/{first}"))))
        .header("last-event-id", format!("{first}:3"))
        .json(&json!({}));
    let (status, body) = send(resume).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not started")),
        "{body}"
    );
    let (status, body) = s.get(&format!("/rooms/{ROOM}/runs/{first}/events")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("run_not_started"))
    );

    // Started, a run takes its real input and keeps what it was made with.
    let second = &made[1];
    let run = start(&s, &thread, second).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED", "{}", run.error_body);
    assert_eq!(
        run.events[0]["parentRunId"],
        first.as_str(),
        "named by RUN_STARTED too"
    );
    flushed(&s).await;
    let (_, after) = s.get(&agui(&format!("/{thread}"))).await;
    let (before, now) = (&got["runs"][second], &after["runs"][second]);
    assert_eq!(now["status"], "finished");
    assert!(now["finished"].is_string());
    assert_eq!(now["run_input"]["messages"][0]["content"], "hi");
    for key in ["created", "metadata", "parent_run_id"] {
        assert_eq!(now[key], before[key], "{key}");
    }
    assert_eq!(after["runs"][&made[2]]["status"], "pending");
}

/// Two starts of one pending run at once, through `a` and `b`: exactly one runs it.
async fn started_once(a: &TestServer, b: &TestServer) {
    let (thread, run) = new_thread(a, &json!({})).await;
    let (x, y) = tokio::join!(start(a, &thread, &run), start(b, &thread, &run));
    let (won, lost) = if x.status == 200 { (x, y) } else { (y, x) };
    assert_eq!(won.status, 200, "{}", won.error_body);
    assert_eq!(won.last()["type"], "RUN_FINISHED");
    assert_eq!(lost.status, 400, "{}", lost.error_body);
    let detail = lost.error_body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("already been run"), "{detail}");
    flushed(a).await;
    flushed(b).await;
    let (_, got) = b.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(got["runs"][&run]["status"], "finished");
}

#[tokio::test]
async fn soliplex_api_a_pending_run_starts_once_here_and_across_replicas() {
    let s = server().await;
    started_once(&s, &s).await;
    // Two replicas on one database: the store decides.
    let dir = TempDir::new();
    let mut urls = vec![format!("sqlite://{}", dir.path.join("shared.db").display())];
    urls.extend(crate::store::postgres().await);
    for url in urls {
        let (a, b) = (server_on(&url).await, server_on(&url).await);
        started_once(&a, &b).await;
        // A run made by one replica is listed and started by the other.
        let (thread, run) = new_thread(&a, &json!({})).await;
        let (_, got) = b.get(&agui(&format!("/{thread}"))).await;
        assert_eq!(got["runs"][&run]["status"], "pending", "{url}");
        assert_eq!(
            start(&b, &thread, &run).await.last()["type"],
            "RUN_FINISHED"
        );
    }
}

#[tokio::test]
async fn soliplex_api_a_pending_run_outlives_a_restart() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path.join("rh.db").display());
    let mut s = server_on(&url).await;
    let (thread, first) = new_thread(&s, &json!({"metadata": {"name": "kept"}})).await;
    let body = json!({"parent_run_id": first, "metadata": {"label": "next"}});
    let second = new_run(&s, &thread, &body).await;
    s.shutdown();
    assert!(s.wait_stopped(Duration::from_secs(10)).await);
    drop(s);

    let s = server_on(&url).await;
    let (status, got) = s.get(&agui(&format!("/{thread}"))).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["metadata"]["name"], "kept");
    let run = &got["runs"][&second];
    assert_eq!(run["status"], "pending", "not interrupted: {run}");
    assert_eq!(run["metadata"], json!({"label": "next"}));
    assert_eq!(run["parent_run_id"], first.as_str());
    assert_eq!(
        start(&s, &thread, &second).await.last()["type"],
        "RUN_FINISHED"
    );
    assert_eq!(start(&s, &thread, &second).await.status, 400);
}

#[tokio::test]
async fn soliplex_api_without_a_store_threads_and_runs_are_404() {
    let s = server_with(|s| s.database_url = "none".into()).await;
    let (status, err) = post_json(&s, &agui(""), &json!({})).await;
    assert_eq!(status, 404);
    assert!(
        err["detail"]
            .as_str()
            .unwrap_or("")
            .contains("database_url"),
        "{err}"
    );
    let (thread, run) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let refused = start(&s, &thread.to_string(), &run.to_string()).await;
    assert_eq!(refused.status, 404);
    assert!(refused.error_body["detail"].is_string());
    assert_eq!(s.get(&agui("")).await.0, 404);
}

const ALICE: &str = "alice-key";
const BOB: &str = "bob-key";

#[tokio::test]
async fn soliplex_api_another_users_thread_is_not_there() {
    let s = server_with(|s| {
        s.auth = AuthMode::Keys;
        s.api_keys = vec![api_key_entry("alice", ALICE), api_key_entry("bob", BOB)];
    })
    .await;
    let as_user = |key: &'static str, method: Method, path: String, body: Option<Value>| {
        let s = &s;
        async move { call(s, method, &path, key, body, None).await }
    };
    let created: Value = as_user(ALICE, Method::POST, agui(""), Some(json!({})))
        .await
        .json()
        .await
        .expect("a thread");
    let thread = created["thread_id"].as_str().expect("thread id").to_owned();
    let ran = created["run_id"].as_str().expect("run id").to_owned();
    let body = json!({"threadId": thread, "runId": ran, "prompt": "hi"});
    let path = agui(&format!("/{thread}/{ran}"));
    let run = RunResult::read(as_user(ALICE, Method::POST, path, Some(body)).await).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED", "{}", run.error_body);
    let made: Value = as_user(
        ALICE,
        Method::POST,
        agui(&format!("/{thread}")),
        Some(json!({})),
    )
    .await
    .json()
    .await
    .expect("a run");
    let pending = made["run_id"].as_str().expect("run id").to_owned();
    flushed(&s).await;

    let thread_id = thread.as_str();
    let listed = |key| async move {
        let list: Value = as_user(key, Method::GET, agui(""), None)
            .await
            .json()
            .await
            .expect("a list");
        list["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .any(|t| t["thread_id"] == thread_id)
    };
    assert!(!listed(BOB).await, "bob's list");
    assert!(listed(ALICE).await, "alice's list");
    let start = |id: &str| json!({"threadId": thread, "runId": id, "prompt": "hi"});
    // Each as Bob (404 `{"detail"}`), then as Alice (anything else).
    let routes = [
        (Method::GET, agui(&format!("/{thread}")), None, None),
        (
            Method::POST,
            agui(&format!("/{thread}/meta")),
            Some(json!({"name": "x"})),
            None,
        ),
        (
            Method::POST,
            agui(&format!("/{thread}")),
            Some(json!({})),
            None,
        ),
        (Method::GET, agui(&format!("/{thread}/{ran}")), None, None),
        (
            Method::POST,
            agui(&format!("/{thread}/{ran}/feedback")),
            Some(json!({"feedback": "up"})),
            None,
        ),
        (
            Method::POST,
            agui(&format!("/{thread}/{ran}/meta")),
            Some(json!({"label": "x"})),
            None,
        ),
        (
            Method::POST,
            agui(&format!("/{thread}/{pending}")),
            Some(start(&pending)),
            None,
        ),
        (
            Method::POST,
            agui(&format!("/{thread}/{ran}")),
            Some(start(&ran)),
            Some(format!("{ran}:0")),
        ),
        (Method::DELETE, agui(&format!("/{thread}")), None, None),
    ];
    for (method, path, body, last_id) in &routes {
        let resp = call(
            &s,
            method.clone(),
            path,
            BOB,
            body.clone(),
            last_id.as_deref(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 404, "bob: {method} {path}");
        let err: Value = resp.json().await.expect("a JSON error");
        assert!(err["detail"].is_string(), "bob: {method} {path}: {err}");
    }
    // Bob changed nothing: the thread keeps its name, the run he tried to start is still pending.
    let got: Value = as_user(ALICE, Method::GET, agui(&format!("/{thread}")), None)
        .await
        .json()
        .await
        .expect("the thread");
    assert_eq!(got["metadata"]["name"], Value::Null);
    assert_eq!(got["runs"][&pending]["status"], "pending", "{got}");
    assert_eq!(got["runs"].as_object().map(|r| r.len()), Some(2));
    for (method, path, body, last_id) in routes {
        let resp = call(&s, method.clone(), &path, ALICE, body, last_id.as_deref()).await;
        let status = resp.status().as_u16();
        assert!(
            (200..300).contains(&status),
            "alice: {method} {path}: {status}"
        );
        // Read streams to their end, so the next route finds the run finished.
        resp.bytes().await.expect("a body");
    }
    assert!(!listed(ALICE).await, "alice deleted her thread last");
}
