//! The parallelization room served through the real router against the mock LLM, and the checks
//! every run of it must pass.

use roomhost::agents::parallelization::prompts;
use roomhost::agents::Registry;
use roomhost::config::Settings;
use serde_json::Value;

use super::harness::{eventually, test_settings, verify_agui, RunResult, TempDir, TestServer};
use super::mock_llm::{MockLlm, MockRequest};

pub const ROOM: &str = "par";

/// The room with `extra` (YAML lines, `key: value`) added to its `extra_config`; the model does
/// not think unless `extra` sets `think`.
pub fn room_yaml(extra: &str) -> String {
    let mut lines: Vec<String> = extra
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    if !lines.iter().any(|l| l.starts_with("think:")) {
        lines.push("think: \"off\"".into());
    }
    let extra: String = lines.iter().map(|l| format!("    {l}\n")).collect();
    format!(
        "id: {ROOM}\nname: Parallelization\ndescription: test room\nagent:\n  kind: factory\n  factory_name: parallelization\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n{extra}"
    )
}

pub async fn server(mock: &MockLlm, extra: &str) -> TestServer {
    server_with(mock, extra, |_| {}).await
}

/// A server whose settings `tweak` may change (LLM concurrency, body limit).
pub async fn server_with(
    mock: &MockLlm,
    extra: &str,
    tweak: impl FnOnce(&mut Settings),
) -> TestServer {
    let dir = TempDir::with_rooms(&[&room_yaml(extra)]);
    let mut settings = test_settings(&mock.url(), dir.path.clone());
    tweak(&mut settings);
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

/// A request's messages between its system message and its prompt: the history it carried.
pub fn carried(request: &MockRequest) -> Vec<(String, String)> {
    let messages = &request.messages;
    let end = messages.iter().rposition(|m| m.role == "user").unwrap_or(0);
    messages[..end]
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| (m.role.clone(), m.content.clone()))
        .collect()
}

pub fn prompt(text: &str) -> Value {
    serde_json::json!({ "prompt": text })
}

/// Checks what every finished run must satisfy and returns `RUN_FINISHED.result`: the protocol's
/// ordering rules, one activity whose snapshot plus deltas equals the activity in the result, and
/// a closed final answer.
pub fn finished(run: &RunResult) -> Value {
    assert_eq!(run.status, 200, "{:?}", run.error_body);
    if let Err(e) = verify_agui(&run.events) {
        panic!("{e}\n{:#?}", run.types());
    }
    let last = run.last();
    assert_eq!(last["type"], "RUN_FINISHED", "{last}");
    let result = last["result"].clone();
    assert_eq!(run.of_type("ACTIVITY_SNAPSHOT").len(), 1);
    let activity = run.activity_state();
    assert_eq!(
        activity, result["activity"],
        "activity patches vs final state"
    );
    assert_eq!(activity["status"], "complete");
    assert_eq!(
        activity["completed_tasks"].as_u64().unwrap_or(0)
            + activity["failed_tasks"].as_u64().unwrap_or(0),
        activity["total_tasks"].as_u64().unwrap_or(1),
        "every task ended"
    );
    assert_eq!(run.final_text(), result["text"].as_str().unwrap_or(""));
    let answers: Vec<&Value> = run
        .of_type("TEXT_MESSAGE_START")
        .into_iter()
        .filter(|e| e.get("subagentRunId").is_none())
        .collect();
    assert_eq!(answers.len(), 1, "exactly one answer message");
    result
}

/// Checks a failed run: protocol order, `RUN_ERROR` last with `code`, the activity `failed`.
pub fn failed<'a>(run: &'a RunResult, code: &str) -> &'a str {
    assert_eq!(run.status, 200, "{:?}", run.error_body);
    if let Err(e) = verify_agui(&run.events) {
        panic!("{e}\n{:#?}", run.types());
    }
    let last = run.last();
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], code, "{last}");
    assert_eq!(run.activity_state()["status"], "failed");
    last["message"].as_str().unwrap_or("")
}

/// A run against a stopped backend: `RUN_ERROR` with the LLM's code, the message opening with
/// `head` and saying the reason once. Returns the message.
pub fn backend_down<'a>(run: &'a RunResult, mock: &MockLlm, head: &str) -> &'a str {
    let message = failed(run, "llm_unreachable");
    let reason = "cannot connect to the LLM backend 1";
    assert!(
        message.starts_with(&format!("{head}: {reason}")),
        "{message}"
    );
    assert!(
        !message.contains(mock.url().trim_start_matches("http://")),
        "the backend's URL reached the client: {message}"
    );
    assert_eq!(message.matches("cannot connect").count(), 1, "{message}");
    message
}

/// `(subagentRunId, name, how it ended)` for each subagent, in start order.
pub fn subagents(run: &RunResult) -> Vec<(String, String, String)> {
    run.of_type("SUBAGENT_STARTED")
        .into_iter()
        .map(|s| {
            let id = s["subagentRunId"].as_str().unwrap_or_default().to_owned();
            let end = run
                .events
                .iter()
                .find(|e| {
                    e["subagentRunId"] == id.as_str()
                        && matches!(
                            e["type"].as_str(),
                            Some("SUBAGENT_FINISHED" | "SUBAGENT_ERROR")
                        )
                })
                .map_or("open", |e| e["type"].as_str().unwrap_or("?"));
            (
                id,
                s["name"].as_str().unwrap_or("").to_owned(),
                end.to_owned(),
            )
        })
        .collect()
}

/// Index of the first event matching `pred`.
pub fn position(run: &RunResult, pred: impl Fn(&Value) -> bool) -> usize {
    run.events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no such event in {:?}", run.types()))
}

/// The system message of a request (what kind of call it is).
pub fn system_of(request: &MockRequest) -> String {
    request
        .messages
        .iter()
        .find(|m| m.role == "system")
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// The start of a prompt template, up to its first line break or `{placeholder}`: tests tell
/// prompts apart by it, so rewording the rest of a prompt breaks no test.
pub fn opening(template: &'static str) -> &'static str {
    template
        .find(['\n', '{'])
        .map_or(template, |end| &template[..end])
}

/// The start of a prompt made from `template` whose first placeholder is `value`:
/// `prompt_start(prompts::MAP_USER, "Summarize")` is `Task: Summarize`.
pub fn prompt_start(template: &'static str, value: &str) -> String {
    format!("{}{value}", opening(template))
}

/// Whether `request`'s system prompt is the one made from `template`.
pub fn asks(request: &MockRequest, template: &'static str) -> bool {
    system_of(request).starts_with(opening(template))
}

/// The section a writer's request is for (the first line of its prompt).
pub fn section_of(request: &MockRequest) -> String {
    let head = opening(prompts::SECTION_USER);
    request
        .last_user()
        .and_then(|u| u.lines().next())
        .and_then(|l| l.strip_prefix(head))
        .unwrap_or_default()
        .to_owned()
}

/// Nothing is left once the runs are over: no run task, no LLM slot, no call open at the mock.
pub async fn assert_idle(server: &TestServer, mock: &MockLlm) {
    eventually("runs, LLM slots and mock calls are released", || {
        let load = server.app.llm.load();
        server.app.runs.is_empty()
            && load.in_flight == 0
            && load.queued == 0
            && mock.in_flight() == 0
    })
    .await;
}

/// Every status the activity went through, in order, repeats removed.
pub fn statuses(run: &RunResult) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for event in &run.events {
        let status = match event["type"].as_str() {
            Some("ACTIVITY_SNAPSHOT") => event["content"]["status"].as_str(),
            Some("ACTIVITY_DELTA") => event["patch"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .filter(|op| op["path"] == "/status")
                .find_map(|op| op["value"].as_str()),
            _ => None,
        };
        if let Some(status) = status {
            if seen.last().map(String::as_str) != Some(status) {
                seen.push(status.to_owned());
            }
        }
    }
    seen
}
