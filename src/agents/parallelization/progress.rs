//! The run's activity message: what a UI draws while the fan-out runs. Every change updates the
//! typed content and records the JSON Patch operation that makes the same change on the client,
//! so the client's copy (snapshot + deltas) always equals ours.

use serde::Serialize;
use serde_json::{json, Value};

use super::detect::Source;
use super::history::HistoryUse;
use super::strategy::Strategy;
use crate::agui::patch::{self, at, task_field, PatchOperation};
use crate::agui::Event;
use crate::llm::Usage;
use json_patch::jsonptr::PointerBuf;

pub const ACTIVITY_TYPE: &str = "parallelization";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Starting,
    Running,
    Aggregating,
    Complete,
    Failed,
}

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
    /// It reached the role's `max_tokens`.
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

/// Where sectioning's sections came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionsSource {
    /// Listed in the prompt ("Topic: A, B, C").
    Listed,
    /// Asked of the model first.
    Planned,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub status: RunStatus,
    pub strategy: Strategy,
    pub strategy_source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections_source: Option<SectionsSource>,
    /// The thread's earlier turns the calls carry, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryUse>,
    pub total_tasks: usize,
    pub completed_tasks: usize,
    pub failed_tasks: usize,
    pub results: Vec<TaskEntry>,
    /// What the user should know about the result (failures left out, input truncated).
    pub notes: Vec<String>,
}

pub struct Progress {
    message_id: String,
    activity: Activity,
    pending: Vec<PatchOperation>,
}

impl Progress {
    pub fn new(
        strategy: Strategy,
        source: Source,
        sections_source: Option<SectionsSource>,
    ) -> Self {
        Self {
            message_id: uuid::Uuid::new_v4().to_string(),
            activity: Activity {
                status: RunStatus::Starting,
                strategy,
                strategy_source: source,
                sections_source,
                history: None,
                total_tasks: 0,
                completed_tasks: 0,
                failed_tasks: 0,
                results: Vec::new(),
                notes: Vec::new(),
            },
            pending: Vec::new(),
        }
    }

    /// Reports the history the calls carry (before the first snapshot).
    pub fn set_history(&mut self, history: HistoryUse) {
        self.activity.history = Some(history);
    }

    pub fn content(&self) -> Value {
        serde_json::to_value(&self.activity).unwrap_or_default()
    }

    pub fn snapshot(&mut self) -> Event {
        self.pending.clear();
        Event::ActivitySnapshot {
            message_id: self.message_id.clone(),
            activity_type: ACTIVITY_TYPE.into(),
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
            activity_type: ACTIVITY_TYPE.into(),
            patch: std::mem::take(&mut self.pending),
        })
    }

    fn add(&mut self, path: PointerBuf, value: Value) {
        self.pending.push(patch::add(path, value));
    }

    fn replace(&mut self, path: PointerBuf, value: Value) {
        self.pending.push(patch::replace(path, value));
    }

    pub fn set_status(&mut self, status: RunStatus) {
        if self.activity.status != status {
            self.activity.status = status;
            self.replace(at(["status"]), json!(status));
        }
    }

    /// Adds pending tasks; returns the index of the first in `results`.
    pub fn add_tasks(&mut self, tasks: impl IntoIterator<Item = (String, String)>) -> usize {
        let base = self.activity.results.len();
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
            self.activity.results.push(entry);
        }
        self.activity.total_tasks = self.activity.results.len();
        self.replace(at(["total_tasks"]), json!(self.activity.total_tasks));
        base
    }

    pub fn label(&self, index: usize) -> &str {
        self.activity
            .results
            .get(index)
            .map_or("", |entry| entry.label.as_str())
    }

    pub fn task_running(&mut self, index: usize) {
        self.set_task_status(index, TaskStatus::Running);
    }

    pub fn task_complete(&mut self, index: usize, output: &str, usage: Usage) {
        let Some(entry) = self.activity.results.get_mut(index) else {
            return;
        };
        entry.output = Some(output.to_owned());
        entry.usage = Some(usage.into());
        let usage = json!(entry.usage);
        self.add(task_field(index, "output"), json!(output));
        self.add(task_field(index, "usage"), usage);
        self.set_task_status(index, TaskStatus::Complete);
        self.activity.completed_tasks += 1;
        self.replace(
            at(["completed_tasks"]),
            json!(self.activity.completed_tasks),
        );
    }

    /// How a completed task's answer was read and whether it was cut short; before
    /// `task_complete`, so that a client sees them with the status.
    pub fn task_read(&mut self, index: usize, source: Option<AnswerSource>, cut: Option<Cut>) {
        let Some(entry) = self.activity.results.get_mut(index) else {
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
        let Some(entry) = self.activity.results.get_mut(index) else {
            return;
        };
        entry.error = Some(error.to_owned());
        self.add(task_field(index, "error"), json!(error));
        self.set_task_status(index, TaskStatus::Failed);
        self.activity.failed_tasks += 1;
        self.replace(at(["failed_tasks"]), json!(self.activity.failed_tasks));
    }

    fn set_task_status(&mut self, index: usize, status: TaskStatus) {
        if let Some(entry) = self.activity.results.get_mut(index) {
            entry.status = status;
            self.replace(task_field(index, "status"), json!(status));
        }
    }

    pub fn note(&mut self, note: String) {
        self.add(at(["notes", "-"]), json!(note));
        self.activity.notes.push(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(doc: &mut Value, patch: &[PatchOperation]) {
        json_patch::patch(doc, patch).expect("patch applies");
    }

    #[test]
    fn deltas_rebuild_the_content() {
        let mut p = Progress::new(
            Strategy::Sectioning,
            Source::Default,
            Some(SectionsSource::Planned),
        );
        let Event::ActivitySnapshot { mut content, .. } = p.snapshot() else {
            panic!("snapshot")
        };
        let mut steps = 0;
        let mut check = |p: &mut Progress, content: &mut Value| {
            if let Some(Event::ActivityDelta { patch, .. }) = p.delta() {
                apply(content, &patch);
                steps += 1;
            }
            assert_eq!(*content, p.content());
        };
        p.set_status(RunStatus::Running);
        let base = p.add_tasks([
            ("Voter 1".into(), "s1".into()),
            ("Voter 2".into(), "s2".into()),
        ]);
        check(&mut p, &mut content);
        p.task_running(base);
        p.task_running(base + 1);
        check(&mut p, &mut content);
        p.task_read(base, Some(AnswerSource::FreeText), Some(Cut::MaxTokens));
        p.task_complete(base, "yes", Usage::default());
        p.task_failed(base + 1, "timeout");
        p.note("Voter 2 failed".into());
        p.set_status(RunStatus::Complete);
        check(&mut p, &mut content);
        assert_eq!(content["completed_tasks"], 1);
        assert_eq!(content["failed_tasks"], 1);
        assert_eq!(content["results"][1]["status"], "failed");
        assert_eq!(content["results"][0]["source"], "free_text");
        assert_eq!(content["results"][0]["truncated"], "max_tokens");
        assert!(p.delta().is_none());
        assert_eq!(steps, 3);
    }
}
