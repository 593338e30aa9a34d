//! The store under faults, with the real binary: killed with SIGKILL mid-runs and restarted on
//! the same SQLite file; two processes sharing one PostgreSQL, a run resumed on the other; the
//! database stopping mid-run. The PostgreSQL tests run when `ROOMHOST_TEST_DATABASE_URL` names a
//! server (`.ci/run` starts one with `scripts/with-postgres.sh`).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::process_lifecycle::{free_port, roomhost, wait_healthy, Running, ROOM};
use crate::store::postgres;
use crate::support::harness::{SseReader, TempDir, TestServer};
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply};

const PATH: &str = "/rooms/parallelization";
const VOTE: &str = "Which is better: Python or JavaScript?";

/// A roomhost process on `database_url`, healthy; enough LLM slots for every call at once.
async fn start(dir: &TempDir, mock: &MockLlm, database_url: &str) -> (Running, String) {
    let port = free_port();
    let child = roomhost(&dir.path, &mock.url(), port)
        .env("ROOMHOST_DATABASE_URL", database_url)
        .env("ROOMHOST_MAX_CONCURRENCY", "200")
        // A killed process's runs are taken up a second after its last heartbeat.
        .env("ROOMHOST_LEASE", "1s")
        .env("ROOMHOST_HEARTBEAT", "200ms")
        .spawn()
        .expect("spawn roomhost");
    let url = format!("http://127.0.0.1:{port}");
    let running = Running(child);
    wait_healthy(&url).await;
    (running, url)
}

fn rooms() -> TempDir {
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", ROOM);
    dir
}

async fn get(url: &str) -> (u16, Value) {
    let resp = TestServer::client().get(url).send().await.expect("GET");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// The run at `url` once it is no longer `running`: its owner's lease has to expire first.
async fn settled(url: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, run) = get(url).await;
        assert_eq!(status, 200, "{url}");
        if run["status"] != "running" {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "{url} still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn store_faults_sigkill_during_50_runs_keeps_finished_runs_and_interrupts_the_rest() {
    let mock = MockLlm::start().await;
    // Prompts with "slow" never finish; the others answer at once.
    mock.respond_with(|req| {
        if req.messages.iter().any(|m| m.content.contains("slow")) {
            MockReply::new().text("a few words").hang()
        } else {
            auto_reply(req, 4)
        }
    });
    let dir = rooms();
    let db = dir.path.join("rh.db");
    let database_url = format!("sqlite://{}", db.display());
    let (mut child, url) = start(&dir, &mock, &database_url).await;

    let mut open = Vec::new();
    for i in 0..50 {
        let slow = if i % 2 == 0 { "slow " } else { "" };
        let body = json!({"threadId": format!("t{i}"), "runId": format!("r{i}"),
            "prompt": format!("{slow}{VOTE}"), "forwardedProps": {"strategy": "voting"},
            "protocolVersion": "1.0"});
        let resp = TestServer::client()
            .post(format!("{url}{PATH}/run"))
            .json(&body)
            .send()
            .await
            .expect("run starts");
        assert_eq!(resp.status().as_u16(), 200);
        open.push(SseReader::new(resp));
    }
    // The quick half finish; the slow half have started streaming.
    for (i, reader) in open.iter_mut().enumerate() {
        if i % 2 == 1 {
            let events = reader.read_to_end().await;
            assert_eq!(
                events.last().unwrap()["type"],
                "RUN_FINISHED",
                "{:?}",
                events.last()
            );
        } else {
            reader.read_until("TEXT_MESSAGE_CONTENT").await;
        }
    }
    // Past the writer's batching, so the finished runs are on disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = Command::new("kill")
        .args(["-KILL", &child.0.id().to_string()])
        .status();
    assert!(kill.expect("kill runs").success());
    let _ = child.0.wait();
    drop(open);

    let (_again, url) = start(&dir, &mock, &database_url).await;
    for i in 0..50 {
        let run = settled(&format!("{url}{PATH}/runs/r{i}")).await;
        let want = if i % 2 == 0 {
            "interrupted"
        } else {
            "finished"
        };
        assert_eq!(run["status"], want, "run r{i}");
        let (status, thread) = get(&format!("{url}{PATH}/threads/t{i}")).await;
        assert_eq!(
            (status, thread["runs"].as_array().map(Vec::len)),
            (200, Some(1))
        );
    }
    let resp = TestServer::client()
        .get(format!("{url}{PATH}/runs/r1/events"))
        .send()
        .await
        .unwrap();
    let replay = SseReader::new(resp).read_to_end().await;
    assert_eq!(replay.last().unwrap()["type"], "RUN_FINISHED");

    let mut conn = sqlx::SqliteConnection::connect(&database_url)
        .await
        .expect("open the file");
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test]
async fn store_faults_two_replicas_on_postgres_a_run_resumes_on_the_other() {
    let Some(database_url) = postgres().await else {
        eprintln!("skipped: ROOMHOST_TEST_DATABASE_URL is not set");
        return;
    };
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(5), Duration::from_millis(15));
    let dir = rooms();
    let (_a, url_a) = start(&dir, &mock, &database_url).await;
    let (_b, url_b) = start(&dir, &mock, &database_url).await;
    let body = json!({"runId": "two", "prompt": VOTE, "forwardedProps": {"strategy": "voting"}});
    let resp = TestServer::client()
        .post(format!("{url_a}{PATH}/run"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(resp);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = reader.next_event().await.expect("an event");
        seen.push((reader.last_id.clone().unwrap(), event));
    }
    drop(reader);
    let resp = TestServer::client()
        .get(format!("{url_b}{PATH}/runs/two/events"))
        .header("Last-Event-ID", seen.last().unwrap().0.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    seen.extend(SseReader::new(resp).read_to_end_with_ids().await);
    assert_eq!(seen.last().unwrap().1["type"], "RUN_FINISHED");
    for (i, (id, _)) in seen.iter().enumerate() {
        assert_eq!(id, &format!("two:{i}"), "every event once, in order");
    }
}

/// Runs `pg_ctl` on the test cluster as the postgres user.
fn pg_ctl(args: &str) -> bool {
    let (Ok(ctl), Ok(data), Ok(log), Ok(opts)) = (
        std::env::var("PG_CTL"),
        std::env::var("PG_DATA"),
        std::env::var("PG_LOG"),
        std::env::var("PG_START_OPTS"),
    ) else {
        return false;
    };
    let cmd = format!("{ctl} -D {data} -l {log} -w {args} -o '{opts}'");
    Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", &cmd])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn store_faults_postgres_stopping_mid_run_keeps_the_stream_and_writes_resume() {
    let Some(database_url) = postgres().await else {
        eprintln!("skipped: ROOMHOST_TEST_DATABASE_URL is not set");
        return;
    };
    if std::env::var("PG_CTL").is_err() {
        eprintln!("skipped: no cluster of ours to stop (PG_CTL)");
        return;
    }
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(5), Duration::from_millis(30));
    mock.set_words(60);
    let dir = rooms();
    let (_a, url) = start(&dir, &mock, &database_url).await;
    let body = json!({"runId": "down", "prompt": VOTE, "forwardedProps": {"strategy": "voting"}});
    let resp = TestServer::client()
        .post(format!("{url}{PATH}/run"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(resp);
    reader.read_until("TEXT_MESSAGE_CONTENT").await;
    assert!(pg_ctl("-m immediate stop"), "PostgreSQL stops");
    let rest = reader.read_to_end().await;
    let started = pg_ctl("start");
    assert_eq!(
        rest.last().unwrap()["type"],
        "RUN_FINISHED",
        "the stream went on"
    );
    assert!(started, "PostgreSQL starts again");
    // Written once the database is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, run) = get(&format!("{url}{PATH}/runs/down")).await;
        if status == 200 && run["status"] == "finished" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never written: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, ready) = get(&format!("{url}/readyz")).await;
    assert_eq!(ready["store"], "ok", "{status} {ready}");
}
