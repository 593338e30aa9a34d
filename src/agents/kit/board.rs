//! A run's activity message: what a UI draws while the run works. Every room's activity is its own
//! fields (`X`) beside the task board every fan-out fills (`results`, one entry per task with its
//! `subagent_run_id`, and the counts) and the `notes`. Every change updates the typed content and
//! records the JSON Patch operations that make the same change on the client, so the client's copy
//! (snapshot + deltas) always equals ours.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::agui::patch::{self, at, task_field, PatchOperation};
use crate::agui::Event;
use crate::llm::Usage;
use json_patch::jsonptr::PointerBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Complete,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
}

impl From<Usage> for TaskUsage {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }
    }
}

/// Where a structured answer was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// The reply was the JSON asked for.
    Json,
    /// The reply was not; the JSON came when it was asked again with the reason.
    Reask,
    /// Neither reply was the JSON; the answer was read from the prose.
    FreeText,
}

/// Why a call stopped before the model ended its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// It reached the call's `max_tokens`.
    MaxTokens,
    /// The repetition guard stopped it: the answer was looping.
    Repetition,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEntry {
    pub label: String,
    pub subagent_run_id: String,
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TaskUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<AnswerSource>,
    /// The answer is incomplete (the task still counts as complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Cut>,
}

/// The activity's content: the room's fields first, then the task board and the notes.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Content<X> {
    #[serde(flatten)]
    room: X,
    total_tasks: usize,
    completed_tasks: usize,
    failed_tasks: usize,
    results: Vec<TaskEntry>,
    /// What the user should know about the result (failures left out, input truncated).
    notes: Vec<String>,
}

pub struct Board<X> {
    message_id: String,
    activity_type: &'static str,
    content: Content<X>,
    pending: Vec<PatchOperation>,
}

/// The top-level members of a room's fields as JSON (an object; anything else counts as none).
fn members(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl<X: Serialize> Board<X> {
    pub fn new(activity_type: &'static str, room: X) -> Self {
        Self {
            message_id: uuid::Uuid::new_v4().to_string(),
            activity_type,
            content: Content {
                room,
                total_tasks: 0,
                completed_tasks: 0,
                failed_tasks: 0,
                results: Vec::new(),
                notes: Vec::new(),
            },
            pending: Vec::new(),
        }
    }

    pub fn activity_type(&self) -> &'static str {
        self.activity_type
    }

    /// The room's fields as they are now.
    pub fn room(&self) -> &X {
        &self.content.room
    }

    /// Changes the room's fields; the members that changed are patched whole (added, replaced or
    /// removed), so the client's copy follows whatever `change` did.
    pub fn update(&mut self, change: impl FnOnce(&mut X)) {
        let before = members(&self.content.room);
        change(&mut self.content.room);
        let after = members(&self.content.room);
        for (key, value) in &after {
            match before.get(key) {
                Some(old) if old == value => {}
                Some(_) => self.replace(at([key.as_str()]), value.clone()),
                None => self.add(at([key.as_str()]), value.clone()),
            }
        }
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            self.pending.push(patch::remove(at([key.as_str()])));
        }
    }

    pub fn content(&self) -> Value {
        serde_json::to_value(&self.content).unwrap_or_default()
    }

    pub fn snapshot(&mut self) -> Event {
        self.pending.clear();
        Event::ActivitySnapshot {
            message_id: self.message_id.clone(),
            activity_type: self.activity_type.into(),
            content: self.content(),
        }
    }

    /// The changes since the last snapshot or delta, as one `ACTIVITY_DELTA`.
    pub fn delta(&mut self) -> Option<Event> {
        if self.pending.is_empty() {
            return None;
        }
        Some(Event::ActivityDelta {
            message_id: self.message_id.clone(),
            activity_type: self.activity_type.into(),
            patch: std::mem::take(&mut self.pending),
        })
    }

    fn add(&mut self, path: PointerBuf, value: Value) {
        self.pending.push(patch::add(path, value));
    }

    fn replace(&mut self, path: PointerBuf, value: Value) {
        self.pending.push(patch::replace(path, value));
    }

    /// Adds pending tasks; returns the index of the first in `results`.
    pub fn add_tasks(&mut self, tasks: impl IntoIterator<Item = (String, String)>) -> usize {
        let base = self.content.results.len();
        for (label, subagent_run_id) in tasks {
            let entry = TaskEntry {
                label,
                subagent_run_id,
                status: TaskStatus::Pending,
                output: None,
                error: None,
                usage: None,
                source: None,
                truncated: None,
            };
            self.add(at(["results", "-"]), json!(entry));
            self.content.results.push(entry);
        }
        self.content.total_tasks = self.content.results.len();
        self.replace(at(["total_tasks"]), json!(self.content.total_tasks));
        base
    }

    pub fn label(&self, index: usize) -> &str {
        self.content
            .results
            .get(index)
            .map_or("", |entry| entry.label.as_str())
    }

    pub fn task_running(&mut self, index: usize) {
        self.set_task_status(index, TaskStatus::Running);
    }

    pub fn task_complete(&mut self, index: usize, output: &str, usage: Usage) {
        let Some(entry) = self.content.results.get_mut(index) else {
            return;
        };
        entry.output = Some(output.to_owned());
        entry.usage = Some(usage.into());
        let usage = json!(entry.usage);
        self.add(task_field(index, "output"), json!(output));
        self.add(task_field(index, "usage"), usage);
        self.set_task_status(index, TaskStatus::Complete);
        self.content.completed_tasks += 1;
        self.replace(at(["completed_tasks"]), json!(self.content.completed_tasks));
    }

    /// How a completed task's answer was read and whether it was cut short; before
    /// `task_complete`, so that a client sees them with the status.
    pub fn task_read(&mut self, index: usize, source: Option<AnswerSource>, cut: Option<Cut>) {
        let Some(entry) = self.content.results.get_mut(index) else {
            return;
        };
        entry.source = source;
        entry.truncated = cut;
        if let Some(source) = source {
            self.add(task_field(index, "source"), json!(source));
        }
        if let Some(cut) = cut {
            self.add(task_field(index, "truncated"), json!(cut));
        }
    }

    pub fn task_failed(&mut self, index: usize, error: &str) {
        let Some(entry) = self.content.results.get_mut(index) else {
            return;
        };
        entry.error = Some(error.to_owned());
        self.add(task_field(index, "error"), json!(error));
        self.set_task_status(index, TaskStatus::Failed);
        self.content.failed_tasks += 1;
        self.replace(at(["failed_tasks"]), json!(self.content.failed_tasks));
    }

    fn set_task_status(&mut self, index: usize, status: TaskStatus) {
        if let Some(entry) = self.content.results.get_mut(index) {
            entry.status = status;
            self.replace(task_field(index, "status"), json!(status));
        }
    }

    pub fn note(&mut self, note: String) {
        self.add(at(["notes", "-"]), json!(note));
        self.content.notes.push(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Room {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        winner: Option<String>,
    }

    fn apply(doc: &mut Value, patch: &[PatchOperation]) {
        json_patch::patch(doc, patch).expect("patch applies");
    }

    #[test]
    fn deltas_rebuild_the_content() {
        let mut p = Board::new(
            "test",
            Room {
                status: "starting",
                winner: None,
            },
        );
        let Event::ActivitySnapshot { mut content, .. } = p.snapshot() else {
            panic!("snapshot")
        };
        let mut steps = 0;
        let mut check = |p: &mut Board<Room>, content: &mut Value| {
            if let Some(Event::ActivityDelta { patch, .. }) = p.delta() {
                apply(content, &patch);
                steps += 1;
            }
            assert_eq!(*content, p.content());
        };
        p.update(|r| r.status = "running");
        let base = p.add_tasks([
            ("Voter 1".into(), "s1".into()),
            ("Voter 2".into(), "s2".into()),
        ]);
        check(&mut p, &mut content);
        p.task_running(base);
        p.task_running(base + 1);
        p.update(|r| r.winner = Some("pro".into()));
        check(&mut p, &mut content);
        p.task_read(base, Some(AnswerSource::FreeText), Some(Cut::MaxTokens));
        p.task_complete(base, "yes", Usage::default());
        p.task_failed(base + 1, "timeout");
        p.note("Voter 2 failed".into());
        p.update(|r| {
            r.status = "complete";
            r.winner = None;
        });
        check(&mut p, &mut content);
        assert_eq!(content["completed_tasks"], 1);
        assert_eq!(content["failed_tasks"], 1);
        assert_eq!(content["results"][1]["status"], "failed");
        assert_eq!(content["results"][0]["source"], "free_text");
        assert_eq!(content["results"][0]["truncated"], "max_tokens");
        assert_eq!(content["status"], "complete");
        assert!(content.get("winner").is_none());
        assert!(p.delta().is_none());
        assert_eq!(steps, 3);
    }
}
