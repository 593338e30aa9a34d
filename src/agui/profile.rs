//! Event profiles: which AG-UI generation a run's stream is shaped for, chosen per run.
//!
//! Agents always produce the full AG-UI 1.0 stream. A client that declares 1.0 gets it unchanged.
//! Any other client gets the *legacy* profile, which every pre-1.0 client accepts: `@ag-ui/client`
//! 0.0.57/0.0.58 reject `SUBAGENT_*` events, and soliplex's Dart decoder follows one text message at
//! a time, so the per-task text messages of a fan-out would be lost or end as stray bubbles there.
//! The legacy profile drops the `SUBAGENT_*` events and every message that belongs to a subagent
//! (its text and its thinking), and shows each task's text in the activity instead: the entry of
//! `content.results` whose `subagent_run_id` names the task gets a `text` field, updated by
//! throttled `ACTIVITY_DELTA`s while the task streams and removed when it ends (its `output`
//! then holds the same text), so both profiles end with the same activity content.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::patch::{self, PatchOperation};
use super::{Event, RunAgentInput};

/// How often, at most, the legacy profile updates the tasks' text in the activity.
pub const LIVE_TEXT_INTERVAL: Duration = Duration::from_millis(150);

/// The `forwardedProps` key that picks a profile explicitly.
pub const PROFILE_PROP: &str = "agui_profile";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// AG-UI 1.0 as the agent streams it: subagents and their own text messages.
    Full,
    /// No `SUBAGENT_*` events and one text message at a time; tasks live in the activity.
    Legacy,
}

/// A `forwardedProps.agui_profile` that names no profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forwardedProps.{PROFILE_PROP} must be \"full\" or \"legacy\"")]
pub struct UnknownProfile;

impl Profile {
    /// `forwardedProps.agui_profile` when given, else full for a client that declares protocol
    /// 1.0 or later (`protocolVersion`, which `@ag-ui/client` 1.x sends), else legacy.
    pub fn for_input(input: &RunAgentInput) -> Result<Self, UnknownProfile> {
        match input.forwarded_props.get(PROFILE_PROP) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "full" => return Ok(Profile::Full),
            Some(Value::String(s)) if s == "legacy" => return Ok(Profile::Legacy),
            Some(_) => return Err(UnknownProfile),
        }
        let major = input
            .protocol_version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.trim().parse::<u32>().ok());
        Ok(match major {
            Some(m) if m >= 1 => Profile::Full,
            _ => Profile::Legacy,
        })
    }
}

/// Reshapes one run's full-profile events for its profile, in order.
pub enum Shaper {
    Full,
    Legacy(Box<Legacy>),
}

impl Shaper {
    pub fn new(profile: Profile) -> Self {
        match profile {
            Profile::Full => Shaper::Full,
            Profile::Legacy => Shaper::Legacy(Box::default()),
        }
    }

    /// Takes the next event the agent or host sent at `now`, and hands what the client gets to
    /// `out` (nothing, that event, or that event with an activity update before it).
    pub fn push(&mut self, event: Event, now: Instant, out: &mut impl FnMut(Event)) {
        match self {
            Shaper::Full => out(event),
            Shaper::Legacy(legacy) => legacy.push(event, now, out),
        }
    }
}

/// One task's text as the legacy profile shows it.
#[derive(Default)]
struct Task {
    /// Its entry in `content.results`.
    index: usize,
    text: String,
    /// `text` has changed since the client last got it.
    dirty: bool,
    /// The client's entry has a `text` field.
    shown: bool,
}

impl Task {
    /// The task ended: its text is no longer updated, and the operation removing it from the
    /// client's entry if it is there.
    fn retire(&mut self) -> Option<PatchOperation> {
        self.dirty = false;
        std::mem::take(&mut self.shown)
            .then(|| patch::remove(patch::task_field(self.index, "text")))
    }
}

#[derive(Default)]
pub struct Legacy {
    /// The activity message and its type, once its snapshot went out.
    activity: Option<(String, String)>,
    /// Entries in the client's `content.results`.
    results: usize,
    /// Tasks by subagent run id.
    tasks: HashMap<String, Task>,
    /// Text message id to the subagent it belongs to.
    messages: HashMap<String, String>,
    /// Patch operations waiting for the next activity update.
    pending: Vec<PatchOperation>,
    last_update: Option<Instant>,
}

impl Legacy {
    fn push(&mut self, event: Event, now: Instant, out: &mut impl FnMut(Event)) {
        match event {
            Event::ActivitySnapshot {
                ref message_id,
                ref activity_type,
                ref content,
            } => {
                self.activity = Some((message_id.clone(), activity_type.clone()));
                self.tasks.clear();
                self.pending.clear();
                self.results = 0;
                for entry in content
                    .get("results")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.track(entry);
                }
                out(event);
            }
            Event::ActivityDelta {
                ref message_id,
                ref patch,
                ..
            } if self.is_activity(message_id) => {
                for op in patch {
                    if let PatchOperation::Add(add) = op {
                        if add.path == patch::at(["results", "-"]) {
                            self.track(&add.value);
                        }
                    }
                }
                self.collect_text();
                // The agent's own change goes out with ours, in one update after them.
                let Event::ActivityDelta {
                    message_id,
                    activity_type,
                    patch,
                } = event
                else {
                    return;
                };
                self.pending.extend(patch);
                self.last_update = Some(now);
                out(Event::ActivityDelta {
                    message_id,
                    activity_type,
                    patch: std::mem::take(&mut self.pending),
                });
            }
            Event::SubagentStarted { .. } => {}
            Event::SubagentFinished {
                subagent_run_id, ..
            }
            | Event::SubagentError {
                subagent_run_id, ..
            } => {
                // The task's output replaces its text with the agent's next activity update.
                if let Some(task) = self.tasks.get_mut(&subagent_run_id) {
                    self.pending.extend(task.retire());
                }
            }
            Event::TextMessageStart {
                message_id,
                subagent_run_id: Some(subagent),
                ..
            } => {
                self.messages.insert(message_id, subagent);
            }
            Event::TextMessageContent {
                message_id,
                delta,
                subagent_run_id: Some(_),
            } => {
                let task = self
                    .messages
                    .get(&message_id)
                    .and_then(|subagent| self.tasks.get_mut(subagent));
                if let Some(task) = task {
                    task.text.push_str(&delta);
                    task.dirty = true;
                }
                self.update_if_due(now, out);
            }
            Event::TextMessageEnd {
                message_id,
                subagent_run_id: Some(_),
            } => {
                self.messages.remove(&message_id);
            }
            // A task's thinking interleaves like its text; the legacy profile leaves it out.
            Event::ReasoningStart {
                subagent_run_id: Some(_),
                ..
            }
            | Event::ReasoningMessageStart {
                subagent_run_id: Some(_),
                ..
            }
            | Event::ReasoningMessageContent {
                subagent_run_id: Some(_),
                ..
            }
            | Event::ReasoningMessageEnd {
                subagent_run_id: Some(_),
                ..
            }
            | Event::ReasoningEnd {
                subagent_run_id: Some(_),
                ..
            } => {}
            terminal if terminal.is_terminal() => {
                // Tasks cut short keep no text, as in the full profile's activity.
                self.pending
                    .extend(self.tasks.values_mut().filter_map(Task::retire));
                self.flush(now, out);
                out(terminal);
            }
            other => {
                self.update_if_due(now, out);
                out(other);
            }
        }
    }

    fn is_activity(&self, message_id: &str) -> bool {
        self.activity
            .as_ref()
            .is_some_and(|(id, _)| id == message_id)
    }

    /// Notes a new `results` entry and, when it names a subagent, that task's place.
    fn track(&mut self, entry: &Value) {
        if let Some(id) = entry.get("subagent_run_id").and_then(Value::as_str) {
            let task = Task {
                index: self.results,
                ..Task::default()
            };
            self.tasks.insert(id.to_owned(), task);
        }
        self.results += 1;
    }

    /// Queues the text of every task that changed since the client last got it.
    fn collect_text(&mut self) {
        for task in self.tasks.values_mut().filter(|t| t.dirty) {
            task.dirty = false;
            task.shown = true;
            // `add` replaces the member when it is already there.
            self.pending.push(patch::add(
                patch::task_field(task.index, "text"),
                Value::String(task.text.clone()),
            ));
        }
    }

    fn update_if_due(&mut self, now: Instant, out: &mut impl FnMut(Event)) {
        let due = self
            .last_update
            .is_none_or(|last| now.duration_since(last) >= LIVE_TEXT_INTERVAL);
        if due {
            self.flush(now, out);
        }
    }

    /// Sends what is queued, with every task's changed text, as one `ACTIVITY_DELTA`.
    fn flush(&mut self, now: Instant, out: &mut impl FnMut(Event)) {
        self.collect_text();
        let Some((message_id, activity_type)) = &self.activity else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        self.last_update = Some(now);
        out(Event::ActivityDelta {
            message_id: message_id.clone(),
            activity_type: activity_type.clone(),
            patch: std::mem::take(&mut self.pending),
        });
    }
}
