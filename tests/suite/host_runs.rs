//! Runs through the host: event order, errors as RUN_ERROR, disconnects, keep-alive, shutdown.

use std::time::Duration;

use crate::support::harness::{
    eventually, test_settings, types_of, verify_agui, TempDir, TestServer,
};
use crate::support::test_agent;
use serde_json::json;

async fn server_with(
    room_yaml: &str,
    tweak: impl FnOnce(&mut roomhost::config::Settings),
) -> TestServer {
    let dir = TempDir::with_rooms(&[room_yaml]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    tweak(&mut settings);
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

#[tokio::test]
async fn a_run_streams_its_events_in_protocol_order() {
    let server = server_with(&test_agent::room("echo", 3, 0, false), |_| {}).await;
    let body = json!({"threadId": "t-1", "runId": "r-1", "messages": [
        {"id": "1", "role": "user", "content": "first"},
        {"id": "2", "role": "assistant", "content": "reply"},
        {"id": "3", "role": "user", "content": [{"type": "text", "text": "last question"}]}
    ]});
    let run = server.run("echo", body).await;
    assert_eq!(run.status, 200);
    assert!(
        run.content_type.starts_with("text/event-stream"),
        "{}",
        run.content_type
    );
    assert_eq!(
        run.types(),
        [
            "RUN_STARTED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "STEP_FINISHED",
            "RUN_FINISHED"
        ]
    );
    verify_agui(&run.events).unwrap();
    assert_eq!(
        run.events[0],
        json!({"type": "RUN_STARTED", "threadId": "t-1", "runId": "r-1"})
    );
    assert_eq!(
        run.events[1],
        json!({"type": "STEP_STARTED", "stepName": "work"})
    );
    assert_eq!(
        run.events[2],
        json!({"type": "TEXT_MESSAGE_START", "messageId": "msg-r-1", "role": "assistant"})
    );
    assert_eq!(run.final_text(), "word0 word1 word2 ");
    assert_eq!(
        run.last(),
        &json!({"type": "RUN_FINISHED", "threadId": "t-1", "runId": "r-1", "result": {"echo": "last question", "text": "word0 word1 word2 ", "llm_requests": 0}})
    );
}

#[tokio::test]
async fn prompt_shorthand_gets_generated_ids() {
    let server = server_with(&test_agent::room("echo", 1, 0, false), |_| {}).await;
    let run = server.run("echo", json!({"prompt": "hello"})).await;
    verify_agui(&run.events).unwrap();
    let started = &run.events[0];
    for key in ["threadId", "runId"] {
        let id = started[key].as_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{key} {id} is not a UUID"
        );
    }
    assert_eq!(run.last()["result"]["echo"], "hello");
}

#[tokio::test]
async fn an_agent_failure_ends_the_stream_with_run_error() {
    let server = server_with(&test_agent::room("failing", 1, 0, true), |_| {}).await;
    let run = server.run("failing", json!({"prompt": "x"})).await;
    assert_eq!(run.status, 200);
    verify_agui(&run.events).unwrap();
    assert_eq!(
        run.last(),
        &json!({"type": "RUN_ERROR", "message": "the scripted agent failed as told", "code": "internal"})
    );
}

#[tokio::test]
async fn an_agent_panic_becomes_run_error_not_a_cut_stream() {
    let server = server_with(&test_agent::room("echo", 1, 0, false), |_| {}).await;
    let run = server.run("echo", json!({"prompt": "/panic"})).await;
    verify_agui(&run.events).unwrap();
    assert_eq!(run.last()["type"], "RUN_ERROR");
    assert_eq!(run.last()["code"], "internal");
    assert!(run.last()["message"]
        .as_str()
        .unwrap()
        .contains("scripted panic"));
}

#[tokio::test]
async fn input_the_agent_refuses_is_a_400_before_the_stream() {
    let server = server_with(&test_agent::room("refusing", 1, 0, false), |_| {}).await;
    let run = server
        .run("refusing", json!({"prompt": "/reject this"}))
        .await;
    assert_eq!(run.status, 400);
    assert_eq!(run.error_body["error"]["code"], "bad_request");
    assert!(run.error_body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rejects"));
    assert_eq!(test_agent::started("refusing"), 0);
}

#[tokio::test]
async fn client_disconnect_cancels_the_agent() {
    let server = server_with(&test_agent::room("slow", 1000, 20, false), |_| {}).await;
    let mut reader = server.open_run("slow", json!({"prompt": "go"})).await;
    let seen = reader.read_until("TEXT_MESSAGE_CONTENT").await;
    assert_eq!(types_of(&seen)[0], "RUN_STARTED");
    assert_eq!(server.app.runs.len(), 1);
    drop(reader);
    eventually("the agent's future is dropped", || {
        test_agent::cancelled("slow") == 1
    })
    .await;
    eventually("no run task is left", || server.app.runs.is_empty()).await;
}

#[tokio::test]
async fn keep_alive_comments_flow_while_the_agent_is_quiet() {
    let server = server_with(&test_agent::room("quiet", 1, 600, false), |s| {
        s.keep_alive = Duration::from_millis(50)
    })
    .await;
    let mut reader = server.open_run("quiet", json!({"prompt": "go"})).await;
    let events = reader.read_to_end().await;
    verify_agui(&events).unwrap();
    assert!(
        reader.comments >= 3,
        "only {} keep-alive comments in 600 ms at 50 ms",
        reader.comments
    );
}

#[tokio::test]
async fn shutdown_lets_short_runs_finish_and_ends_long_ones_with_run_error() {
    let short = test_agent::room("short", 3, 100, false);
    let long = test_agent::room("long", 1000, 50, false);
    let dir = TempDir::with_rooms(&[&short, &long]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    settings.shutdown_grace = Duration::from_secs(1);
    let mut server = TestServer::start_with(settings, test_agent::registry(), dir).await;

    let mut short_run = server.open_run("short", json!({"prompt": "a"})).await;
    let mut long_run = server.open_run("long", json!({"prompt": "b"})).await;
    short_run.read_until("RUN_STARTED").await;
    long_run.read_until("TEXT_MESSAGE_CONTENT").await;
    server.shutdown();

    let short_events = short_run.read_to_end().await;
    assert_eq!(
        types_of(&short_events).last().map(String::as_str),
        Some("RUN_FINISHED")
    );
    let long_events = long_run.read_to_end().await;
    let last = long_events.last().expect("long run ends with an event");
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "shutdown");
    assert!(
        server.wait_stopped(Duration::from_secs(5)).await,
        "server did not stop after draining"
    );
    assert!(server.app.runs.is_empty());
}
