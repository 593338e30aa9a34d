//! roomhost in a child process: the benchmark's own executable started with `--serve`, so the
//! memory and CPU figures are the server's alone, not the load generator's or the mock's.
//! The child prints its URL, answers `usage` on stdin with one JSON line, and exits at EOF.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use roomhost::agents::Registry;
use roomhost::config::Settings;
use roomhost::App;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::harness::TempDir;
use crate::system::Usage;
use crate::BenchError;
use roomhost::server::raise_nofile_limit;

pub const SERVE_FLAG: &str = "--serve";
const START_LIMIT: Duration = Duration::from_secs(20);

pub struct ServerProc {
    pub url: String,
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _dir: TempDir,
}

/// A room of the parallelization agent answering from the mock, with `extra` config lines.
pub fn room(id: &str, extra: &str) -> String {
    format!(
        "id: {id}\nname: {id}\nagent:\n  kind: factory\n  factory_name: parallelization\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n    think: off\n{extra}"
    )
}

impl ServerProc {
    /// Starts a child serving `rooms` with `settings` (its `rooms_dir` and `addr` are set here).
    pub async fn start(mut settings: Settings, rooms: &[String]) -> Result<ServerProc, BenchError> {
        let dir = TempDir::new();
        let rooms_dir = dir.path.join("rooms");
        for (i, yaml) in rooms.iter().enumerate() {
            dir.write(&format!("rooms/room_{i}.yaml"), yaml);
        }
        settings.rooms_dir = rooms_dir;
        settings.addr = ([127, 0, 0, 1], 0).into();
        let yaml = serde_yaml::to_string(&settings)
            .map_err(|e| BenchError::Server(format!("cannot write its settings: {e}")))?;
        let config = dir.write("settings.yaml", &yaml);

        let mut child = Command::new(std::env::current_exe()?)
            .arg(SERVE_FLAG)
            .arg(&config)
            .env("RUST_LOG", "off")
            // A row lasts seconds: spans go out every 200 ms rather than the default 5 s, so the
            // traced rows pay for their exports within the row.
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BenchError::Server("no pipes to the child".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_LIMIT, lines.next_line())
            .await
            .map_err(|_| BenchError::Server("did not start within 20 s".into()))??;
        let url = first
            .as_deref()
            .and_then(|l| l.strip_prefix("listening "))
            .ok_or_else(|| BenchError::Server(format!("did not start: {first:?}")))?
            .to_owned();
        Ok(ServerProc {
            url,
            _child: child,
            stdin,
            lines,
            _dir: dir,
        })
    }

    pub fn run_url(&self, room: &str) -> String {
        format!("{}/rooms/{room}/run", self.url)
    }

    /// The child's memory and CPU time, as it reads them itself.
    pub async fn usage(&mut self) -> Result<Usage, BenchError> {
        self.stdin.write_all(b"usage\n").await?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| BenchError::Server("exited".into()))?;
        serde_json::from_str(&line)
            .map_err(|e| BenchError::Server(format!("bad usage line {line:?}: {e}")))
    }

    /// `GET /stats`: runs in flight and the LLM limiter's load.
    pub async fn stats(&self, client: &reqwest::Client) -> Result<Value, BenchError> {
        Ok(client
            .get(format!("{}/stats", self.url))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Polls `/stats` until `done` holds for it, for at most `limit`; returns the last stats.
    pub async fn wait_for(
        &self,
        client: &reqwest::Client,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<(bool, Value), BenchError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = self.stats(client).await?;
            if done(&stats) {
                return Ok((true, stats));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok((false, stats));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no run is in flight and the LLM limiter holds no call.
    pub async fn wait_idle(
        &self,
        client: &reqwest::Client,
        limit: Duration,
    ) -> Result<(bool, Value), BenchError> {
        self.wait_for(client, limit, |s| {
            s["runs_in_flight"] == 0 && s["llm"]["in_flight"] == 0 && s["llm"]["queued"] == 0
        })
        .await
    }
}

/// The child's side: serve until stdin closes.
pub fn serve_child(config: &Path) -> ExitCode {
    let _ = raise_nofile_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench server: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Path) -> Result<(), BenchError> {
    // Reading the file checks it.
    let settings = Settings::from_file(config).map_err(|e| BenchError::Server(e.to_string()))?;
    // The server's subscriber: traces when the settings ask for them; no log lines (`RUST_LOG`
    // is `off` here: stdout is the parent's channel), as before traces, so rows stay comparable.
    let (subscriber, _traces) = roomhost::telemetry::subscriber(&settings, std::io::sink, false)
        .map_err(|e| BenchError::Server(e.to_string()))?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| BenchError::Server(e.to_string()))?;
    let app = App::open(settings, &Registry::builtin())
        .await
        .map_err(|e| BenchError::Server(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(app.settings.addr).await?;
    println!("listening http://{}", listener.local_addr()?);
    tokio::spawn(answer_usage());
    roomhost::server::serve(listener, app, std::future::pending()).await?;
    Ok(())
}

/// Answers `usage` lines; the parent closing stdin (or dying) ends the process.
async fn answer_usage() {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "usage" {
            match Usage::now() {
                Ok(usage) => println!("{}", serde_json::json!(usage)),
                Err(e) => println!("{{\"error\": \"{e}\"}}"),
            }
        }
    }
    std::process::exit(0);
}
