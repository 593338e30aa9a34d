//! A scriptable mock LLM server for tests. It speaks Ollama's `POST /api/chat` (NDJSON) and the
//! OpenAI-compatible `POST /v1/chat/completions` (SSE), answers sensibly by default ("auto"), can
//! be scripted per request (`push`, `respond_with`), and counts what it saw. `examples/mock_llm.rs`
//! runs it as a process; `/_mock/*` lets such a process be scripted and read over HTTP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The mock server; dropping it stops it.
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// One chat request as the mock received it.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// 1-based arrival number since the last reset.
    pub index: usize,
    pub path: String,
    pub body: Value,
    pub model: String,
    pub messages: Vec<MockMessage>,
    /// A JSON Schema (Ollama `format` object, OpenAI `response_format` schema), or `"json"` for
    /// schema-less JSON mode.
    pub format: Option<Value>,
    pub seed: Option<i64>,
    pub temperature: Option<f64>,
    /// Ollama `options.num_predict`, OpenAI `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<i64>,
    /// Ollama `think`, OpenAI `reasoning_effort`.
    pub think: Option<Value>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockMessage {
    pub role: String,
    pub content: String,
}

/// How the mock answers one request. Build with `MockReply::new()` and the methods below; by
/// default it streams its chunks and ends with a proper final chunk.
#[derive(Debug, Clone, Default)]
pub struct MockReply {
    thinking: Vec<String>,
    content: Vec<String>,
    raw: Option<Vec<Vec<u8>>>,
    status: Option<(u16, String)>,
    first_byte_delay: Option<Duration>,
    chunk_delay: Option<Duration>,
    cut: Option<(usize, Cut)>,
    hang: bool,
    hang_before_headers: bool,
    permits: Option<Arc<tokio::sync::Semaphore>>,
    done_reason: Option<String>,
    usage: Option<(u64, u64)>,
    garbage_line: bool,
    oversized_line: Option<usize>,
    gate: Option<Gate>,
}

/// Holds the replies given it before their first byte until the test opens it: a run waits in
/// its LLM call for exactly as long as the test needs, whatever the machine's speed.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn opened(&self) {
        // The sender lives in `self`, so the wait ends only when it is opened.
        let _ = self.0.subscribe().wait_for(|open| *open).await;
    }
}

#[derive(Debug, Clone)]
enum Cut {
    Error(String),
    Truncate,
    Reset,
}

impl MockReply {
    pub fn new() -> Self {
        Self::default()
    }
    /// Content, streamed one word (with its trailing space) per chunk.
    pub fn text(mut self, s: impl AsRef<str>) -> Self {
        self.content = words(s.as_ref());
        self
    }
    /// Thinking, streamed word by word before the content.
    pub fn thinking(mut self, s: impl AsRef<str>) -> Self {
        self.thinking = words(s.as_ref());
        self
    }
    /// Content chunks exactly as given.
    pub fn chunks(mut self, chunks: Vec<String>) -> Self {
        self.content = chunks;
        self
    }
    /// The exact body bytes, one socket write per element (for split lines and characters).
    pub fn raw(mut self, writes: Vec<Vec<u8>>) -> Self {
        self.raw = Some(writes);
        self
    }
    pub fn first_byte_delay(mut self, d: Duration) -> Self {
        self.first_byte_delay = Some(d);
        self
    }
    /// Pause before every write after the first.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = Some(d);
        self
    }
    /// An HTTP error with the body the path's API uses.
    pub fn status(mut self, code: u16, message: impl Into<String>) -> Self {
        self.status = Some((code, message.into()));
        self
    }
    /// After `n` chunks, an in-band error (Ollama `{"error"}` line, OpenAI `data: {"error":{..}}`).
    pub fn error_after(mut self, n: usize, msg: impl Into<String>) -> Self {
        self.cut = Some((n, Cut::Error(msg.into())));
        self
    }
    /// After `n` chunks, a clean EOF without the final chunk / `[DONE]`.
    pub fn truncate_after(mut self, n: usize) -> Self {
        self.cut = Some((n, Cut::Truncate));
        self
    }
    /// After `n` chunks, the connection is aborted.
    pub fn reset_after(mut self, n: usize) -> Self {
        self.cut = Some((n, Cut::Reset));
        self
    }
    /// Headers (and any chunks) are sent, then nothing, forever.
    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }
    /// Holds the reply's body until the test adds a permit to `gate` (one permit lets one reply
    /// go on).
    pub fn gate(mut self, gate: Arc<tokio::sync::Semaphore>) -> Self {
        self.permits = Some(gate);
        self
    }
    /// Not even the headers are ever sent.
    pub fn hang_before_headers(mut self) -> Self {
        self.hang_before_headers = true;
        self
    }
    pub fn done_reason(mut self, s: impl Into<String>) -> Self {
        self.done_reason = Some(s.into());
        self
    }
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }
    /// A line that is not JSON, before the chunks.
    pub fn garbage_line(mut self) -> Self {
        self.garbage_line = true;
        self
    }
    /// Waits for `gate` to open before answering.
    pub fn gated(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }
    /// A single chunk line of about `bytes` bytes, before the other chunks.
    pub fn oversized_line(mut self, bytes: usize) -> Self {
        self.oversized_line = Some(bytes);
        self
    }
}

type Responder = Arc<dyn Fn(&MockRequest) -> MockReply + Send + Sync>;

/// What `POST /_mock/mode` sets: how unscripted requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Auto,
    FailStatus,
    FailMidStream,
    Hang,
    /// Ignore `format` and answer in prose (`prose_reply`), as some models do.
    Prose,
}

#[derive(Debug, Deserialize)]
struct ModeBody {
    mode: Mode,
    status: Option<u16>,
    first_byte_ms: Option<u64>,
    chunk_ms: Option<u64>,
    fail_every: Option<usize>,
    words: Option<usize>,
    /// Auto replies end with this `done_reason` (`length`: cut at the token limit).
    done_reason: Option<String>,
}

struct Control {
    queue: VecDeque<MockReply>,
    responder: Option<Responder>,
    mode: Mode,
    fail_status: u16,
    fail_every: usize,
    first_byte: Duration,
    per_chunk: Duration,
    words: usize,
    done_reason: Option<String>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            responder: None,
            mode: Mode::Auto,
            fail_status: 500,
            fail_every: 1,
            first_byte: Duration::ZERO,
            per_chunk: Duration::ZERO,
            words: DEFAULT_WORDS,
            done_reason: None,
        }
    }
}

const DEFAULT_WORDS: usize = 8;

#[derive(Default)]
struct Shared {
    control: Mutex<Control>,
    requests: Mutex<Vec<MockRequest>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    disconnects: AtomicUsize,
    /// TCP connections accepted and not yet closed.
    connections: AtomicUsize,
    stopped: CancellationToken,
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MockLlm {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> MockLlm {
        Self::start_on(0)
            .await
            .expect("the mock LLM cannot bind 127.0.0.1:0")
    }

    /// Starts on 127.0.0.1:`port` (0 = any free port).
    pub async fn start_on(port: u16) -> std::io::Result<MockLlm> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Starts on `addr` (the example's `--host`, for a container's stand-in Ollama).
    pub async fn start_at(addr: SocketAddr) -> std::io::Result<MockLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        tokio::spawn(serve(listener, shared.clone()));
        Ok(MockLlm { addr, shared })
    }

    /// Base URL, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests not served by `push`ed replies.
    pub fn respond_with(&self, f: impl Fn(&MockRequest) -> MockReply + Send + Sync + 'static) {
        lock(&self.shared.control).responder = Some(Arc::new(f));
    }

    /// Queues a one-shot reply; queued replies are used first, in order.
    pub fn push(&self, reply: MockReply) {
        lock(&self.shared.control).queue.push_back(reply);
    }

    /// Delays for replies that set none: before the headers, and between writes.
    pub fn set_timing(&self, first_byte: Duration, per_chunk: Duration) {
        let mut c = lock(&self.shared.control);
        c.first_byte = first_byte;
        c.per_chunk = per_chunk;
    }

    /// Filler words in auto text replies (after the echo of the prompt).
    pub fn set_words(&self, words: usize) {
        lock(&self.shared.control).words = words;
    }

    /// Chat requests received since the last reset.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    pub fn requests(&self) -> Vec<MockRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Requests whose client went away before the reply was complete.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Connections still open. At 0 once its clients are gone, the mock has read every request
    /// they sent: nothing sent earlier can still arrive.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// The backend dies: no new connections, open ones are closed.
    pub fn stop(&self) {
        self.shared.stopped.cancel();
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.shared.stopped.cancel();
    }
}

impl Shared {
    fn reset_stats(&self) {
        lock(&self.requests).clear();
        self.peak
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        self.disconnects.store(0, Ordering::SeqCst);
    }

    fn next_reply(&self, req: &MockRequest) -> MockReply {
        let mut c = lock(&self.control);
        if let Some(reply) = c.queue.pop_front() {
            return reply;
        }
        if let Some(f) = c.responder.clone() {
            drop(c);
            return f(req);
        }
        let auto = auto_reply(req, c.words);
        let fails = c.fail_every <= 1 || req.index.is_multiple_of(c.fail_every);
        match c.mode {
            Mode::Auto => match c.done_reason.clone() {
                Some(reason) => auto.done_reason(reason),
                None => auto,
            },
            Mode::Prose => prose_reply(req),
            _ if !fails => auto,
            Mode::FailStatus => MockReply::new().status(c.fail_status, "mock failure"),
            Mode::FailMidStream => auto.error_after(2, "mock failure mid-stream"),
            Mode::Hang => MockReply::new().hang(),
        }
    }
}

/// Accepts connections until stopped; each connection is dropped (closed) on stop.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = router(shared.clone());
    let stopped = shared.stopped.clone();
    loop {
        let io = tokio::select! {
            _ = stopped.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => {
                    // As Ollama (Go) does; else small chunks wait for the client's delayed ACK.
                    let _ = io.set_nodelay(true);
                    io
                }
                // Out of file descriptors and the like: let the backlog drain a little.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stopped = stopped.clone();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::select! {
                _ = conn => {}
                _ = stopped.cancelled() => {}
            }
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { Json(json!({"version": "0.0.0-mock"})) }),
        )
        .route("/api/tags", get(tags))
        .route("/v1/models", get(models))
        .route("/api/chat", post(chat))
        .route("/v1/chat/completions", post(chat))
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .route("/_mock/mode", post(set_mode))
        .with_state(shared)
}

const MOCK_MODEL: &str = "mock:latest";

async fn tags() -> Json<Value> {
    Json(json!({"models": [{
        "name": MOCK_MODEL, "model": MOCK_MODEL, "modified_at": "2026-01-01T00:00:00Z",
        "size": 1, "digest": "0", "details": {"format": "gguf", "family": "mock"}
    }]}))
}

async fn models() -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": MOCK_MODEL, "object": "model", "owned_by": "mock"}]}),
    )
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "requests": lock(&shared.requests).len(),
        "in_flight": shared.in_flight.load(Ordering::SeqCst),
        "peak_in_flight": shared.peak.load(Ordering::SeqCst),
        "disconnects": shared.disconnects.load(Ordering::SeqCst),
    }))
}

/// Clears the counters, queued replies, responder, mode and timing.
async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_stats();
    *lock(&shared.control) = Control::default();
    StatusCode::NO_CONTENT
}

async fn set_mode(State(shared): State<Arc<Shared>>, Json(body): Json<ModeBody>) -> StatusCode {
    let mut c = lock(&shared.control);
    c.mode = body.mode;
    c.fail_status = body.status.unwrap_or(500);
    c.fail_every = body.fail_every.unwrap_or(1);
    c.first_byte = Duration::from_millis(body.first_byte_ms.unwrap_or(0));
    c.per_chunk = Duration::from_millis(body.chunk_ms.unwrap_or(0));
    c.words = body.words.unwrap_or(DEFAULT_WORDS);
    c.done_reason = body.done_reason;
    StatusCode::NO_CONTENT
}

/// Counts a request in flight until it is finished or dropped; dropped unfinished (and not
/// because the mock stopped) means the client went away.
struct FlightGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl FlightGuard {
    fn enter(shared: Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        Self {
            shared,
            finished: false,
        }
    }

    /// Called before the last write, so a client that starts its next call as soon as it has
    /// read this reply never sees this one still counted.
    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !self.shared.stopped.is_cancelled() {
                self.shared.disconnects.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Ollama,
    OpenAi,
}

impl Wire {
    fn of(path: &str) -> Self {
        if path.starts_with("/v1/") {
            Wire::OpenAi
        } else {
            Wire::Ollama
        }
    }

    fn error_response(self, code: u16, message: &str) -> Response {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match self {
            Wire::Ollama => json!({ "error": message }),
            Wire::OpenAi => json!({"error": {
                "message": message, "type": openai_error_type(code), "param": null, "code": null
            }}),
        };
        (status, Json(body)).into_response()
    }
}

fn openai_error_type(code: u16) -> &'static str {
    match code {
        404 => "not_found_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let wire = Wire::of(&path);
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return wire.error_response(400, &format!("invalid JSON body: {e}")),
    };
    let mut guard = FlightGuard::enter(shared.clone());
    let req = {
        let mut requests = lock(&shared.requests);
        let mut req = MockRequest::parse(requests.len() + 1, path, body);
        req.authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        requests.push(req.clone());
        req
    };
    let reply = shared.next_reply(&req);
    let (first_byte, per_chunk) = {
        let c = lock(&shared.control);
        (
            reply.first_byte_delay.unwrap_or(c.first_byte),
            reply.chunk_delay.unwrap_or(c.per_chunk),
        )
    };
    if reply.hang_before_headers {
        std::future::pending::<()>().await;
    }
    if let Some(gate) = &reply.gate {
        gate.opened().await;
    }
    tokio::time::sleep(first_byte).await;
    if let Some((code, message)) = &reply.status {
        guard.finish();
        return wire.error_response(*code, message);
    }
    if !req.stream {
        guard.finish();
        return Json(whole_reply(wire, &req, &reply)).into_response();
    }
    let steps = stream_steps(wire, &req, &reply);
    let content_type = match wire {
        Wire::Ollama => "application/x-ndjson",
        Wire::OpenAi => "text/event-stream",
    };
    let body = futures::stream::unfold(
        (steps, guard, true),
        move |(mut steps, mut guard, first)| async move {
            let Some(step) = steps.pop_front() else {
                guard.finish();
                return None;
            };
            // A zero sleep still waits for the next timer tick (about 1 ms), so skip it; but before
            // a reset, wait anyway: hyper flushes the writes so far only once the body is pending.
            let pause = match step {
                Step::Reset => per_chunk.max(Duration::from_millis(1)),
                _ => per_chunk,
            };
            if !first && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if steps.is_empty() && !matches!(step, Step::Hang) {
                guard.finish();
            }
            match step {
                Step::Write(bytes) => Some((Ok(bytes), (steps, guard, false))),
                Step::Reset => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock connection reset",
                    )),
                    (steps, guard, false),
                )),
                Step::Gate(gate) => {
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    Some((Ok(Bytes::new()), (steps, guard, false)))
                }
                Step::Hang => {
                    // Keeps `guard` alive: the request stays in flight until the client leaves.
                    std::future::pending::<()>().await;
                    None
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| wire.error_response(500, &e.to_string()))
}

enum Step {
    Write(Bytes),
    Reset,
    Hang,
    Gate(Arc<tokio::sync::Semaphore>),
}

/// The chunks of a reply, thinking first, each tagged `true` for thinking.
fn deltas(reply: &MockReply) -> Vec<(bool, &str)> {
    let thinking = reply.thinking.iter().map(|t| (true, t.as_str()));
    let content = reply.content.iter().map(|c| (false, c.as_str()));
    thinking.chain(content).collect()
}

fn usage_of(req: &MockRequest, reply: &MockReply) -> (u64, u64) {
    reply.usage.unwrap_or_else(|| {
        let prompt: usize = req
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count())
            .sum();
        (prompt.max(1) as u64, deltas(reply).len() as u64)
    })
}

fn stream_steps(wire: Wire, req: &MockRequest, reply: &MockReply) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    let line = |v: Value| match wire {
        Wire::Ollama => Bytes::from(format!("{v}\n")),
        Wire::OpenAi => Bytes::from(format!("data: {v}\n\n")),
    };
    if let Some(raw) = &reply.raw {
        let limit = reply.cut.as_ref().map_or(raw.len(), |(n, _)| *n);
        steps.extend(
            raw.iter()
                .take(limit)
                .map(|w| Step::Write(Bytes::from(w.clone()))),
        );
    } else {
        if reply.garbage_line {
            steps.push_back(Step::Write(match wire {
                Wire::Ollama => Bytes::from_static(b"this is not json\n"),
                Wire::OpenAi => Bytes::from_static(b"data: this is not json\n\n"),
            }));
        }
        if let Some(size) = reply.oversized_line {
            let big = line(delta_json(wire, req, false, &"x".repeat(size)));
            // Sent in pieces, as a big line would arrive.
            for piece in big.chunks(16 * 1024) {
                steps.push_back(Step::Write(Bytes::copy_from_slice(piece)));
            }
        }
        let all = deltas(reply);
        let limit = reply.cut.as_ref().map_or(all.len(), |(n, _)| *n);
        for (thinking, text) in all.into_iter().take(limit) {
            steps.push_back(Step::Write(line(delta_json(wire, req, thinking, text))));
        }
    }
    match &reply.cut {
        Some((_, Cut::Error(msg))) => steps.push_back(Step::Write(match wire {
            Wire::Ollama => line(json!({ "error": msg })),
            Wire::OpenAi => {
                line(json!({"error": {"message": msg, "type": "api_error", "code": null}}))
            }
        })),
        Some((_, Cut::Truncate)) => {}
        Some((_, Cut::Reset)) => steps.push_back(Step::Reset),
        None if reply.hang => steps.push_back(Step::Hang),
        None if reply.raw.is_some() => {}
        None => steps.extend(final_lines(wire, req, reply).into_iter().map(|v| match v {
            Some(v) => Step::Write(line(v)),
            None => Step::Write(Bytes::from_static(b"data: [DONE]\n\n")),
        })),
    }
    if wire == Wire::OpenAi && reply.raw.is_none() {
        // The role-only event goes out with the first write, so delays fall between the same
        // chunks in both formats.
        let role = line(openai_chunk(
            req,
            json!({"role": "assistant", "content": ""}),
            None,
        ));
        match steps.front_mut() {
            Some(Step::Write(first)) => *first = [role, first.clone()].concat().into(),
            _ => steps.push_front(Step::Write(role)),
        }
    }
    if let Some(permits) = &reply.permits {
        steps.push_front(Step::Gate(permits.clone()));
    }
    steps
}

fn delta_json(wire: Wire, req: &MockRequest, thinking: bool, text: &str) -> Value {
    match wire {
        Wire::Ollama => {
            let mut message = json!({"role": "assistant", "content": ""});
            message[if thinking { "thinking" } else { "content" }] = json!(text);
            json!({"model": req.model, "created_at": "2026-01-01T00:00:00Z", "message": message, "done": false})
        }
        Wire::OpenAi => {
            let key = if thinking {
                "reasoning_content"
            } else {
                "content"
            };
            openai_chunk(req, json!({ key: text }), None)
        }
    }
}

fn openai_chunk(req: &MockRequest, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": req.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

/// The closing lines; `None` stands for `data: [DONE]`.
fn final_lines(wire: Wire, req: &MockRequest, reply: &MockReply) -> Vec<Option<Value>> {
    let reason = reply.done_reason.as_deref().unwrap_or("stop");
    let (prompt, completion) = usage_of(req, reply);
    match wire {
        Wire::Ollama => vec![Some(json!({
            "model": req.model, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": reason,
            "total_duration": 1_000_000 * (completion + 1), "load_duration": 1000,
            "prompt_eval_count": prompt, "prompt_eval_duration": 1000,
            "eval_count": completion, "eval_duration": 1_000_000 * completion.max(1),
        }))],
        Wire::OpenAi => {
            let mut lines = vec![Some(openai_chunk(req, json!({}), Some(reason)))];
            if req.include_usage {
                lines.push(Some(json!({
                    "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                    "model": req.model, "choices": [],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })));
            }
            lines.push(None);
            lines
        }
    }
}

/// The `stream: false` answer.
fn whole_reply(wire: Wire, req: &MockRequest, reply: &MockReply) -> Value {
    let reason = reply.done_reason.as_deref().unwrap_or("stop");
    let (prompt, completion) = usage_of(req, reply);
    let content = reply.content.concat();
    let thinking = reply.thinking.concat();
    match wire {
        Wire::Ollama => json!({
            "model": req.model, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content, "thinking": thinking},
            "done": true, "done_reason": reason,
            "prompt_eval_count": prompt, "eval_count": completion,
        }),
        Wire::OpenAi => json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": req.model,
            "choices": [{"index": 0, "finish_reason": reason, "message": {
                "role": "assistant", "content": content, "reasoning_content": thinking}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }),
    }
}

impl MockRequest {
    fn parse(index: usize, path: String, body: Value) -> Self {
        let wire = Wire::of(&path);
        let messages = body["messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| MockMessage {
                        role: m["role"].as_str().unwrap_or_default().to_owned(),
                        content: m["content"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (options, format, think, stream) = match wire {
            Wire::Ollama => (
                &body["options"],
                body.get("format").filter(|f| !f.is_null()).cloned(),
                body.get("think").filter(|t| !t.is_null()).cloned(),
                body["stream"].as_bool().unwrap_or(true),
            ),
            Wire::OpenAi => (
                &body,
                openai_format(&body["response_format"]),
                body.get("reasoning_effort")
                    .filter(|t| !t.is_null())
                    .cloned(),
                body["stream"].as_bool().unwrap_or(false),
            ),
        };
        let max_tokens = match wire {
            Wire::Ollama => options["num_predict"].as_i64(),
            Wire::OpenAi => body["max_tokens"]
                .as_i64()
                .or_else(|| body["max_completion_tokens"].as_i64()),
        };
        MockRequest {
            index,
            model: body["model"].as_str().unwrap_or_default().to_owned(),
            messages,
            format,
            seed: options["seed"].as_i64(),
            temperature: options["temperature"].as_f64(),
            max_tokens,
            think,
            stream,
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            authorization: None,
            path,
            body,
        }
    }

    pub fn is_openai(&self) -> bool {
        Wire::of(&self.path) == Wire::OpenAi
    }

    /// The first system message.
    pub fn system(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == "system")
            .map(|m| m.content.as_str())
    }

    pub fn last_user(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
    }

    /// The JSON Schema asked for, if any (not the schema-less `"json"` mode).
    pub fn schema(&self) -> Option<&Value> {
        self.format.as_ref().filter(|f| f.is_object())
    }

    /// Whether thinking was asked for (`think: false` / `reasoning_effort: "none"` is not).
    pub fn wants_thinking(&self) -> bool {
        !matches!(
            &self.think,
            None | Some(Value::Bool(false)) | Some(Value::Null)
        ) && self.think != Some(json!("none"))
    }
}

fn openai_format(rf: &Value) -> Option<Value> {
    match rf["type"].as_str()? {
        "json_schema" => Some(rf["json_schema"]["schema"].clone()),
        "json_object" => Some(rf.get("schema").cloned().unwrap_or_else(|| json!("json"))),
        _ => None,
    }
}

/// Splits text into chunks of one word plus the whitespace after it.
fn words(s: &str) -> Vec<String> {
    s.split_inclusive(char::is_whitespace)
        .map(str::to_owned)
        .collect()
}

const ECHO_WORDS: usize = 6;
const FILLER: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// The first words of the last user message, so a test can tell which prompt an answer is for.
fn echo_of(req: &MockRequest) -> String {
    let words: Vec<&str> = req
        .last_user()
        .unwrap_or_default()
        .split_whitespace()
        .take(ECHO_WORDS)
        .collect();
    if words.is_empty() {
        "(empty)".into()
    } else {
        words.join(" ")
    }
}

/// The default answer: schema-valid JSON when a schema is asked for, else the echo of the prompt
/// followed by `words` filler words. Thinking first when the request asks for it.
pub fn auto_reply(req: &MockRequest, words: usize) -> MockReply {
    let echo = echo_of(req);
    let mut reply = MockReply::new();
    if req.wants_thinking() {
        reply = reply.thinking(format!("Considering {echo}."));
    }
    let filler: Vec<&str> = FILLER.iter().cycle().take(words).copied().collect();
    let text = format!("{echo}: {}", filler.join(" "));
    match &req.format {
        Some(schema @ Value::Object(_)) => {
            let seed = req.seed.unwrap_or(0).unsigned_abs();
            let answer = schema_answer(schema, "value", seed, &echo);
            reply.chunks(json_chunks(&answer.to_string()))
        }
        Some(_) => reply.chunks(json_chunks(&json!({ "answer": text }).to_string())),
        None => reply.text(text),
    }
}

/// An answer in prose whatever `format` asks for, as models that ignore it give: it names the
/// schema's `answer` option for the request's seed ("I'd pick Python, ..."), or says something
/// about the prompt.
pub fn prose_reply(req: &MockRequest) -> MockReply {
    let options = req
        .schema()
        .and_then(|s| s.pointer("/properties/answer/enum"))
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty());
    let text = match options {
        Some(options) => {
            let pick =
                &options[(req.seed.unwrap_or(0).unsigned_abs() % options.len() as u64) as usize];
            format!(
                "I'd pick {}, since it fits best.",
                pick.as_str().unwrap_or_default()
            )
        }
        None => format!("Here is what I think about {}.", echo_of(req)),
    };
    MockReply::new().text(text)
}

/// A value valid for the common subset of JSON Schema that structured output uses.
fn schema_answer(schema: &Value, key: &str, seed: u64, echo: &str) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.is_empty() {
            return options[(seed % options.len() as u64) as usize].clone();
        }
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alternatives)) = schema.get(combinator) {
            if let Some(first) = alternatives
                .iter()
                .find(|a| a.get("type") != Some(&json!("null")))
            {
                return schema_answer(first, key, seed, echo);
            }
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "string",
    };
    let bound = |name: &str| schema.get(name).and_then(Value::as_f64);
    match ty {
        "object" => {
            let mut object = Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, sub) in props {
                    object.insert(name.clone(), schema_answer(sub, name, seed, echo));
                }
            }
            Value::Object(object)
        }
        "array" => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let n = 3u64.max(min).min(max);
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            let plain_string = items.get("type") == Some(&json!("string"))
                && items.get("enum").is_none()
                && items.get("const").is_none();
            Value::Array(
                (0..n)
                    .map(|i| {
                        if plain_string {
                            json!(format!("{echo} (part {})", i + 1))
                        } else {
                            schema_answer(&items, key, seed + i, echo)
                        }
                    })
                    .collect(),
            )
        }
        "integer" => {
            let v = bound("minimum").unwrap_or(1.0).max(1.0);
            json!(v.min(bound("maximum").unwrap_or(f64::MAX)).ceil() as i64)
        }
        "number" => json!(bound("minimum")
            .unwrap_or(1.0)
            .max(1.0)
            .min(bound("maximum").unwrap_or(f64::MAX))),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => json!(format!("{key} for {echo}")),
    }
}

/// Splits serialized JSON into small chunks (on character boundaries), as a model streams it.
fn json_chunks(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(8).map(|c| c.iter().collect()).collect()
}
