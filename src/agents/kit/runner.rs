//! What every strategy shares: one LLM call streamed into AG-UI messages, and the fan-out that
//! runs many calls at once, each as a subagent, while keeping the activity and the usage current.
//!
//! Everything runs inside the run's future (no spawned tasks), so dropping it when the client
//! leaves drops every in-flight call and closes its connection.

use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::{self, UnboundedSender};

use super::board::{AnswerSource, Board, Cut};
use super::budget::Budget;
use super::history::History;
use super::messages::{Coalescer, ReasoningMessage, TextMessage};
use super::model::{ModelSettings, RoomSettings};
use super::repetition::{ends_in_loop, CHECK_EVERY};
use super::usage::UsageBook;
use crate::agents::{AgentError, ErrorCode, EventSink};
use crate::agui::Event;
use crate::llm::{
    ChatChunk, ChatMessage, ChatRequest, GenerationOptions, LlmClient, LlmError, Think, Usage,
};
use crate::logsafe::Shown;

pub use super::budget::Prompt;

/// Asked again of a structured answer that could not be read, in the same conversation.
const REASK: &str = "\
Your reply could not be read: {error}. Reply again with the JSON object only, in the form asked
for, and nothing before or after it.";

pub fn reask(error: &str) -> String {
    REASK.replace("{error}", error)
}

/// The services and settings of one run.
pub struct Ctx<C> {
    pub llm: Arc<dyn LlmClient>,
    pub sink: EventSink,
    pub config: Arc<C>,
    /// The thread's earlier turns, fitted to the context; every call carries them.
    pub history: Arc<[ChatMessage]>,
    /// Tokens `history` takes in every prompt.
    history_tokens: usize,
}

impl<C: RoomSettings> Ctx<C> {
    pub fn new(
        llm: Arc<dyn LlmClient>,
        sink: EventSink,
        config: Arc<C>,
        history: &History,
    ) -> Self {
        Self {
            llm,
            sink,
            config,
            history: history.turns.clone().into(),
            history_tokens: history.tokens(),
        }
    }

    pub fn model(&self) -> &ModelSettings {
        self.config.model()
    }

    pub async fn send(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.sink.send(event).await;
        }
    }

    /// What a prompt of a call answering with `max_tokens` may take beside the run's history.
    pub fn budget(&self, max_tokens: u32) -> Budget {
        Budget::new(self.model().num_ctx, Some(max_tokens)).less(self.history_tokens)
    }

    /// A request with the room's model, context size and think level, answering with at most
    /// `max_tokens`; a prompt the context cannot hold is refused here rather than sent.
    pub fn request_capped(
        &self,
        max_tokens: u32,
        prompt: Prompt,
        temperature: f32,
        seed: i64,
        format: Option<Value>,
    ) -> Result<ChatRequest, AgentError> {
        let config = self.model();
        self.budget(max_tokens)
            .check(&prompt, 0, "the material of this call")
            .map_err(|message| AgentError::Failed {
                code: ErrorCode::PromptTooLong,
                message,
            })?;
        let (system, user) = prompt;
        let mut messages = Vec::with_capacity(self.history.len() + 2);
        messages.push(ChatMessage::system(system));
        messages.extend(self.history.iter().cloned());
        messages.push(ChatMessage::user(user));
        Ok(ChatRequest {
            model: config.model_name.clone(),
            messages,
            options: GenerationOptions {
                temperature: Some(temperature),
                seed: Some(seed),
                num_ctx: Some(config.num_ctx),
                max_tokens: Some(max_tokens),
                ..GenerationOptions::default()
            },
            format,
            think: config.think.level().map(Think::Level),
        })
    }
}

/// One parallel task: a call streamed as a subagent named `label`.
pub struct TaskSpec<'a, C> {
    pub label: String,
    /// Builds the call when the task starts, so that a run holds the prompts of the tasks in
    /// flight only, not of every task it will run.
    pub request: MakeRequest<'a, C>,
    /// How a structured answer is read; free text is taken as it is without one.
    pub structured: Option<Structured>,
}

pub type MakeRequest<'a, C> =
    Box<dyn FnOnce(&Ctx<C>) -> Result<ChatRequest, AgentError> + Send + 'a>;

/// Reads a structured answer: the JSON asked for (re-asked once, in the same conversation, with
/// the reason when a reply is not), then what the prose says when that also fails.
pub struct Structured {
    /// Reads the JSON reply into what `SUBAGENT_FINISHED.result` carries, or says why not.
    pub parse: Parse,
    /// Reads the answer from a reply in prose, when it clearly gives one.
    pub free_text: Option<FreeText>,
}

pub type Parse = Box<dyn Fn(&str) -> Result<Value, String> + Send + Sync>;
pub type FreeText = Box<dyn Fn(&str) -> Option<Value> + Send + Sync>;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutput {
    pub text: String,
    pub value: Option<Value>,
    pub usage: Usage,
    /// Where a structured answer was read from.
    pub source: Option<AnswerSource>,
    /// Set when the call was stopped before the model ended its answer.
    pub cut: Option<Cut>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    pub code: ErrorCode,
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
            code: ErrorCode::InvalidAnswer,
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
pub struct Run<C, X> {
    pub ctx: Ctx<C>,
    pub progress: Board<X>,
    pub usage: UsageBook,
}

impl<C: RoomSettings, X: Serialize> Run<C, X> {
    pub fn new(ctx: Ctx<C>, progress: Board<X>) -> Self {
        Self {
            ctx,
            progress,
            usage: UsageBook::default(),
        }
    }

    /// Sends the activity's snapshot: the first thing a run sends.
    pub async fn send_snapshot(&mut self) {
        let snapshot = self.progress.snapshot();
        self.ctx.send([snapshot]).await;
    }

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
            .model()
            .show_thinking
            .then(|| ReasoningMessage::new(None));
        let reply = stream_reply(&self.ctx, request, text, reasoning, None).await?;
        self.usage.add(&model, reply.usage);
        Ok(reply.text)
    }

    /// One structured call outside the fan-out (a plan, a judgement), read as a task's is.
    pub async fn ask(&mut self, request: ChatRequest, structured: &Structured) -> TaskResult {
        let model = request.model.clone();
        let result = answer(&self.ctx, request, Some(structured), None, None, None).await;
        let usage = match &result {
            Ok(out) => out.usage,
            Err(failure) => failure.usage,
        };
        self.usage.add(&model, usage);
        result
    }

    /// Runs `tasks` at once (at most `max_parallel_tasks` in flight; the LLM client queues the
    /// rest of what the backend cannot take) and returns their results in input order.
    pub async fn fan_out(
        &mut self,
        tasks: Vec<TaskSpec<'_, C>>,
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
        let limit = ctx.model().max_parallel_tasks as usize;
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
                            progress.task_read(base + i, out.source, out.cut);
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
                                code = %failure.code,
                                error = %Shown(&failure.message),
                                "task failed"
                            );
                            progress.task_failed(base + i, &failure.message);
                            usage.add(&model, failure.usage);
                            Event::SubagentError {
                                subagent_run_id: id,
                                message: failure.message.clone(),
                                code: Some(failure.code.as_str().to_owned()),
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
async fn run_task<C: RoomSettings>(
    ctx: &Ctx<C>,
    index: usize,
    id: String,
    task: TaskSpec<'_, C>,
    tap: Option<&UnboundedSender<(usize, String)>>,
) -> (usize, String, String, TaskResult) {
    let model = ctx.model().model_name.clone();
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
    let result = answer(
        ctx,
        request,
        task.structured.as_ref(),
        Some(&mut message),
        Some(&id),
        tap.map(|tx| (index, tx)),
    )
    .await;
    ctx.send(message.close()).await;
    (index, id, model, result)
}

fn llm_failure(e: LlmError) -> TaskFailure {
    TaskFailure {
        code: (&e).into(),
        message: e.to_string(),
        usage: Usage::default(),
        from_llm: true,
    }
}

/// One call, and for a structured answer the re-ask and the free-text reading. The replies stream
/// into `text` one after the other; thinking goes to a reasoning message of `subagent` when shown.
async fn answer<C: RoomSettings>(
    ctx: &Ctx<C>,
    request: ChatRequest,
    structured: Option<&Structured>,
    mut text: Option<&mut TextMessage>,
    subagent: Option<&str>,
    tap: Tap<'_>,
) -> TaskResult {
    let reasoning = || {
        ctx.model()
            .show_thinking
            .then(|| ReasoningMessage::new(subagent.map(str::to_owned)))
    };
    let Some(structured) = structured else {
        let reply = stream_reply(ctx, request, text, reasoning(), tap)
            .await
            .map_err(llm_failure)?;
        if reply.text.trim().is_empty() {
            return Err(TaskFailure {
                code: ErrorCode::EmptyAnswer,
                message: "the model returned an empty answer".into(),
                usage: reply.usage,
                from_llm: false,
            });
        }
        return Ok(TaskOutput {
            text: reply.text,
            value: None,
            usage: reply.usage,
            source: None,
            cut: reply.cut,
        });
    };
    let mut again = request.clone();
    let first = stream_reply(ctx, request, text.as_deref_mut(), reasoning(), tap)
        .await
        .map_err(llm_failure)?;
    let read = |reply: &Reply, value: Value, source: AnswerSource, usage: Usage| TaskOutput {
        text: reply.text.clone(),
        value: Some(value),
        usage,
        source: Some(source),
        cut: reply.cut,
    };
    let error = match (structured.parse)(&first.text) {
        Ok(value) => return Ok(read(&first, value, AnswerSource::Json, first.usage)),
        Err(error) => error,
    };
    let mut usage = first.usage;
    again
        .messages
        .push(ChatMessage::assistant(first.text.clone()));
    again.messages.push(ChatMessage::user(reask(&error)));
    if let Some(message) = text.as_deref_mut() {
        // The second reply follows the first in the subagent's message.
        let events = message.push("\n\n");
        ctx.send(events).await;
    }
    let second = stream_reply(ctx, again, text, reasoning(), tap).await;
    let mut replies = vec![first];
    match second {
        Ok(second) => {
            usage += second.usage;
            if let Ok(value) = (structured.parse)(&second.text) {
                return Ok(read(&second, value, AnswerSource::Reask, usage));
            }
            replies.insert(0, second);
        }
        Err(e) => tracing::debug!("the re-ask failed: {e}"),
    }
    if let Some(free_text) = &structured.free_text {
        for reply in &replies {
            if let Some(value) = free_text(&reply.text) {
                return Ok(read(reply, value, AnswerSource::FreeText, usage));
            }
        }
    }
    Err(TaskFailure::refused(error, usage))
}

/// One call's whole answer, its usage, and why it was cut short if it was.
struct Reply {
    text: String,
    usage: Usage,
    cut: Option<Cut>,
}

/// Streams one call: content into `text` (and the tap), thinking into `reasoning` when shown,
/// both coalesced. Leaves `text` open.
async fn stream_reply<C: RoomSettings>(
    ctx: &Ctx<C>,
    request: ChatRequest,
    text: Option<&mut TextMessage>,
    reasoning: Option<ReasoningMessage>,
    tap: Tap<'_>,
) -> Result<Reply, LlmError> {
    let mut out = Streamer {
        ctx,
        text,
        reasoning,
        tap,
        text_buf: Coalescer::default(),
        think_buf: Coalescer::default(),
        answer: String::new(),
        checked: 0,
        deltas: 0,
    };
    let result = out.run(request).await;
    out.finish().await;
    // Every answered call comes through here: it counts as one request of the run.
    result.map(|(usage, cut)| Reply {
        text: out.answer,
        usage: Usage {
            requests: 1,
            ..usage
        },
        cut,
    })
}

struct Streamer<'a, C> {
    ctx: &'a Ctx<C>,
    text: Option<&'a mut TextMessage>,
    reasoning: Option<ReasoningMessage>,
    tap: Tap<'a>,
    text_buf: Coalescer,
    think_buf: Coalescer,
    answer: String,
    /// Length of `answer` at the last repetition check.
    checked: usize,
    /// Deltas received, the usage of a call the guard stops.
    deltas: u64,
}

impl<C: RoomSettings> Streamer<'_, C> {
    /// Streams until the final chunk, or until the answer loops: the stream is dropped then,
    /// which ends the call on the backend.
    async fn run(&mut self, request: ChatRequest) -> Result<(Usage, Option<Cut>), LlmError> {
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
                    self.deltas += 1;
                    self.end_thinking().await;
                    self.answer.push_str(&delta);
                    if let Some(due) = self.text_buf.push(&delta) {
                        self.emit_text(due).await;
                    }
                    if self.answer.len() >= self.checked + CHECK_EVERY {
                        self.checked = self.answer.len();
                        if ends_in_loop(self.answer.as_bytes()) {
                            let usage = Usage {
                                completion_tokens: self.deltas,
                                ..Usage::default()
                            };
                            return Ok((usage, Some(Cut::Repetition)));
                        }
                    }
                }
                Some(Ok(ChatChunk::Thinking(delta))) => {
                    self.deltas += 1;
                    if self.reasoning.is_some() {
                        self.flush_text().await;
                        if let Some(due) = self.think_buf.push(&delta) {
                            self.emit_thinking(due).await;
                        }
                    }
                }
                Some(Ok(ChatChunk::Done(completion))) => {
                    let cut = (completion.done_reason.as_deref() == Some("length"))
                        .then_some(Cut::MaxTokens);
                    return Ok((completion.usage, cut));
                }
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
