//! The abuse suite (issue 14): every hostile-client probe against the release binary, run by
//! `.ci/run` after `cargo build --release`:
//! `target/release/examples/abuse [--server target/release/roomhost]`.
//!
//! roomhost runs as a child process under a 1.5 GiB address-space cap and a 512 open-file limit
//! (soft and hard, so it cannot raise it); the mock LLM runs in this process, so the server's
//! memory figures are its own and every prompt the server sends can be checked. A poller reads
//! `/healthz` every 250 ms throughout. Each probe prints one line with its figures (calls the
//! mock saw, the server's peak RSS during the probe) and fails on: a server that died, a refusal
//! without its status and JSON body, LLM calls past the documented caps, or `/stats` not back to
//! zero. The last line counts passes and failures; any failure is a non-zero exit.

#[allow(dead_code)]
#[path = "../tests/suite/support/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/suite/support/mock_llm.rs"]
mod mock_llm;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use harness::{SseReader, TempDir};
use mock_llm::MockLlm;

/// Address-space cap: jemalloc's arenas, the runtime's thread stacks and the SQLite store's
/// connections reserve a few hundred MiB of address space (the suite peaks near 900 MiB); the old
/// quadratic prompt building needed 3.6-4 GB and dies well under this.
const AS_CAP: u64 = 3 << 29;
/// Open files: soft and hard, so the server's start-up raise cannot lift it.
const NOFILE: u64 = 512;
/// Below the open-file limit, so a flood is refused with 503 rather than failing accept().
const MAX_CONNECTIONS: usize = 256;
/// Shortened from the defaults (15 s, 30 s, 30 s) to keep the suite short; the rules are the same.
const HEADER_TIMEOUT: Duration = Duration::from_secs(4);
const BODY_TIMEOUT: Duration = Duration::from_secs(4);
const CLIENT_STALL: Duration = Duration::from_secs(4);
/// LLM slots and queue: the defaults.
const SLOTS: usize = 4;
const MAX_QUEUE: usize = 256;
/// The room `wide` allows the most sections a room may (20).
const WIDE_SECTIONS: usize = 20;
const HEALTH_EVERY: Duration = Duration::from_millis(250);
const HEALTH_LIMIT: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(about = "roomhost abuse suite: hostile clients against the release binary")]
struct Args {
    /// The roomhost binary (default: `roomhost` next to this example's folder).
    #[arg(long)]
    server: Option<PathBuf>,
}

/// roomhost as a capped child process.
struct Server {
    child: std::sync::Mutex<Child>,
    pid: u32,
    url: String,
    addr: String,
    _dir: TempDir,
    log: PathBuf,
}

impl Server {
    fn start(bin: &PathBuf, llm_url: &str) -> Result<Server, String> {
        let dir = TempDir::new();
        dir.write("rooms/parallelization.yaml", &room("parallelization", ""));
        dir.write(
            "rooms/wide.yaml",
            &room("wide", &format!("    max_sections: {WIDE_SECTIONS}\n")),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.path.join("server.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let secs = |d: Duration| format!("{}s", d.as_secs());
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--addr", &addr, "--llm-url", llm_url, "--rooms-dir"])
            .arg(dir.path.join("rooms"))
            .args(["--header-timeout", &secs(HEADER_TIMEOUT)])
            .args(["--body-timeout", &secs(BODY_TIMEOUT)])
            .args(["--client-stall", &secs(CLIENT_STALL)])
            .args(["--max-connections", &MAX_CONNECTIONS.to_string()])
            .args(["--max-concurrency", &SLOTS.to_string()])
            .args(["--max-queue", &MAX_QUEUE.to_string()])
            // The default SQLite store, in the probe's own folder. A client that leaves cancels its
            // run at once: the probes check that everything is released when hostile clients go
            // (with the default grace, their runs hold their places up to 60 s).
            .arg("--database-url")
            .arg(format!(
                "sqlite://{}",
                dir.path.join("roomhost.db").display()
            ))
            .args(["--detached-grace", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for (resource, limit) in [(libc::RLIMIT_AS, AS_CAP), (libc::RLIMIT_NOFILE, NOFILE)]
                {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(resource, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Server {
            pid: child.id(),
            child: std::sync::Mutex::new(child),
            url: format!("http://{addr}"),
            addr,
            _dir: dir,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn alive(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.try_wait(), Ok(None))
    }

    /// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM, VmPeak).
    fn kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    fn rss_mib(&self) -> f64 {
        self.kib("VmRSS:") as f64 / 1024.0
    }

    /// Resets the peak RSS (VmHWM) so each probe reads its own.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn room(id: &str, extra: &str) -> String {
    format!(
        "id: {id}\nname: {id}\nagent:\n  kind: factory\n  factory_name: parallelization\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n    think: off\n{extra}"
    )
}

/// `/healthz` every 250 ms on one kept-alive connection: the slowest answer and every miss.
#[derive(Default)]
struct Poller {
    stop: AtomicBool,
    polls: AtomicUsize,
    misses: AtomicUsize,
    slowest_us: AtomicU64,
}

impl Poller {
    async fn run(self: Arc<Self>, url: String) {
        let client = reqwest::Client::builder()
            .timeout(HEALTH_LIMIT)
            .pool_max_idle_per_host(1)
            .build()
            .unwrap_or_default();
        while !self.stop.load(Ordering::SeqCst) {
            let start = Instant::now();
            let ok = matches!(client.get(&url).send().await, Ok(r) if r.status() == 200);
            let took = start.elapsed();
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.slowest_us
                .fetch_max(took.as_micros() as u64, Ordering::SeqCst);
            if !ok || took > HEALTH_LIMIT {
                self.misses.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(HEALTH_EVERY.saturating_sub(took)).await;
        }
    }
}

struct Ctx {
    server: Server,
    mock: MockLlm,
    http: reqwest::Client,
}

type Outcome = Result<String, String>;

impl Ctx {
    fn run_url(&self, room: &str) -> String {
        format!("{}/rooms/{room}/run", self.server.url)
    }

    async fn stats(&self) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("{}/stats", self.server.url))
            .send()
            .await
            .map_err(|e| format!("/stats: {e}"))?;
        resp.json().await.map_err(|e| format!("/stats: {e}"))
    }

    /// Waits for no run in flight and nothing held by the LLM limiter.
    async fn wait_idle(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.stats().await?;
            let llm = &s["llm"];
            if s["runs_in_flight"] == 0
                && llm["in_flight"] == 0
                && llm["queued"] == 0
                && llm["reserved"] == 0
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("/stats not back to zero: {s}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn mock_mode(&self, body: Value) -> Result<(), String> {
        self.http
            .post(format!("{}/_mock/mode", self.mock.url()))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("mock mode: {e}"))?;
        Ok(())
    }

    /// Posts to a server path, with a JSON body when given.
    async fn post_path(
        &self,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, String> {
        let mut req = self.http.post(format!("{}{path}", self.server.url));
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.map_err(|e| format!("POST {path}: {e}"))
    }

    async fn post(&self, room: &str, body: &Value) -> Result<reqwest::Response, String> {
        self.post_path(&format!("/rooms/{room}/run"), Some(body))
            .await
    }

    /// Posts a run that must be refused with `status` and the JSON error body.
    async fn refused(&self, room: &str, body: &Value, status: u16) -> Result<String, String> {
        let resp = self.post(room, body).await?;
        expect_refusal(resp, status).await
    }

    /// Runs to the end; returns the final event and the answer's text.
    async fn complete(&self, room: &str, body: &Value) -> Result<(Value, String), String> {
        let resp = self.post(room, body).await?;
        if resp.status() != 200 {
            let status = resp.status();
            return Err(format!(
                "HTTP {status}: {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        let events = SseReader::new(resp).read_to_end().await;
        harness::verify_agui(&events)?;
        let last = events.last().cloned().unwrap_or_default();
        if last["type"] != "RUN_FINISHED" {
            return Err(format!("run did not finish: {last}"));
        }
        let text = events
            .iter()
            .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT" && e.get("subagentRunId").is_none())
            .filter_map(|e| e["delta"].as_str())
            .collect();
        Ok((last, text))
    }
}

/// Checks a refusal: its status and `{"error":{"code","message"}}`; returns the code.
async fn expect_refusal(resp: reqwest::Response, status: u16) -> Result<String, String> {
    let got = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("HTTP {got} without a JSON body: {e}"))?;
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    if got != status || code.is_empty() || message.is_empty() {
        return Err(format!(
            "expected {status} with a JSON error, got {got}: {body}"
        ));
    }
    Ok(code.to_owned())
}

/// Checks a refusal on a soliplex route: its status and soliplex's `{"detail": "..."}`.
async fn expect_detail(resp: reqwest::Response, status: u16) -> Result<String, String> {
    let got = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("HTTP {got} without a JSON body: {e}"))?;
    match body["detail"].as_str() {
        Some(detail) if got == status && !detail.is_empty() => Ok("detail".to_owned()),
        _ => Err(format!(
            "expected {status} with a soliplex detail, got {got}: {body}"
        )),
    }
}

fn prompt(text: String, strategy: &str) -> Value {
    json!({"prompt": text, "forwardedProps": {"strategy": strategy}})
}

/// "Energy: s0,s1,..." with `n` sections.
fn sections(n: usize) -> String {
    let list: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    format!("Energy: {}", list.join(","))
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

async fn probe_sections_1mib(ctx: &Ctx) -> Outcome {
    // As many sections as fit a body just under the 1 MiB limit.
    let mut n = 100_000;
    while sections(n + 1000).len() < 1_040_000 {
        n += 1000;
    }
    let text = sections(n);
    let bytes = text.len();
    let code = ctx
        .refused("wide", &prompt(text, "sectioning"), 400)
        .await?;
    check(ctx.mock.request_count() == 0, || "LLM called".into())?;
    Ok(format!("{n} sections in {bytes} bytes -> 400 {code}"))
}

async fn probe_sections_500_5000(ctx: &Ctx) -> Outcome {
    let mut out = Vec::new();
    for n in [500, 5000] {
        let code = ctx
            .refused("wide", &prompt(sections(n), "sectioning"), 400)
            .await?;
        out.push(format!("{n} -> 400 {code}"));
    }
    check(ctx.mock.request_count() == 0, || "LLM called".into())?;
    Ok(out.join(", "))
}

async fn probe_map_reduce_braces(ctx: &Ctx) -> Outcome {
    let text = format!("Summarize: {}", "{text} ".repeat(99_400));
    let bytes = text.len();
    ctx.complete("parallelization", &prompt(text, "map_reduce"))
        .await?;
    let requests = ctx.mock.requests();
    let largest = requests
        .iter()
        .map(|r| r.messages.iter().map(|m| m.content.len()).sum::<usize>())
        .max()
        .unwrap_or(0);
    let maps = requests
        .iter()
        .filter(|r| r.last_user().is_some_and(|u| u.contains("{text} {text}")))
        .count();
    // Documented caps: at most 512 document parts a run, reduced in at most 3 collapse levels.
    check(maps > 0, || "no map prompt kept `{text}` verbatim".into())?;
    check(requests.len() <= 2 * 512, || {
        format!("{} calls past the caps", requests.len())
    })?;
    check(largest < 256 * 1024, || {
        format!("a {largest}-byte prompt: braces were expanded")
    })?;
    Ok(format!(
        "{bytes} bytes -> finished, {maps} map prompts with `{{text}}` verbatim, largest prompt {largest} bytes"
    ))
}

async fn probe_verbatim_sections(ctx: &Ctx) -> Outcome {
    let text = "About {sections}: Solar, Wind".to_owned();
    ctx.complete("parallelization", &json!({ "prompt": text }))
        .await?;
    let requests = ctx.mock.requests();
    let verbatim = requests
        .iter()
        .filter(|r| {
            r.messages
                .iter()
                .any(|m| m.content.contains("About {sections}"))
        })
        .count();
    check(requests.len() == 2, || {
        format!("{} calls for 2 sections", requests.len())
    })?;
    check(verbatim == 2, || {
        format!("{verbatim} of 2 prompts kept `About {{sections}}`")
    })?;
    Ok("2 writers, both prompts say `About {sections}`".into())
}

/// Opens a run on a raw socket and never reads it.
async fn stalled_reader(addr: &str, body: &Value) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    let body = body.to_string();
    let head = format!(
        "POST /rooms/parallelization/run HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    Ok(tcp)
}

async fn probe_stalled_readers(ctx: &Ctx) -> Outcome {
    // Long replies, so a never-read stream fills the socket buffers within a call.
    ctx.mock_mode(json!({"mode": "auto", "words": 20_000}))
        .await?;
    let body = json!({"prompt": "Energy: Solar, Wind, Hydro, Tides"});
    let start = Instant::now();
    ctx.complete("parallelization", &body).await?;
    let alone = start.elapsed();
    let mut stalled = Vec::new();
    for _ in 0..SLOTS {
        stalled.push(
            stalled_reader(&ctx.server.addr, &body)
                .await
                .map_err(|e| format!("stalled reader: {e}"))?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctx.mock.request_count() < 4 + SLOTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    ctx.complete("parallelization", &body).await?;
    let fifth = start.elapsed();
    ctx.wait_idle(CLIENT_STALL + Duration::from_secs(5)).await?;
    drop(stalled);
    ctx.mock_mode(json!({"mode": "auto"})).await?;
    check(fifth < CLIENT_STALL, || {
        format!("the fifth run took {fifth:?}: the stalled readers held the backend")
    })?;
    Ok(format!(
        "fifth user's run {:.0} ms under {SLOTS} stalled readers vs {:.0} ms alone (x{:.1}; 4 calls each, 20,000 words a call)",
        fifth.as_secs_f64() * 1e3,
        alone.as_secs_f64() * 1e3,
        fifth.as_secs_f64() / alone.as_secs_f64()
    ))
}

/// What became of a hostile connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Answered 503 `too_many_connections` at once (past `max_connections`).
    Refused,
    /// Answered with this status and a JSON error body, then closed.
    Answered(u16),
    /// Closed without an answer.
    Closed,
    /// Still open at the deadline.
    Open,
    /// Could not connect or answered something else.
    Broken,
}

/// Reads what the server sends until it closes, for at most `limit`.
async fn fate(tcp: &mut TcpStream, limit: Duration, on_data: bool) -> Fate {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if on_data && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    if buf.is_empty() {
        return if read.is_ok() {
            Fate::Closed
        } else {
            Fate::Open
        };
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let json_error = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<Value>(b.trim()).ok())
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    match (status, json_error.as_deref()) {
        (503, Some("too_many_connections")) => Fate::Refused,
        (s, Some(_)) if s >= 400 => Fate::Answered(s),
        _ => Fate::Broken,
    }
}

/// Connects; a connection past `max_connections` is refused (within 200 ms when it sends nothing).
async fn connect(addr: &str) -> Result<TcpStream, Fate> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|_| Fate::Broken)?;
    match fate(&mut tcp, Duration::from_millis(600), true).await {
        Fate::Open => Ok(tcp),
        other => Err(other),
    }
}

fn tally(fates: &[Fate]) -> String {
    let count = |f: fn(&Fate) -> bool| fates.iter().filter(|x| f(x)).count();
    format!(
        "{} refused 503 at connect, {} answered 4xx, {} closed, {} still open, {} broken",
        count(|f| *f == Fate::Refused),
        count(|f| matches!(f, Fate::Answered(_))),
        count(|f| *f == Fate::Closed),
        count(|f| *f == Fate::Open),
        count(|f| *f == Fate::Broken),
    )
}

async fn probe_slowloris(ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    let limit = HEADER_TIMEOUT + Duration::from_secs(3);
    let tasks: Vec<_> = (0..400)
        .map(|_| {
            let addr = ctx.server.addr.clone();
            tokio::spawn(async move {
                let mut tcp = match connect(&addr).await {
                    Ok(tcp) => tcp,
                    Err(fate) => return fate,
                };
                let head = b"POST /rooms/parallelization/run HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                if tcp.write_all(head).await.is_err() {
                    return Fate::Closed;
                }
                // One byte a second until the server closes it.
                let end = Instant::now() + limit;
                while Instant::now() < end {
                    match fate(&mut tcp, Duration::from_secs(1), false).await {
                        Fate::Open => {}
                        other => return other,
                    }
                    if tcp.write_all(b"a").await.is_err() {
                        return Fate::Closed;
                    }
                }
                Fate::Open
            })
        })
        .collect();
    let fates: Vec<Fate> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(Fate::Broken))
        .collect();
    let bad = fates
        .iter()
        .filter(|f| matches!(f, Fate::Open | Fate::Broken))
        .count();
    check(bad == 0, || format!("400 slowloris: {}", tally(&fates)))?;
    Ok(format!(
        "400 slowloris: {} (all gone in {:.1} s)",
        tally(&fates),
        start.elapsed().as_secs_f64()
    ))
}

async fn probe_stalled_uploads(ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    let sent: Arc<Vec<u8>> = Arc::new(vec![b'a'; 1_000_000]);
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let addr = ctx.server.addr.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut tcp = match connect(&addr).await {
                    Ok(tcp) => tcp,
                    Err(fate) => return fate,
                };
                let head = b"POST /rooms/parallelization/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1040000\r\n\r\n{\"prompt\":\"";
                if tcp.write_all(head).await.is_err() || tcp.write_all(&sent).await.is_err() {
                    return fate(&mut tcp, Duration::from_secs(1), true).await;
                }
                fate(&mut tcp, BODY_TIMEOUT + Duration::from_secs(5), true).await
            })
        })
        .collect();
    let fates: Vec<Fate> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(Fate::Broken))
        .collect();
    let ok = fates
        .iter()
        .all(|f| matches!(f, Fate::Refused | Fate::Answered(408)));
    check(ok, || format!("300 stalled uploads: {}", tally(&fates)))?;
    Ok(format!(
        "300 uploads stalled after 1 MB: {} (408 body_timeout; done in {:.1} s)",
        tally(&fates),
        start.elapsed().as_secs_f64()
    ))
}

async fn probe_idle_sockets(ctx: &Ctx) -> Outcome {
    let mut open = Vec::new();
    let mut refused = Vec::new();
    let connects = (0..300).map(|_| async move { connect(&ctx.server.addr).await });
    for c in futures::future::join_all(connects).await {
        match c {
            Ok(tcp) => open.push(tcp),
            Err(fate) => refused.push(fate),
        }
    }
    let files = ctx.server.open_files();
    // A new client while full is refused cleanly; the poller's open connection keeps working.
    let fresh = reqwest::Client::builder()
        .timeout(HEALTH_LIMIT)
        .build()
        .unwrap_or_default();
    let health = format!("{}/healthz", ctx.server.url);
    let while_full = match fresh.get(&health).send().await {
        Ok(resp) if resp.status() == 200 => "200".to_owned(),
        Ok(resp) => format!(
            "{} {}",
            resp.status().as_u16(),
            expect_refusal(resp, 503).await?
        ),
        Err(e) => return Err(format!("a new /healthz while full: {e:?}")),
    };
    check(refused.iter().all(|f| *f == Fate::Refused), || {
        format!("idle sockets past the limit: {}", tally(&refused))
    })?;
    // The header timeout closes every idle one.
    let waits = open
        .iter_mut()
        .map(|tcp| fate(tcp, HEADER_TIMEOUT + Duration::from_secs(3), true));
    let fates = futures::future::join_all(waits).await;
    check(fates.iter().all(|f| *f == Fate::Closed), || {
        format!(
            "{} idle sockets, {files} open files, after the header timeout: {}",
            open.len(),
            tally(&fates)
        )
    })?;
    let after = fresh
        .get(&health)
        .send()
        .await
        .map_err(|e| format!("/healthz after: {e}"))?;
    check(after.status() == 200, || {
        format!("/healthz after: {}", after.status())
    })?;
    Ok(format!(
        "300 idle sockets: {} held ({} open files of {NOFILE}), {} refused 503; a new /healthz meanwhile: {while_full}; idle ones closed by the header timeout, then /healthz 200",
        open.len(),
        files,
        refused.len()
    ))
}

async fn probe_overload(ctx: &Ctx) -> Outcome {
    ctx.mock_mode(json!({"mode": "hang"})).await?;
    let body = prompt(sections(WIDE_SECTIONS), "sectioning");
    let mut admitted = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..20 {
        let resp = ctx.post("wide", &body).await?;
        if resp.status() == 200 {
            admitted.push(SseReader::new(resp));
            continue;
        }
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let code = expect_refusal(resp, 429).await?;
        let retry = retry.ok_or("429 without a Retry-After in seconds")?;
        check((1..=60).contains(&retry), || format!("Retry-After {retry}"))?;
        refusals.push((code, retry));
    }
    // Another user's small run is refused too, before any stream.
    let voting = prompt("Is Rust or Go better?".into(), "voting");
    let other = ctx.refused("parallelization", &voting, 429).await?;
    // The issue's 40-section request is over the room's cap.
    let forty = ctx
        .refused("wide", &prompt(sections(40), "sectioning"), 400)
        .await?;
    // Admitted runs are not half-failed: nothing but progress while the backend hangs.
    let mut errors = 0;
    for reader in &mut admitted {
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            while let Some(e) = reader.next_event().await {
                if e["type"] == "RUN_ERROR" {
                    errors += 1;
                    return;
                }
            }
        })
        .await;
    }
    let in_flight = ctx.mock.in_flight();
    let stats = ctx.stats().await?;
    drop(admitted);
    ctx.wait_idle(Duration::from_secs(5)).await?;
    ctx.mock_mode(json!({"mode": "auto"})).await?;
    let expected = (SLOTS + MAX_QUEUE) / WIDE_SECTIONS;
    let n = refusals.len();
    check(n == 20 - expected, || {
        format!("{n} of 20 refused, expected {}", 20 - expected)
    })?;
    check(errors == 0, || format!("{errors} admitted runs failed"))?;
    check(in_flight <= SLOTS, || {
        format!("{in_flight} calls in flight")
    })?;
    let retry = refusals.first().map_or(0, |r| r.1);
    Ok(format!(
        "hung backend, {WIDE_SECTIONS}-section runs: {} admitted (none failed; {in_flight} calls in flight, {} reserved), {n} refused 429 {} Retry-After {retry} s; a voting run: 429 {other}; 40 sections: 400 {forty}",
        20 - n,
        stats["llm"]["reserved"],
        refusals.first().map_or("", |r| r.0.as_str()),
    ))
}

async fn probe_ids(ctx: &Ctx) -> Outcome {
    let run = |thread: &str, run: &str| json!({"threadId": thread, "runId": run, "prompt": "Hi?"});
    let long = ctx
        .refused("parallelization", &run(&"a".repeat(200), "r1"), 400)
        .await?;
    let control = ctx
        .refused(
            "parallelization",
            &run("t1", "r\n2026-01-01T00:00:00Z INFO forged\x1b[31m"),
            400,
        )
        .await?;
    let resp = ctx
        .post_path("/api/v1/rooms/parallelization/agui/not-a-uuid", None)
        .await?;
    let not_uuid = expect_detail(resp, 400).await?;
    check(ctx.mock.request_count() == 0, || "LLM called".into())?;
    Ok(format!(
        "200-char thread id -> 400 {long}; run id with newline and ANSI -> 400 {control}; soliplex non-UUID thread -> 400 {not_uuid}"
    ))
}

async fn probe_cross_room_thread(ctx: &Ctx) -> Outcome {
    let base = "/api/v1/rooms";
    let made: Value = ctx
        .post_path(&format!("{base}/parallelization/agui"), None)
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let thread = made["thread_id"].as_str().ok_or("no thread_id")?;
    let resp = ctx
        .post_path(&format!("{base}/wide/agui/{thread}"), None)
        .await?;
    let code = expect_detail(resp, 404).await?;
    let run = made["run_id"].as_str().ok_or("no run_id")?;
    let resp = ctx
        .post_path(
            &format!("{base}/wide/agui/{thread}/{run}"),
            Some(&json!({"prompt": "Hi?"})),
        )
        .await?;
    let run_code = expect_detail(resp, 404).await?;
    check(ctx.mock.request_count() == 0, || "LLM called".into())?;
    Ok(format!(
        "room A's thread via room B: new run 404 {code}, its run 404 {run_code}"
    ))
}

/// 400 turns of a 6 KB message sent alone into one thread (as `curl` would): the thread takes 100
/// runs and refuses the rest; each run keeps only its message, and three reads of the thread at
/// once stay small.
async fn probe_long_thread(ctx: &Ctx) -> Outcome {
    let thread = uuid::Uuid::new_v4().to_string();
    let message = format!("Is tea or coffee better? {}", "context ".repeat(750));
    let (mut ran, mut refused) = (0, 0);
    for i in 0..400 {
        let mut body = prompt(format!("{i} {message}"), "voting");
        body["threadId"] = json!(thread);
        let resp = ctx.post("parallelization", &body).await?;
        if resp.status() == 409 {
            check(expect_refusal(resp, 409).await? == "too_many_runs", || {
                "a run past the cap not refused as too_many_runs".into()
            })?;
            refused += 1;
            continue;
        }
        check(resp.status() == 200, || {
            format!("turn {i}: HTTP {}", resp.status())
        })?;
        SseReader::new(resp).read_to_end().await;
        ran += 1;
    }
    check(ran == 100 && refused == 300, || {
        format!("{ran} ran, {refused} refused: the thread cap is 100 runs")
    })?;
    let path = format!(
        "{}/api/v1/rooms/parallelization/agui/{thread}",
        ctx.server.url
    );
    let reads = (0..3).map(|_| async {
        let resp = ctx
            .http
            .get(&path)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        check(resp.status() == 200, || {
            format!("thread read: HTTP {}", resp.status())
        })?;
        resp.bytes()
            .await
            .map(|b| b.len())
            .map_err(|e| e.to_string())
    });
    let sizes = futures::future::join_all(reads)
        .await
        .into_iter()
        .collect::<Result<Vec<usize>, String>>()?;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    check(largest < 8 << 20, || {
        format!("a thread read of {largest} bytes")
    })?;
    Ok(format!(
        "400 turns of a 6 KB message: {ran} ran, {refused} refused 409; three thread reads at once of {:.2} MiB each",
        largest as f64 / f64::from(1 << 20)
    ))
}

async fn probe_long_run_ids(ctx: &Ctx) -> Outcome {
    let before = ctx.server.rss_mib();
    let id = "r".repeat(60_000);
    for chunk in 0..100 {
        let posts = (0..10).map(|i| {
            let body = json!({"threadId": format!("t{chunk}-{i}"), "runId": id, "prompt": "Hi?"});
            async move { ctx.refused("parallelization", &body, 400).await }
        });
        for r in futures::future::join_all(posts).await {
            r?;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ctx.server.rss_mib();
    check(after - before < 16.0, || {
        format!("RSS grew {:.1} MiB", after - before)
    })?;
    Ok(format!(
        "1,000 runs with 60 KB ids -> 400 each; RSS {before:.1} -> {after:.1} MiB 2 s later"
    ))
}

async fn probe_long_instructions(ctx: &Ctx) -> Outcome {
    let big = "word ".repeat(200_000);
    let voting = ctx
        .refused(
            "parallelization",
            &prompt(format!("Is this {big}better?"), "voting"),
            400,
        )
        .await?;
    let sectioning = ctx
        .refused(
            "parallelization",
            &prompt(format!("Write about {big}"), "sectioning"),
            400,
        )
        .await?;
    check(ctx.mock.request_count() == 0, || "LLM called".into())?;
    Ok(format!(
        "1 MB voting question vs num_ctx 8192 -> 400 {voting}; 1 MB sectioning topic -> 400 {sectioning}"
    ))
}

async fn probe_gzip(ctx: &Ctx) -> Outcome {
    // A gzip header and deflate bytes: the server must refuse the encoding, not parse it.
    let body = vec![
        0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0xab, 0xae, 0x05, 0x00,
    ];
    let resp = ctx
        .http
        .post(ctx.run_url("parallelization"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = expect_refusal(resp, 415).await?;
    Ok(format!("gzip body -> 415 {code}"))
}

async fn probe_bursts(ctx: &Ctx) -> Outcome {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = ctx.server.rss_mib();
    let body = json!({"prompt": "Energy: Solar, Wind, Hydro, Tides"});
    // 60 runs of 4 calls: 240 places, within the 260 the limiter has.
    for _ in 0..3 {
        let runs = (0..60).map(|_| ctx.complete("parallelization", &body));
        for r in futures::future::join_all(runs).await {
            r?;
        }
        ctx.wait_idle(Duration::from_secs(5)).await?;
    }
    let peak = ctx.server.kib("VmHWM:") as f64 / 1024.0;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = ctx.server.rss_mib();
    let calls = ctx.mock.request_count();
    check(calls == 3 * 60 * 4, || format!("{calls} calls"))?;
    check(after - idle < 32.0, || {
        format!("RSS {idle:.1} -> {after:.1} MiB 5 s after the bursts")
    })?;
    Ok(format!(
        "three bursts of 60 four-section runs: RSS idle {idle:.1} MiB, peak {peak:.1}, 5 s after {after:.1}"
    ))
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Runs one probe and its common checks; prints its line.
async fn probe(ctx: &Ctx, tally: &mut Tally, name: &str, f: impl Future<Output = Outcome>) {
    ctx.mock.reset_stats();
    ctx.server.reset_peak();
    let start = Instant::now();
    let mut outcome = f.await;
    let calls = ctx.mock.request_count();
    let peak = ctx.server.kib("VmHWM:") as f64 / 1024.0;
    if outcome.is_ok() {
        if let Err(e) = ctx.wait_idle(Duration::from_secs(10)).await {
            outcome = Err(e);
        }
    }
    if !ctx.server.alive() {
        outcome = Err(format!("the server died:\n{}", ctx.server.log_tail()));
    }
    let figures = format!(
        "calls {calls}, peak RSS {peak:.1} MiB, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    match outcome {
        Ok(line) => {
            tally.passed += 1;
            println!("PASS {name}: {line}; {figures}");
        }
        Err(e) => {
            tally.failed += 1;
            println!("FAIL {name}: {e}; {figures}");
        }
    }
}

async fn suite(bin: PathBuf) -> Result<Tally, String> {
    let mock = MockLlm::start_on(0)
        .await
        .map_err(|e| format!("mock LLM: {e}"))?;
    let server = Server::start(&bin, &mock.url())?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let health = format!("{}/healthz", server.url);
    let started = Instant::now();
    while !matches!(http.get(&health).send().await, Ok(r) if r.status() == 200) {
        if !server.alive() || started.elapsed() > Duration::from_secs(20) {
            return Err(format!("the server did not start:\n{}", server.log_tail()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "roomhost {} (pid {}) under RLIMIT_AS {} MiB and RLIMIT_NOFILE {NOFILE}; {SLOTS} slots, queue {MAX_QUEUE}, max_connections {MAX_CONNECTIONS}, header/body timeout and client stall {} s; idle RSS {:.1} MiB, address space {:.0} MiB",
        bin.display(),
        server.pid(),
        AS_CAP >> 20,
        HEADER_TIMEOUT.as_secs(),
        server.rss_mib(),
        server.kib("VmSize:") as f64 / 1024.0,
    );
    let poller = Arc::new(Poller::default());
    let polling = tokio::spawn(poller.clone().run(health));
    let ctx = Ctx { server, mock, http };
    let mut tally = Tally::default();
    let t = &mut tally;
    probe(
        &ctx,
        t,
        "1 MiB sectioning prompt",
        probe_sections_1mib(&ctx),
    )
    .await;
    probe(
        &ctx,
        t,
        "500 and 5,000 sections",
        probe_sections_500_5000(&ctx),
    )
    .await;
    probe(
        &ctx,
        t,
        "696 KB map-reduce of {text}",
        probe_map_reduce_braces(&ctx),
    )
    .await;
    probe(
        &ctx,
        t,
        "About {sections} verbatim",
        probe_verbatim_sections(&ctx),
    )
    .await;
    probe(&ctx, t, "four stalled readers", probe_stalled_readers(&ctx)).await;
    probe(&ctx, t, "400 slowloris", probe_slowloris(&ctx)).await;
    probe(&ctx, t, "300 stalled uploads", probe_stalled_uploads(&ctx)).await;
    probe(&ctx, t, "300 idle sockets", probe_idle_sockets(&ctx)).await;
    probe(&ctx, t, "overload, hung backend", probe_overload(&ctx)).await;
    probe(&ctx, t, "bad ids", probe_ids(&ctx)).await;
    probe(
        &ctx,
        t,
        "thread across rooms",
        probe_cross_room_thread(&ctx),
    )
    .await;
    probe(&ctx, t, "1,000 60 KB run ids", probe_long_run_ids(&ctx)).await;
    probe(&ctx, t, "a 400-turn thread", probe_long_thread(&ctx)).await;
    probe(&ctx, t, "1 MB instructions", probe_long_instructions(&ctx)).await;
    probe(&ctx, t, "gzip body", probe_gzip(&ctx)).await;
    probe(&ctx, t, "three bursts", probe_bursts(&ctx)).await;
    poller.stop.store(true, Ordering::SeqCst);
    let _ = polling.await;
    let (polls, misses) = (
        poller.polls.load(Ordering::SeqCst),
        poller.misses.load(Ordering::SeqCst),
    );
    let slowest = poller.slowest_us.load(Ordering::SeqCst) as f64 / 1e3;
    let line = format!(
        "/healthz every 250 ms: {polls} polls, {misses} missed or over 1 s, slowest {slowest:.1} ms; server alive, address space peak {:.0} MiB of {}",
        ctx.server.kib("VmPeak:") as f64 / 1024.0,
        AS_CAP >> 20
    );
    if misses == 0 && polls > 0 && ctx.server.alive() {
        tally.passed += 1;
        println!("PASS health throughout: {line}");
    } else {
        tally.failed += 1;
        println!("FAIL health throughout: {line}");
    }
    Ok(tally)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Hundreds of hostile sockets on this side too.
    let _ = roomhost::server::raise_nofile_limit();
    let bin = args.server.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("roomhost")))
            .unwrap_or_else(|| PathBuf::from("target/release/roomhost"))
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("abuse: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    match runtime.block_on(suite(bin)) {
        Ok(t) => {
            println!(
                "{} passed, {} failed ({:.0} s)",
                t.passed,
                t.failed,
                started.elapsed().as_secs_f64()
            );
            if t.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("abuse: {e}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}
