//! Serves the real router on a loopback port and reads AG-UI runs back as JSON events.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use roomhost::agents::Registry;
use roomhost::config::Settings;
use roomhost::rooms::load_rooms_dir;
use roomhost::server::serve;
use roomhost::{App, AppState};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub url: String,
    pub app: AppState,
    pub rooms_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A concurrency limit for settings; tests only pick non-zero ones.
pub fn slots(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("a non-zero limit")
}

/// Settings for tests: the given LLM endpoint, short timeouts, no retry back-off to speak of.
pub fn test_settings(llm_url: &str, rooms_dir: PathBuf) -> Settings {
    let mut settings = Settings {
        rooms_dir,
        ..Settings::default()
    };
    settings.llm.base_urls = vec![llm_url.to_owned()];
    settings.llm.connect_timeout = Duration::from_secs(2);
    settings.llm.first_byte_timeout = Duration::from_secs(10);
    settings.llm.idle_timeout = Duration::from_secs(10);
    settings.llm.request_timeout = Duration::from_secs(30);
    settings.llm.retry_base_delay = Duration::from_millis(10);
    settings.shutdown_grace = Duration::from_secs(5);
    // A store of the test's own; a client that leaves cancels its run, unless a test says so.
    settings.database_url = "sqlite::memory:".into();
    settings.detached_grace = Duration::ZERO;
    // Bursts of starts are recorded one after another in a debug build on a machine that may be
    // busy: tests check that runs complete, not how fast the store records them. The store-fault
    // tests set the short bound they test.
    settings.store_timeout = Duration::from_secs(60);
    settings
}

/// LLM timeouts longer than any test waits, for tests whose calls must end by being answered or
/// by the server's cancellation: never because a busy machine was slow, and never as a stand-in
/// for the cancellation being tested.
pub fn patient_llm(settings: &mut Settings) {
    let never = HANG_GUARD * 10;
    settings.llm.first_byte_timeout = never;
    settings.llm.idle_timeout = never;
    settings.llm.request_timeout = never;
}

impl TestServer {
    /// One room from `room_yaml`, the builtin agents, the LLM at `llm_url`.
    pub async fn start(llm_url: &str, room_yaml: &str) -> TestServer {
        let dir = TempDir::with_rooms(&[room_yaml]);
        let settings = test_settings(llm_url, dir.path.clone());
        Self::start_with(settings, Registry::builtin(), dir).await
    }

    /// Builds the app from `settings` (rooms from `settings.rooms_dir`) and serves it.
    pub async fn start_with(
        mut settings: Settings,
        registry: Registry,
        rooms_dir: TempDir,
    ) -> TestServer {
        settings.validate().expect("test settings are valid");
        let app = App::open(settings, &registry).await.expect("app builds");
        Self::serve_app(app, rooms_dir).await
    }

    pub async fn serve_app(app: AppState, rooms_dir: TempDir) -> TestServer {
        let listener = roomhost::server::bind(([127, 0, 0, 1], 0).into()).expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            app,
            rooms_dir,
            stop: Some(stop),
            task,
        }
    }

    /// Sends the shutdown signal; `wait_stopped` waits for the server to finish draining.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn wait_stopped(&mut self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, &mut self.task).await,
            Ok(Ok(Ok(())))
        )
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = Self::client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Posts JSON to `path` and returns the raw response.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        Self::client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// Runs `room` with `body` and reads the whole SSE stream.
    pub async fn run(&self, room: &str, body: Value) -> RunResult {
        let resp = self.post(&format!("/rooms/{room}/run"), &v1(body)).await;
        RunResult::read(resp).await
    }

    /// Starts a run and returns the open response, for tests that read part of it or drop it.
    pub async fn open_run(&self, room: &str, body: Value) -> SseReader {
        let resp = self.post(&format!("/rooms/{room}/run"), &v1(body)).await;
        assert_eq!(resp.status().as_u16(), 200, "run did not start");
        SseReader::new(resp)
    }
}

/// A run body declaring AG-UI 1.0 (unless it says otherwise), as `@ag-ui/client` 1.x sends it:
/// the suite checks the full stream; `profiles` checks the legacy one.
pub fn v1(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.entry("protocolVersion").or_insert_with(|| "1.0".into());
    }
    body
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Frame {
    Event(Value),
    Comment,
}

/// Reads SSE frames from a streaming response, one event at a time.
pub struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    /// Comment frames (keep-alives) seen so far.
    pub comments: usize,
    /// The `id:` of the last event read.
    pub last_id: Option<String>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            comments: 0,
            last_id: None,
        }
    }

    /// The next event, or None at the end of the stream.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            match self.next_frame().await? {
                Frame::Event(event) => return Some(event),
                Frame::Comment => {}
            }
        }
    }

    /// The events read until the next comment (a keep-alive) comes, each with the stream's last
    /// id after it; `None` if the stream ends first.
    pub async fn until_comment(&mut self) -> Option<Vec<(String, Value)>> {
        let mut events = Vec::new();
        loop {
            match self.next_frame().await? {
                Frame::Event(event) => {
                    events.push((self.last_id.clone().unwrap_or_default(), event))
                }
                Frame::Comment => return Some(events),
            }
        }
    }

    /// The next event or comment frame, or None at the end of the stream.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            while let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(frame).expect("SSE frame is UTF-8");
                assert!(!text.contains('\r'), "CRLF in SSE frame: {text:?}");
                let mut data = String::new();
                let mut comment = false;
                for line in text.lines() {
                    if let Some(d) = line
                        .strip_prefix("data: ")
                        .or_else(|| line.strip_prefix("data:"))
                    {
                        data.push_str(d);
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        self.last_id = Some(id.to_owned());
                    } else if line.starts_with(':') {
                        self.comments += 1;
                        comment = true;
                    }
                }
                if !data.is_empty() {
                    return Some(Frame::Event(
                        serde_json::from_str(&data).expect("SSE data is JSON"),
                    ));
                }
                if comment {
                    return Some(Frame::Comment);
                }
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("stream broke: {e}"),
                None => {
                    assert!(
                        self.buf.iter().all(|b| b.is_ascii_whitespace()),
                        "stream ended mid-frame"
                    );
                    return None;
                }
            }
        }
    }

    /// Reads until an event of type `ty` arrives; returns every event read, that one last.
    pub async fn read_until(&mut self, ty: &str) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await {
            let done = e["type"] == ty;
            events.push(e);
            if done {
                return events;
            }
        }
        panic!("stream ended before {ty}: {:?}", types_of(&events));
    }

    /// Every event to the end, each with its id.
    pub async fn read_to_end_with_ids(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Some(event) = self.next_event().await {
            out.push((self.last_id.clone().expect("every event has an id"), event));
        }
        out
    }

    pub async fn read_to_end(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await {
            events.push(e);
        }
        events
    }
}

/// A whole run as the client saw it.
pub struct RunResult {
    pub status: u16,
    pub content_type: String,
    /// The JSON body when the server answered with an error instead of a stream.
    pub error_body: Value,
    pub events: Vec<Value>,
}

impl RunResult {
    pub async fn read(resp: reqwest::Response) -> RunResult {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            let error_body = resp.json().await.unwrap_or(Value::Null);
            return RunResult {
                status,
                content_type,
                error_body,
                events: Vec::new(),
            };
        }
        let events = SseReader::new(resp).read_to_end().await;
        RunResult {
            status,
            content_type,
            error_body: Value::Null,
            events,
        }
    }

    pub fn types(&self) -> Vec<String> {
        types_of(&self.events)
    }

    pub fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == ty).collect()
    }

    /// The names of the steps the run started, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.of_type("STEP_STARTED")
            .iter()
            .filter_map(|e| e["stepName"].as_str())
            .collect()
    }

    pub fn last(&self) -> &Value {
        self.events.last().expect("at least one event")
    }

    /// The text of the assistant messages that belong to no subagent: the run's answer.
    pub fn final_text(&self) -> String {
        self.events
            .iter()
            .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT" && e.get("subagentRunId").is_none())
            .filter_map(|e| e["delta"].as_str())
            .collect()
    }

    /// The text a subagent streamed.
    pub fn subagent_text(&self, subagent_run_id: &str) -> String {
        self.events
            .iter()
            .filter(|e| {
                e["type"] == "TEXT_MESSAGE_CONTENT" && e["subagentRunId"] == subagent_run_id
            })
            .filter_map(|e| e["delta"].as_str())
            .collect()
    }

    /// The activity message's content after its snapshot and every delta, applied in order.
    pub fn activity_state(&self) -> Value {
        apply_activity(&self.events)
    }
}

pub fn types_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Applies the activity snapshot and its deltas in stream order; panics on a patch that fails.
pub fn apply_activity(events: &[Value]) -> Value {
    let mut state = Value::Null;
    for e in events {
        match e["type"].as_str() {
            Some("ACTIVITY_SNAPSHOT") => state = e["content"].clone(),
            Some("ACTIVITY_DELTA") => {
                let patch: json_patch::Patch =
                    serde_json::from_value(e["patch"].clone()).expect("patch is RFC 6902");
                json_patch::patch(&mut state, &patch)
                    .unwrap_or_else(|err| panic!("patch {patch:?} failed: {err}"));
            }
            _ => {}
        }
    }
    state
}

/// Checks the ordering rules of AG-UI 1.0 (as `@ag-ui/client` verifies them) plus what that
/// client misses: the stream must end with exactly one RUN_FINISHED or RUN_ERROR.
pub fn verify_agui(events: &[Value]) -> Result<(), String> {
    use std::collections::HashSet;
    let mut open_text = HashSet::new();
    let mut open_reasoning = HashSet::new();
    let mut open_steps: Vec<String> = Vec::new();
    let mut open_subagents = HashSet::new();
    let mut used_subagents = HashSet::new();
    let mut message_ids = HashSet::new();
    let mut ended = false;
    for (i, e) in events.iter().enumerate() {
        let ty = e["type"].as_str().ok_or(format!("event {i} has no type"))?;
        let at = |msg: String| format!("event {i} ({ty}): {msg}");
        if ended {
            return Err(at("event after the run ended".into()));
        }
        if i == 0 && ty != "RUN_STARTED" {
            return Err(at("the first event must be RUN_STARTED".into()));
        }
        if let Some(obj) = e.as_object() {
            if let Some((k, _)) = obj.iter().find(|(_, v)| v.is_null()) {
                return Err(at(format!(
                    "field `{k}` is null; optional fields must be omitted"
                )));
            }
        }
        if let Some(sub) = e.get("subagentRunId").and_then(Value::as_str) {
            if !ty.starts_with("SUBAGENT_") && !open_subagents.contains(sub) {
                return Err(at(format!("subagent {sub} is not active")));
            }
        }
        let id = || e["messageId"].as_str().unwrap_or_default().to_owned();
        match ty {
            "RUN_STARTED" if i > 0 => return Err(at("a second RUN_STARTED".into())),
            "RUN_FINISHED" => {
                if !open_text.is_empty()
                    || !open_reasoning.is_empty()
                    || !open_steps.is_empty()
                    || !open_subagents.is_empty()
                {
                    return Err(at(format!(
                        "RUN_FINISHED with open text {open_text:?}, reasoning {open_reasoning:?}, steps {open_steps:?}, subagents {open_subagents:?}"
                    )));
                }
                ended = true;
            }
            "RUN_ERROR" => {
                if e["message"].as_str().unwrap_or("").is_empty() {
                    return Err(at("RUN_ERROR without a message".into()));
                }
                ended = true;
            }
            "TEXT_MESSAGE_START" => {
                if !message_ids.insert(id()) {
                    return Err(at(format!("message id {} used twice", id())));
                }
                open_text.insert(id());
            }
            "TEXT_MESSAGE_CONTENT" => {
                if !open_text.contains(&id()) {
                    return Err(at(format!("content for message {} that is not open", id())));
                }
                if e["delta"].as_str().unwrap_or("").is_empty() {
                    return Err(at("empty delta".into()));
                }
            }
            "TEXT_MESSAGE_END" if !open_text.remove(&id()) => {
                return Err(at(format!("end of message {} that is not open", id())));
            }
            "REASONING_START" | "REASONING_MESSAGE_START" => {
                open_reasoning.insert(format!("{ty}:{}", id()));
            }
            "REASONING_MESSAGE_CONTENT"
                if !open_reasoning.contains(&format!("REASONING_MESSAGE_START:{}", id())) =>
            {
                return Err(at("reasoning content outside its message".into()));
            }
            "REASONING_MESSAGE_END" | "REASONING_END" => {
                let start = if ty == "REASONING_END" {
                    "REASONING_START"
                } else {
                    "REASONING_MESSAGE_START"
                };
                if !open_reasoning.remove(&format!("{start}:{}", id())) {
                    return Err(at("reasoning end without its start".into()));
                }
            }
            "STEP_STARTED" => {
                open_steps.push(e["stepName"].as_str().unwrap_or_default().to_owned())
            }
            "STEP_FINISHED" => {
                let name = e["stepName"].as_str().unwrap_or_default();
                let pos = open_steps
                    .iter()
                    .position(|s| s == name)
                    .ok_or(at(format!("step {name} not started")))?;
                open_steps.remove(pos);
            }
            "SUBAGENT_STARTED" => {
                let sub = e["subagentRunId"]
                    .as_str()
                    .ok_or(at("no subagentRunId".into()))?
                    .to_owned();
                if e["name"].as_str().unwrap_or("").is_empty() {
                    return Err(at("subagent without a name".into()));
                }
                if !used_subagents.insert(sub.clone()) {
                    return Err(at(format!("subagent id {sub} reused")));
                }
                open_subagents.insert(sub);
            }
            "SUBAGENT_FINISHED" | "SUBAGENT_ERROR" => {
                let sub = e["subagentRunId"].as_str().unwrap_or_default();
                if !open_subagents.remove(sub) {
                    return Err(at(format!("subagent {sub} is not active")));
                }
            }
            "ACTIVITY_SNAPSHOT" if !message_ids.insert(id()) => {
                return Err(at(format!("message id {} used twice", id())));
            }
            _ => {}
        }
    }
    if !ended {
        return Err(format!(
            "the stream ended without RUN_FINISHED or RUN_ERROR: {:?}",
            types_of(events)
        ));
    }
    Ok(())
}

/// The OpenAI-compatible real model server `scripts/with-real-model.sh` started: its URL and
/// model name.
pub fn real_llm() -> (String, String) {
    real_server("ROOMHOST_REAL_LLM_URL")
}

/// The Ollama-native shim over the same real model (`scripts/ollama_shim.py`): its URL and model
/// name.
pub fn real_ollama() -> (String, String) {
    real_server("ROOMHOST_REAL_OLLAMA_URL")
}

fn real_server(url_var: &str) -> (String, String) {
    match (
        std::env::var(url_var),
        std::env::var("ROOMHOST_REAL_LLM_MODEL"),
    ) {
        (Ok(url), Ok(model)) => (url, model),
        _ => panic!(
            "{url_var} / ROOMHOST_REAL_LLM_MODEL are not set; run the real-model tests through \
             `bash scripts/with-real-model.sh cargo nextest run --features real-model \
             --test real_model --test real_model_agent`"
        ),
    }
}

/// How long a test waits for something that must happen before calling it a hang. Only a real
/// hang reaches it, even with every core busy: it is never what a test measures.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Polls `cond` every 10 ms until it holds; panics naming `what` after [`HANG_GUARD`].
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A temporary folder removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("roomhost-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// A rooms dir with one `room_N.yaml` per given YAML text.
    pub fn with_rooms(rooms: &[&str]) -> TempDir {
        let dir = TempDir::new();
        for (i, yaml) in rooms.iter().enumerate() {
            dir.write(&format!("room_{i}.yaml"), yaml);
        }
        dir
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn rooms(&self) -> Vec<roomhost::rooms::LoadedRoom> {
        load_rooms_dir(&self.path).expect("rooms load")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
