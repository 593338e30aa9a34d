//! The real binary as a user runs it: start-up errors on stderr with a failing exit code, and
//! SIGTERM draining running streams before the process exits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{types_of, verify_agui, SseReader, TempDir, TestServer};
use crate::support::mock_llm::MockLlm;
use serde_json::json;

pub const ROOM: &str = include_str!("../../rooms/parallelization/room_config.yaml");

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The roomhost binary with a clean environment of settings (and an in-memory store unless a
/// test sets `ROOMHOST_DATABASE_URL`).
pub fn roomhost(rooms_dir: &std::path::Path, llm_url: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomhost"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("ROOMHOST_ROOMS_DIR", rooms_dir)
        .env("OLLAMA_BASE_URL", llm_url)
        .env("ROOMHOST_ADDR", format!("127.0.0.1:{port}"))
        .env("ROOMHOST_DATABASE_URL", "sqlite::memory:")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exit status of a process told to stop, within `limit`.
pub async fn wait_exit(child: &mut Running, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            return exit;
        }
        assert!(
            Instant::now() < deadline,
            "roomhost did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(resp) = TestServer::client()
            .get(format!("{url}/healthz"))
            .send()
            .await
        {
            if resp.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "roomhost did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_bad_room_stops_start_up_with_a_message_naming_file_and_field() {
    let dir = TempDir::new();
    dir.write(
        "broken/room_config.yaml",
        &ROOM.replace("num_voters: 3", "num_voters: 0"),
    );
    let out = roomhost(&dir.path, "http://127.0.0.1:9", free_port())
        .output()
        .expect("run roomhost");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "broken/room_config.yaml",
        "agent.extra_config.num_voters",
        "out of range",
    ] {
        assert!(stderr.contains(part), "stderr {stderr:?} lacks {part:?}");
    }
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", ROOM);
    let out = roomhost(&dir.path, "http://127.0.0.1:9", free_port())
        .env("ROOMHOST_MAX_CONCURRENCY", "many")
        .output()
        .expect("run roomhost");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ROOMHOST_MAX_CONCURRENCY") && stderr.contains("'many'"),
        "{stderr}"
    );
}

#[test]
fn a_start_that_fails_on_a_missing_rooms_folder_leaves_no_database_file() {
    let dir = TempDir::new();
    let db = dir.path.join("roomhost.db");
    let out = roomhost(
        &dir.path.join("no-rooms-here"),
        "http://127.0.0.1:9",
        free_port(),
    )
    .env(
        "ROOMHOST_DATABASE_URL",
        format!("sqlite://{}", db.display()),
    )
    .output()
    .expect("run roomhost");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-rooms-here"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir.path)
        .expect("read the temp dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert!(left.is_empty(), "a failed start left {left:?} behind");
}

/// Logs written to a pipe or file are plain text, and an unreachable LLM gets one warning naming
/// its URL and the variable that changes it.
#[test]
fn without_an_llm_start_up_warns_once_naming_the_url_and_variable_in_plain_text() {
    use std::io::BufRead;
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", ROOM);
    let child = roomhost(&dir.path, "http://127.0.0.1:9", free_port())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn roomhost");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout piped");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a log line");
        let done = line.contains("does not answer");
        lines.push(line);
        if done {
            break;
        }
    }
    let warning = lines.last().expect("log lines");
    for part in [
        "WARN",
        "http://127.0.0.1:9",
        "OLLAMA_BASE_URL",
        "--example demo",
    ] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
    let all = lines.join("\n");
    assert!(
        lines.len() > 1 && !all.contains('\u{1b}'),
        "colour codes in a pipe: {all:?}"
    );
}

#[tokio::test]
async fn sigterm_ends_running_streams_with_a_final_event_then_exits() {
    let mock = MockLlm::start().await;
    // Long enough that the run is still going when the grace period ends.
    mock.set_timing(Duration::ZERO, Duration::from_millis(40));
    mock.set_words(400);
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", ROOM);
    let port = free_port();
    let child = roomhost(&dir.path, &mock.url(), port)
        .env("ROOMHOST_SHUTDOWN_GRACE_SECS", "0.5")
        .spawn()
        .expect("spawn roomhost");
    let mut child = Running(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url).await;

    let resp = TestServer::client()
        .post(format!("{url}/rooms/parallelization/run"))
        .json(&json!({"prompt": "Write about energy: Solar, Wind, Hydro"}))
        .send()
        .await
        .expect("run starts");
    let mut reader = SseReader::new(resp);
    let mut events = reader.read_until("TEXT_MESSAGE_CONTENT").await;

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());

    events.extend(reader.read_to_end().await);
    verify_agui(&events).unwrap_or_else(|e| panic!("{e}: {:?}", types_of(&events)));
    let last = events.last().expect("events");
    assert_eq!(last["type"], "RUN_ERROR");
    assert_eq!(last["code"], "shutdown");

    let exit = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(exit.success(), "exit status {exit}");
    // The drained run's LLM calls were dropped with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} LLM calls still open",
            mock.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
