//! Event profiles: the full AG-UI 1.0 stream for clients that declare 1.0, and the legacy stream
//! (no subagents, one text message, tasks' text in the activity) for every other client.

use std::time::{Duration, Instant};

use crate::support::harness::{RunResult, TestServer};
use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{finished, prompt, server, ROOM};
use roomhost::agui::patch::PatchOperation;
use roomhost::agui::{Event, Profile, RunAgentInput, Shaper, LIVE_TEXT_INTERVAL};
use serde_json::{json, Value};

const PROMPTS: [&str; 3] = [
    "Energy: Wind, Sun, Water",
    "Is tea better than coffee?",
    "Summarize: A1 | B2 | C3",
];

fn input(body: Value) -> RunAgentInput {
    serde_json::from_value(body).expect("run input")
}

#[test]
fn the_profile_follows_the_declared_protocol_or_the_explicit_choice() {
    let cases = [
        (json!({}), Profile::Legacy),
        (json!({"protocolVersion": "1.0"}), Profile::Full),
        (json!({"protocolVersion": "2.3"}), Profile::Full),
        (json!({"protocolVersion": "0.0.57"}), Profile::Legacy),
        (json!({"protocolVersion": "one"}), Profile::Legacy),
        (
            json!({"forwardedProps": {"agui_profile": "full"}}),
            Profile::Full,
        ),
        (
            json!({"protocolVersion": "1.0", "forwardedProps": {"agui_profile": "legacy"}}),
            Profile::Legacy,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            Profile::for_input(&input(body.clone())),
            Ok(expected),
            "{body}"
        );
    }
    assert!(Profile::for_input(&input(json!({"forwardedProps": {"agui_profile": 1}}))).is_err());
}

/// A run posted as is (no `protocolVersion` added).
async fn run_raw(server: &TestServer, body: Value) -> RunResult {
    RunResult::read(server.post(&format!("/rooms/{ROOM}/run"), &body).await).await
}

fn assert_legacy(run: &RunResult) {
    for e in &run.events {
        let ty = e["type"].as_str().unwrap_or("");
        assert!(!ty.starts_with("SUBAGENT"), "{e}");
        assert!(e.get("subagentRunId").is_none(), "{e}");
    }
    assert_eq!(
        run.of_type("TEXT_MESSAGE_START").len(),
        1,
        "{:?}",
        run.types()
    );
}

/// A result with the per-run ids blanked, to compare two runs.
fn without_ids(mut result: Value) -> Value {
    for entry in result["activity"]["results"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        entry["subagent_run_id"] = Value::Null;
    }
    result
}

#[tokio::test]
async fn clients_without_a_version_get_the_legacy_stream_with_the_same_result() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    for text in PROMPTS {
        let legacy = run_raw(&server, prompt(text)).await;
        let legacy_result = finished(&legacy);
        assert_legacy(&legacy);
        let full = server.run(ROOM, prompt(text)).await;
        let full_result = finished(&full);
        assert!(!full.of_type("SUBAGENT_STARTED").is_empty());
        assert_eq!(
            without_ids(legacy_result),
            without_ids(full_result),
            "{text}"
        );
    }
}

#[tokio::test]
async fn legacy_tasks_stream_their_text_into_the_activity() {
    let mock = MockLlm::start().await;
    mock.set_words(12);
    mock.set_timing(Duration::ZERO, LIVE_TEXT_INTERVAL / 3);
    let server = server(&mock, "").await;
    let run = run_raw(&server, prompt(PROMPTS[0])).await;
    let result = finished(&run);
    assert_legacy(&run);
    let outputs: Vec<&str> = result["activity"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["output"].as_str().unwrap_or(""))
        .collect();
    let mut live = vec![0; outputs.len()];
    for e in run.of_type("ACTIVITY_DELTA") {
        for op in e["patch"].as_array().expect("patch") {
            let path = op["path"].as_str().unwrap_or("");
            let Some(task) = path
                .strip_prefix("/results/")
                .and_then(|p| p.strip_suffix("/text"))
            else {
                continue;
            };
            let i: usize = task.parse().expect("task index");
            if op["op"] == "add" {
                let text = op["value"].as_str().expect("text");
                assert!(
                    outputs[i].starts_with(text),
                    "{text:?} is not a prefix of {:?}",
                    outputs[i]
                );
                live[i] += 1;
            }
        }
    }
    assert!(
        live.iter().all(|&n| n > 0),
        "every task's text was shown live: {live:?}"
    );
}

#[tokio::test]
async fn a_request_can_pick_its_profile() {
    let mock = MockLlm::start().await;
    let server = server(&mock, "").await;
    let legacy = server
        .run(
            ROOM,
            json!({"prompt": PROMPTS[1], "forwardedProps": {"agui_profile": "legacy"}}),
        )
        .await;
    finished(&legacy);
    assert_legacy(&legacy);
    let full = run_raw(
        &server,
        json!({"prompt": PROMPTS[1], "forwardedProps": {"agui_profile": "full"}}),
    )
    .await;
    finished(&full);
    assert_eq!(full.of_type("SUBAGENT_STARTED").len(), 3);
    let refused = run_raw(
        &server,
        json!({"prompt": PROMPTS[1], "forwardedProps": {"agui_profile": "newest"}}),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_body["error"]["code"], "invalid_input");
}

fn text(id: &str, subagent: &str, delta: &str) -> Event {
    Event::TextMessageContent {
        message_id: id.into(),
        delta: delta.into(),
        subagent_run_id: Some(subagent.into()),
    }
}

/// Operations as they go on the wire.
fn wire(patch: &[PatchOperation]) -> Vec<Value> {
    patch
        .iter()
        .map(|op| serde_json::to_value(op).expect("encodes"))
        .collect()
}

fn activity_delta(patch: Value) -> Event {
    Event::ActivityDelta {
        message_id: "a".into(),
        activity_type: "parallelization".into(),
        patch: serde_json::from_value(patch).expect("RFC 6902 operations"),
    }
}

#[test]
fn live_text_is_throttled_and_removed_when_a_task_or_the_run_ends() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let interval = LIVE_TEXT_INTERVAL.as_millis() as u64;
    let mut shaper = Shaper::new(Profile::Legacy);
    let mut out = Vec::new();
    let mut feed = |event: Event, ms: u64| {
        let mut got = Vec::new();
        shaper.push(event, at(ms), &mut |e| got.push(e));
        out.extend(got.clone());
        got
    };
    feed(
        Event::ActivitySnapshot {
            message_id: "a".into(),
            activity_type: "parallelization".into(),
            content: json!({"results": []}),
        },
        0,
    );
    let tasks = json!([
        {"op": "add", "path": "/results/-", "value": {"subagent_run_id": "s1", "status": "pending"}},
        {"op": "add", "path": "/results/-", "value": {"subagent_run_id": "s2", "status": "pending"}},
    ]);
    assert_eq!(feed(activity_delta(tasks), 0).len(), 1);
    for (i, s) in ["s1", "s2"].into_iter().enumerate() {
        let started = Event::SubagentStarted {
            subagent_run_id: s.into(),
            name: format!("Task {i}"),
            description: None,
        };
        assert!(feed(started, 1).is_empty());
        let start = Event::TextMessageStart {
            message_id: format!("m{i}"),
            role: roomhost::agui::TextRole::Assistant,
            subagent_run_id: Some(s.into()),
        };
        assert!(feed(start, 1).is_empty());
    }
    // Within the interval of the last update nothing goes out; past it, both tasks' text at once.
    assert!(feed(text("m0", "s1", "Hel"), 2).is_empty());
    assert!(feed(text("m1", "s2", "Wor"), interval - 1).is_empty());
    let update = feed(text("m0", "s1", "lo"), interval);
    let [Event::ActivityDelta { patch, .. }] = update.as_slice() else {
        panic!("one update: {update:?}")
    };
    let mut patch = wire(patch);
    patch.sort_by_key(|op| op["path"].to_string());
    assert_eq!(
        patch,
        [
            json!({"op": "add", "path": "/results/0/text", "value": "Hello"}),
            json!({"op": "add", "path": "/results/1/text", "value": "Wor"}),
        ]
    );
    assert!(feed(text("m1", "s2", "ld"), interval + 1).is_empty());
    // The first task ends: its text goes with the agent's next update, as one patch.
    let end = Event::TextMessageEnd {
        message_id: "m0".into(),
        subagent_run_id: Some("s1".into()),
    };
    assert!(feed(end, interval + 2).is_empty());
    let done = Event::SubagentFinished {
        subagent_run_id: "s1".into(),
        result: None,
    };
    assert!(feed(done, interval + 2).is_empty());
    let output = json!([{"op": "add", "path": "/results/0/output", "value": "Hello"}]);
    let merged = feed(activity_delta(output), interval + 3);
    let [Event::ActivityDelta { patch, .. }] = merged.as_slice() else {
        panic!("one update: {merged:?}")
    };
    assert_eq!(
        wire(patch),
        [
            json!({"op": "remove", "path": "/results/0/text"}),
            json!({"op": "add", "path": "/results/1/text", "value": "World"}),
            json!({"op": "add", "path": "/results/0/output", "value": "Hello"}),
        ]
    );
    // The run fails with the second task still running: its text is removed before RUN_ERROR.
    let error = Event::RunError {
        message: "stopped".into(),
        code: Some("shutdown".into()),
    };
    let last = feed(error.clone(), interval + 4);
    assert_eq!(
        last,
        [
            activity_delta(json!([{"op": "remove", "path": "/results/1/text"}])),
            error
        ]
    );
    assert!(out.iter().all(|e| !matches!(
        e,
        Event::SubagentStarted { .. } | Event::TextMessageStart { .. }
    )));
}

#[test]
fn the_full_profile_passes_every_event_unchanged() {
    let mut shaper = Shaper::new(Profile::Full);
    let event = text("m", "s", "x");
    let mut got = Vec::new();
    shaper.push(event.clone(), Instant::now(), &mut |e| got.push(e));
    assert_eq!(got, [event]);
}
