//! What every strategy shares: one LLM call streamed into AG-UI messages, and the fan-out that
//! runs many calls at once, each as a subagent, while keeping the activity and the usage current.
//!
//! Everything runs inside the run's future (no spawned tasks), so dropping it when the client
//! leaves drops every in-flight call and closes its connection.

use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc::{self, UnboundedSender};

use super::budget::Budget;
use super::config::ParallelizationConfig;
use super::messages::{Coalescer, ReasoningMessage, TextMessage};
use super::progress::Progress;
use super::usage::UsageBook;
use crate::agents::{AgentError, EventSink};
use crate::agui::Event;
use crate::llm::{
    ChatChunk, ChatMessage, ChatRequest, GenerationOptions, LlmClient, LlmError, Think, Usage,
};
use crate::logsafe::Shown;

/// A system and a user message.
pub type Prompt = (String, String);

/// The services and settings of one run.
pub struct Ctx {
    pub llm: Arc<dyn LlmClient>,
    pub sink: EventSink,
    pub config: Arc<ParallelizationConfig>,
}

impl Ctx {
    pub async fn send(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.sink.send(event).await;
        }
    }

    /// A request with the room's model, context size, token limit and think level; a prompt the
    /// context cannot hold is refused here rather than sent.
    pub fn request(
        &self,
        prompt: Prompt,
        temperature: f32,
        seed: i64,
        format: Option<Value>,
    ) -> Result<ChatRequest, AgentError> {
        let config = &self.config;
        Budget::new(config.num_ctx, config.max_tokens)
            .check(&prompt, 0, "the material of this call")
            .map_err(|message| AgentError::Failed {
                code: "prompt_too_long",
                message,
            })?;
        let (system, user) = prompt;
        Ok(ChatRequest {
            model: config.model_name.clone(),
            messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
            options: GenerationOptions {
                temperature: Some(temperature),
                seed: Some(seed),
                num_ctx: Some(config.num_ctx),
                max_tokens: config.max_tokens,
                ..GenerationOptions::default()
            },
            format,
            think: config.think.level().map(Think::Level),
        })
    }
}

/// One parallel task: a call streamed as a subagent named `label`.
pub struct TaskSpec<'a> {
    pub label: String,
    /// Builds the call when the task starts, so that a run holds the prompts of the tasks in
    /// flight only, not of every task it will run.
    pub request: MakeRequest<'a>,
    /// Accepts the answer (returning what `SUBAGENT_FINISHED.result` carries) or says why not.
    pub check: Option<Check>,
}

pub type MakeRequest<'a> = Box<dyn FnOnce(&Ctx) -> Result<ChatRequest, AgentError> + Send + 'a>;

pub type Check = Box<dyn Fn(&str) -> Result<Option<Value>, String> + Send + Sync>;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutput {
    pub text: String,
    pub value: Option<Value>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    pub code: &'static str,
    pub message: String,
    /// Tokens spent before the answer was refused (zero when the call itself failed).
    pub usage: Usage,
    /// The call itself failed (backend, network, stream), so `code` is the LLM client's; false
    /// when the model answered but the answer was empty or refused.
    pub from_llm: bool,
}

impl TaskFailure {
    /// The model answered, but the task's check refused the answer.
    pub fn refused(message: String, usage: Usage) -> Self {
        Self {
            code: "invalid_answer",
            message,
            usage,
            from_llm: false,
        }
    }
}

pub type TaskResult = Result<TaskOutput, TaskFailure>;

/// Lets a strategy act on tasks' text as it streams and on each task's end, in stream order.
pub trait Observer: Send {
    fn wants_text(&self) -> bool {
        false
    }
    fn on_text(&mut self, _task: usize, _delta: &str) -> Vec<Event> {
        Vec::new()
    }
    fn on_done(&mut self, _task: usize, _result: &TaskResult) -> Vec<Event> {
        Vec::new()
    }
}

/// An observer that only waits for the results.
pub struct Quiet;

impl Observer for Quiet {}

type Tap<'a> = Option<(usize, &'a UnboundedSender<(usize, String)>)>;

/// One run's context, activity and usage.
pub struct Run {
    pub ctx: Ctx,
    pub progress: Progress,
    pub usage: UsageBook,
}

impl Run {
    pub async fn send_progress(&mut self) {
        let delta = self.progress.delta();
        self.ctx.send(delta).await;
    }

    pub async fn step_started(&self, name: &str) {
        self.ctx
            .send([Event::StepStarted {
                step_name: name.into(),
            }])
            .await;
    }

    pub async fn step_finished(&self, name: &str) {
        self.ctx
            .send([Event::StepFinished {
                step_name: name.into(),
            }])
            .await;
    }

    /// One call outside the fan-out; its answer streams into `text` when given.
    pub async fn call(
        &mut self,
        request: ChatRequest,
        text: Option<&mut TextMessage>,
    ) -> Result<String, AgentError> {
        let model = request.model.clone();
        let reasoning = self
            .ctx
            .config
            .show_thinking
            .then(|| ReasoningMessage::new(None));
        let (answer, usage) = stream_reply(&self.ctx, request, text, reasoning, None).await?;
        self.usage.add(&model, usage);
        Ok(answer)
    }

    /// Runs `tasks` at once (at most `max_parallel_tasks` in flight; the LLM client queues the
    /// rest of what the backend cannot take) and returns their results in input order.
    pub async fn fan_out(
        &mut self,
        tasks: Vec<TaskSpec<'_>>,
        observer: &mut dyn Observer,
    ) -> Vec<TaskResult> {
        let Run {
            ctx,
            progress,
            usage,
        } = self;
        let ctx = &*ctx;
        let ids: Vec<String> = tasks
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let base = progress.add_tasks(tasks.iter().map(|t| t.label.clone()).zip(ids.clone()));
        let (tap_tx, mut tap_rx) = mpsc::unbounded_channel();
        let tap = observer.wants_text().then_some(&tap_tx);
        let limit = ctx.config.max_parallel_tasks as usize;
        let mut waiting = tasks.into_iter().zip(ids).enumerate();
        let mut running = FuturesUnordered::new();
        let mut results: Vec<Option<TaskResult>> = Vec::new();
        results.resize_with(waiting.len(), || None);
        loop {
            while running.len() < limit {
                let Some((i, (task, id))) = waiting.next() else {
                    break;
                };
                ctx.send([Event::SubagentStarted {
                    subagent_run_id: id.clone(),
                    name: task.label.clone(),
                    description: None,
                }])
                .await;
                progress.task_running(base + i);
                running.push(run_task(ctx, i, id, task, tap));
            }
            ctx.send(progress.delta()).await;
            tokio::select! {
                biased;
                Some((i, delta)) = tap_rx.recv() => {
                    ctx.send(observer.on_text(i, &delta)).await;
                }
                finished = running.next() => {
                    let Some((i, id, model, result)) = finished else {
                        break;
                    };
                    // Text the task sent before it ended goes first.
                    while let Ok((j, delta)) = tap_rx.try_recv() {
                        ctx.send(observer.on_text(j, &delta)).await;
                    }
                    let end = match &result {
                        Ok(out) => {
                            progress.task_complete(base + i, &out.text, out.usage);
                            usage.add(&model, out.usage);
                            Event::SubagentFinished {
                                subagent_run_id: id,
                                result: out.value.clone(),
                            }
                        }
                        Err(failure) => {
                            tracing::warn!(
                                task = %Shown(progress.label(base + i)),
                                code = failure.code,
                                error = %Shown(&failure.message),
                                "task failed"
                            );
                            progress.task_failed(base + i, &failure.message);
                            usage.add(&model, failure.usage);
                            Event::SubagentError {
                                subagent_run_id: id,
                                message: failure.message.clone(),
                                code: Some(failure.code.to_owned()),
                            }
                        }
                    };
                    ctx.send([end]).await;
                    ctx.send(observer.on_done(i, &result)).await;
                    results[i] = Some(result);
                }
            }
        }
        ctx.send(progress.delta()).await;
        // Every task was started and has finished, so every slot is filled.
        results.into_iter().flatten().collect()
    }
}

/// One task: its call streamed into the subagent's own text message.
async fn run_task(
    ctx: &Ctx,
    index: usize,
    id: String,
    task: TaskSpec<'_>,
    tap: Option<&UnboundedSender<(usize, String)>>,
) -> (usize, String, String, TaskResult) {
    let model = ctx.config.model_name.clone();
    let request = match (task.request)(ctx) {
        Ok(request) => request,
        Err(e) => {
            let failure = TaskFailure {
                code: e.code(),
                message: e.to_string(),
                usage: Usage::default(),
                from_llm: false,
            };
            return (index, id, model, Err(failure));
        }
    };
    let mut message = TextMessage::new(Some(id.clone()));
    let reasoning = ctx
        .config
        .show_thinking
        .then(|| ReasoningMessage::new(Some(id.clone())));
    let reply = stream_reply(
        ctx,
        request,
        Some(&mut message),
        reasoning,
        tap.map(|tx| (index, tx)),
    )
    .await;
    ctx.send(message.close()).await;
    let result = match reply {
        Err(e) => Err(TaskFailure {
            code: e.code(),
            message: e.to_string(),
            usage: Usage::default(),
            from_llm: true,
        }),
        Ok((text, usage)) if text.trim().is_empty() => Err(TaskFailure {
            code: "empty_answer",
            message: "the model returned an empty answer".into(),
            usage,
            from_llm: false,
        }),
        Ok((text, usage)) => match task.check.as_ref().map_or(Ok(None), |check| check(&text)) {
            Ok(value) => Ok(TaskOutput { text, value, usage }),
            Err(message) => Err(TaskFailure::refused(message, usage)),
        },
    };
    (index, id, model, result)
}

/// Streams one call: content into `text` (and the tap), thinking into `reasoning` when shown,
/// both coalesced. Returns the whole answer and the call's usage. Leaves `text` open.
async fn stream_reply(
    ctx: &Ctx,
    request: ChatRequest,
    text: Option<&mut TextMessage>,
    reasoning: Option<ReasoningMessage>,
    tap: Tap<'_>,
) -> Result<(String, Usage), LlmError> {
    let mut out = Streamer {
        ctx,
        text,
        reasoning,
        tap,
        text_buf: Coalescer::default(),
        think_buf: Coalescer::default(),
        answer: String::new(),
    };
    let result = out.run(request).await;
    out.finish().await;
    result.map(|usage| (out.answer, usage))
}

struct Streamer<'a> {
    ctx: &'a Ctx,
    text: Option<&'a mut TextMessage>,
    reasoning: Option<ReasoningMessage>,
    tap: Tap<'a>,
    text_buf: Coalescer,
    think_buf: Coalescer,
    answer: String,
}

impl Streamer<'_> {
    async fn run(&mut self, request: ChatRequest) -> Result<Usage, LlmError> {
        let mut stream = self.ctx.llm.chat_stream(request).await?;
        loop {
            let deadline = match (self.text_buf.deadline(), self.think_buf.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = match deadline {
                Some(at) => match tokio::time::timeout_at(at, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.flush_thinking().await;
                        self.flush_text().await;
                        continue;
                    }
                },
                None => stream.next().await,
            };
            match next {
                Some(Ok(ChatChunk::Content(delta))) => {
                    self.end_thinking().await;
                    self.answer.push_str(&delta);
                    if let Some(due) = self.text_buf.push(&delta) {
                        self.emit_text(due).await;
                    }
                }
                Some(Ok(ChatChunk::Thinking(delta))) => {
                    if self.reasoning.is_some() {
                        self.flush_text().await;
                        if let Some(due) = self.think_buf.push(&delta) {
                            self.emit_thinking(due).await;
                        }
                    }
                }
                Some(Ok(ChatChunk::Done(completion))) => return Ok(completion.usage),
                Some(Err(e)) => return Err(e),
                None => return Err(LlmError::Truncated),
            }
        }
    }

    async fn emit_text(&mut self, delta: String) {
        if let Some(message) = self.text.as_deref_mut() {
            let events = message.push(&delta);
            self.ctx.send(events).await;
        }
        if let Some((task, tx)) = self.tap {
            // The receiver lives as long as the fan-out that owns this task.
            let _ = tx.send((task, delta));
        }
    }

    async fn emit_thinking(&mut self, delta: String) {
        if let Some(reasoning) = self.reasoning.as_mut() {
            let events = reasoning.push(&delta);
            self.ctx.send(events).await;
        }
    }

    async fn flush_text(&mut self) {
        if let Some(due) = self.text_buf.take() {
            self.emit_text(due).await;
        }
    }

    async fn flush_thinking(&mut self) {
        if let Some(due) = self.think_buf.take() {
            self.emit_thinking(due).await;
        }
    }

    /// Thinking is over once the answer starts: send what is left and close its message.
    async fn end_thinking(&mut self) {
        self.flush_thinking().await;
        if let Some(reasoning) = self.reasoning.as_mut() {
            let events = reasoning.close();
            self.ctx.send(events).await;
        }
    }

    async fn finish(&mut self) {
        self.end_thinking().await;
        self.flush_text().await;
    }
}
