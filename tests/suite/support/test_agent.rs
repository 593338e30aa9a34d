//! A scripted agent for host tests, configured from its room's `extra_config`:
//! `words` (text chunks), `delay_ms` (before each chunk), `fail` (end with an error), `gated`
//! (after its words, wait until the test calls [`release`]). Its counters and gates are kept per
//! room, so tests sharing a process (`cargo test`) do not see each other's runs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use roomhost::agents::{
    Accepted, Agent, AgentDeps, AgentError, ErrorCode, EventSink, FactoryError, Registry,
    RunFuture, RunOutput,
};
use roomhost::agui::{Event, RunAgentInput, TextRole};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Per room: (runs whose future started, runs whose future was dropped before it finished).
static COUNTS: LazyLock<Mutex<HashMap<String, (usize, usize)>>> = LazyLock::new(Default::default);

fn count(room: &str, f: impl FnOnce(&mut (usize, usize))) {
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    f(counts.entry(room.to_owned()).or_default());
}

fn counts(room: &str) -> (usize, usize) {
    let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    counts.get(room).copied().unwrap_or_default()
}

/// Per room: whether its gate is open.
static GATES: LazyLock<Mutex<HashMap<String, watch::Sender<bool>>>> =
    LazyLock::new(Default::default);

fn gate(room: &str) -> watch::Receiver<bool> {
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    gates
        .entry(room.to_owned())
        .or_insert_with(|| watch::channel(false).0)
        .subscribe()
}

/// Opens `room`'s gate: its gated runs, held after their words, go on to finish (and later ones
/// pass straight through).
pub fn release(room: &str) {
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    gates
        .entry(room.to_owned())
        .or_insert_with(|| watch::channel(false).0)
        .send_replace(true);
}

/// Runs of `room` whose future started.
pub fn started(room: &str) -> usize {
    counts(room).0
}

/// Runs of `room` whose future was dropped before it finished (the host cancelled them).
pub fn cancelled(room: &str) -> usize {
    counts(room).1
}

pub const NAME: &str = "tests.scripted_agent";

pub fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register(NAME, create);
    registry
}

/// A room file for the scripted agent whose runs send `words` words at once, then wait for
/// [`release`].
pub fn gated_room(id: &str, words: u64) -> String {
    format!("{}    gated: true\n", room(id, words, 0, false))
}

/// A room file for the scripted agent.
pub fn room(id: &str, words: u64, delay_ms: u64, fail: bool) -> String {
    format!(
        "id: {id}\nname: {id}\nagent:\n  kind: factory\n  factory_name: {NAME}\n  with_agent_config: true\n  extra_config:\n    room: {id}\n    words: {words}\n    delay_ms: {delay_ms}\n    fail: {fail}\n"
    )
}

struct Scripted {
    room: String,
    words: u64,
    delay: Duration,
    fail: bool,
    gated: bool,
}

fn create(extra: &Value, _deps: &AgentDeps) -> Result<Arc<dyn Agent>, FactoryError> {
    let num = |k: &str| extra.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok(Arc::new(Scripted {
        room: extra
            .get("room")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        words: num("words"),
        delay: Duration::from_millis(num("delay_ms")),
        fail: extra.get("fail").and_then(Value::as_bool).unwrap_or(false),
        gated: extra.get("gated").and_then(Value::as_bool).unwrap_or(false),
    }))
}

struct CountDrop {
    room: String,
    finished: bool,
}

impl Drop for CountDrop {
    fn drop(&mut self) {
        if !self.finished {
            count(&self.room, |c| c.1 += 1);
        }
    }
}

impl Agent for Scripted {
    fn start(&self, input: RunAgentInput, events: EventSink) -> Result<Accepted, AgentError> {
        let prompt = input.last_user_text().unwrap_or_default();
        // It makes no LLM calls, so it needs no place in the queue.
        let accepted = |run: RunFuture| {
            Ok(Accepted {
                run,
                max_calls: 0,
                strategy: "test",
            })
        };
        if prompt.starts_with("/panic") {
            return accepted(Box::pin(async { panic!("scripted panic") }));
        }
        if prompt.starts_with("/reject") {
            return Err(AgentError::BadInput(
                "the scripted agent rejects /reject".into(),
            ));
        }
        let (words, delay, fail, room) = (self.words, self.delay, self.fail, self.room.clone());
        let mut gate = self.gated.then(|| gate(&room));
        accepted(Box::pin(async move {
            count(&room, |c| c.0 += 1);
            let mut guard = CountDrop {
                room,
                finished: false,
            };
            events
                .send(Event::StepStarted {
                    step_name: "work".into(),
                })
                .await;
            let message_id = format!("msg-{}", input.run_id);
            events
                .send(Event::TextMessageStart {
                    message_id: message_id.clone(),
                    role: TextRole::Assistant,
                    subagent_run_id: None,
                })
                .await;
            let mut answer = String::new();
            for i in 0..words {
                tokio::time::sleep(delay).await;
                let delta = format!("word{i} ");
                answer.push_str(&delta);
                events
                    .send(Event::TextMessageContent {
                        message_id: message_id.clone(),
                        delta,
                        subagent_run_id: None,
                    })
                    .await;
            }
            if let Some(gate) = &mut gate {
                // The gate's sender lives in `GATES` for good: this waits until it opens.
                let _ = gate.wait_for(|open| *open).await;
            }
            events
                .send(Event::TextMessageEnd {
                    message_id,
                    subagent_run_id: None,
                })
                .await;
            events
                .send(Event::StepFinished {
                    step_name: "work".into(),
                })
                .await;
            guard.finished = true;
            if fail {
                return Err(AgentError::Failed {
                    code: ErrorCode::Internal,
                    message: "the scripted agent failed as told".into(),
                });
            }
            let mut details = serde_json::Map::new();
            details.insert("echo".into(), json!(prompt));
            Ok(RunOutput {
                answer,
                details,
                activity_type: "test",
                ..RunOutput::default()
            })
        }))
    }
}
