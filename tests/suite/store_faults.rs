//! The store under faults. With the real binary: killed with SIGKILL mid-runs and restarted on
//! the same SQLite file; two processes sharing one PostgreSQL, a run resumed on the other; the
//! database stopping mid-run. In process: the SQLite file write-locked by another connection past
//! the start bound, the file deleted under the server, a NUL in a prompt, a run read right after
//! its last event. The PostgreSQL tests run when `ROOMHOST_TEST_DATABASE_URL` names a server
//! (`.ci/run` starts one with `scripts/with-postgres.sh`). The mock LLM is gated, so nothing
//! depends on how fast the machine is.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::process_lifecycle::{free_port, roomhost, wait_healthy, Running, ROOM};
use crate::store::{databases, postgres};
use crate::support::harness::{RunResult, SseReader, TempDir, TestServer};
use crate::support::mock_llm::{auto_reply, Gate, MockLlm, MockReply};
use crate::support::parallelization;
use crate::support::test_agent;

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
    // Not ready, and new runs refused, while it is away.
    let stopped = std::time::Instant::now();
    while get(&format!("{url}/readyz")).await.0 != 503 {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "/readyz never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("/readyz answered 503 after {:?}", stopped.elapsed());
    let refused = TestServer::client()
        .post(format!("{url}{PATH}/run"))
        .json(&json!({"runId": "refused", "prompt": VOTE}))
        .send()
        .await
        .unwrap();
    assert_refused(refused).await;
    let rest = reader.read_to_end().await;
    let started = pg_ctl("start");
    let back = std::time::Instant::now();
    assert_eq!(
        rest.last().unwrap()["type"],
        "RUN_FINISHED",
        "the stream went on"
    );
    assert!(started, "PostgreSQL starts again");
    let deadline = back + Duration::from_secs(30);
    loop {
        let (status, ready) = get(&format!("{url}/readyz")).await;
        if status == 200 {
            assert_eq!(ready["store"], "ok", "{ready}");
            eprintln!("/readyz answered 200 after {:?}", back.elapsed());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready again: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
}

/// An in-process server on `database_url` whose runs' starts wait at most 500 ms for the store;
/// prompts with "held" wait in their LLM calls for `gate`, ones with "big" get long answers.
async fn held_server(mock: &MockLlm, gate: &Gate, database_url: &str) -> TestServer {
    let gate = gate.clone();
    mock.respond_with(move |req| {
        let big = req.messages.iter().any(|m| m.content.contains("big"));
        let reply = auto_reply(req, if big { 1500 } else { 4 });
        if req.messages.iter().any(|m| m.content.contains("held")) {
            reply.gated(&gate)
        } else {
            reply
        }
    });
    let url = database_url.to_owned();
    parallelization::server_with(mock, "", move |s| {
        s.database_url = url;
        s.store_timeout = Duration::from_millis(500);
    })
    .await
}

/// An ungated [`held_server`] on each database (SQLite, and PostgreSQL when there is one), with
/// its URL and mock; the temp dir lives as long as the list.
async fn servers() -> (Vec<(String, TestServer, MockLlm)>, TempDir) {
    let (dbs, dir) = databases().await;
    let mut servers = Vec::new();
    for (_, url) in dbs {
        let mock = MockLlm::start().await;
        let server = held_server(&mock, &Gate::default(), &url).await;
        servers.push((url, server, mock));
    }
    (servers, dir)
}

fn run_body(thread: &str, run: &str, prompt: &str) -> Value {
    json!({"threadId": thread, "runId": run, "prompt": prompt,
        "forwardedProps": {"strategy": "voting"}})
}

/// Polls `/readyz` until its status is `want` (the server notices within a second or so; how
/// long it took is printed for the README's figures).
async fn readyz_becomes(server: &TestServer, want: u16) -> Value {
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let (status, ready) = server.get("/readyz").await;
        if status == want {
            eprintln!("/readyz answered {want} after {:?}", started.elapsed());
            return ready;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never {want}: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the gate and reads the held run to its end: it went on through the fault.
async fn finish_held(gate: &Gate, streaming: &mut SseReader, seen: &mut Vec<Value>) {
    gate.open();
    seen.extend(streaming.read_to_end().await);
    assert_eq!(
        seen.last().unwrap()["type"],
        "RUN_FINISHED",
        "the stream went on"
    );
}

/// A refused start: 503 `store_unavailable` with `Retry-After` and the JSON body, and no word of
/// the database's own.
async fn assert_refused(resp: reqwest::Response) {
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"), "Retry-After");
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let text = body.to_string().to_lowercase();
    for leak in ["locked", "sqlite", "rh.db", "busy", "/tmp"] {
        assert!(!text.contains(leak), "{leak} in {body}");
    }
}

/// The stored run and its stored events' types, through the `/rooms` routes.
async fn stored_run(server: &TestServer, run_id: &str) -> (Value, Vec<Value>) {
    let path = parallelization::ROOM;
    let (_, run) = server.get(&format!("/rooms/{path}/runs/{run_id}")).await;
    let resp = TestServer::client()
        .get(format!("{}/rooms/{path}/runs/{run_id}/events", server.url))
        .send()
        .await
        .expect("GET events");
    (run, SseReader::new(resp).read_to_end().await)
}

#[tokio::test]
async fn store_faults_a_write_locked_sqlite_file_refuses_new_runs_and_keeps_streaming_ones() {
    let mock = MockLlm::start().await;
    let gate = Gate::default();
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path.join("rh.db").display());
    let server = held_server(&mock, &gate, &url).await;
    let room = parallelization::ROOM;
    // Alice's run, finished before the fault.
    let alice = server
        .run(room, run_body("alice-t", "alice-run", VOTE))
        .await;
    assert_eq!(alice.last()["type"], "RUN_FINISHED");
    // A run streaming when the fault starts, waiting in its LLM calls.
    let mut streaming = server
        .open_run(
            room,
            run_body("held-t", "held-run", &format!("held {VOTE}")),
        )
        .await;
    let mut seen = streaming.read_until("RUN_STARTED").await;

    // Another process holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let ready = readyz_becomes(&server, 503).await;
    assert_eq!(ready["store"], "failing", "{ready}");
    assert!(!ready.to_string().contains("locked"), "{ready}");
    // New runs are refused before their stream, never run unrecorded.
    let path = format!("/rooms/{room}/run");
    assert_refused(
        server
            .post(&path, &run_body("new-t", "new-run", VOTE))
            .await,
    )
    .await;
    // Bob reuses Alice's finished run id: refused (400 when this process still knows it), never
    // appended to her run.
    let bob = server
        .post(&path, &run_body("bob-t", "alice-run", VOTE))
        .await;
    if bob.status().as_u16() == 400 {
        let body: Value = bob.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "run_id_reused", "{body}");
    } else {
        assert_refused(bob).await;
    }
    // The streaming run goes on and ends.
    finish_held(&gate, &mut streaming, &mut seen).await;

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    drop(other);
    let ready = readyz_becomes(&server, 200).await;
    assert_eq!(ready["store"], "ok", "{ready}");
    // Written once the lock went: every event, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (run, events) = stored_run(&server, "held-run").await;
        if run["status"] == "finished" {
            assert_eq!(events, seen, "every event the client saw, stored");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never written: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (run, events) = stored_run(&server, "alice-run").await;
    assert_eq!(run["status"], "finished");
    assert_eq!(events, alice.events, "Alice's run is as she saw it");
    // The refused starts left nothing: the new run may be started now, Bob's reuse is a 400.
    let (status, _) = server.get(&format!("/rooms/{room}/threads/bob-t")).await;
    assert_eq!(status, 404, "Bob's refused run made no thread");
    let again = server.run(room, run_body("new-t", "new-run", VOTE)).await;
    assert_eq!(again.last()["type"], "RUN_FINISHED", "{}", again.error_body);
    let reused = server
        .post(&path, &run_body("bob-t", "alice-run", VOTE))
        .await;
    assert_eq!(reused.status().as_u16(), 400);
}

#[tokio::test]
async fn store_faults_the_sqlite_file_deleted_under_the_server_is_not_ready_and_refuses_runs() {
    let mock = MockLlm::start().await;
    let dir = TempDir::new();
    let file = dir.path.join("rh.db");
    let url = format!("sqlite://{}", file.display());
    let server = held_server(&mock, &Gate::default(), &url).await;
    let room = parallelization::ROOM;
    readyz_becomes(&server, 200).await;
    std::fs::remove_file(&file).expect("the file goes");
    let ready = readyz_becomes(&server, 503).await;
    assert_eq!(ready["store"], "failing", "{ready}");
    let refused = server
        .post(&format!("/rooms/{room}/run"), &run_body("t", "r", VOTE))
        .await;
    assert_refused(refused).await;
}

#[tokio::test]
async fn store_faults_a_nul_in_a_prompt_is_stored_without_it_and_other_writes_flow() {
    let (servers, _dir) = servers().await;
    for (url, server, _mock) in servers {
        let room = parallelization::ROOM;
        let nul = server
            .run(
                room,
                run_body("nul-t", "nul-run", "Python\u{0}or JavaScript?"),
            )
            .await;
        assert_eq!(
            nul.last()["type"],
            "RUN_FINISHED",
            "{url}: {}",
            nul.error_body
        );
        let other = server
            .run(room, run_body("other-t", "other-run", VOTE))
            .await;
        assert_eq!(other.last()["type"], "RUN_FINISHED", "{url}");
        for (run_id, run) in [("nul-run", &nul), ("other-run", &other)] {
            let (stored, events) = stored_run(&server, run_id).await;
            assert_eq!(stored["status"], "finished", "{url}: {run_id}");
            assert_eq!(events.len(), run.events.len(), "{url}: {run_id}");
        }
        let (status, thread) = server.get(&format!("/rooms/{room}/threads/nul-t")).await;
        assert_eq!(status, 200, "{url}: {thread}");
        assert_eq!(thread["metadata"]["name"], "Pythonor JavaScript?", "{url}");
        let ready = readyz_becomes(&server, 200).await;
        assert_eq!(ready["store"], "ok", "{url}");
    }
}

#[tokio::test]
async fn store_faults_a_run_read_right_after_its_last_event_is_finished_with_all_its_events() {
    let (servers, _dir) = servers().await;
    for (url, server, _mock) in servers {
        let room = parallelization::ROOM;
        for i in 0..5 {
            let run_id = format!("r{i}");
            let run = server.run(room, run_body("t", &run_id, VOTE)).await;
            assert_eq!(run.last()["type"], "RUN_FINISHED", "{url}");
            let (stored, events) = stored_run(&server, &run_id).await;
            assert_eq!(stored["status"], "finished", "{url}: {stored}");
            assert_eq!(events, run.events, "{url}");
            let (_, thread) = server.get(&format!("/rooms/{room}/threads/t")).await;
            let runs = thread["runs"].as_array().expect("runs");
            assert!(
                runs.iter().all(|r| r["status"] == "finished"),
                "{url}: {thread}"
            );
        }
        // Soliplex's routes: the thread reloaded right after its run.
        let rooms = TempDir::with_rooms(&[&test_agent::room("sx", 3, 0, false)]);
        let mut settings =
            crate::support::harness::test_settings("http://127.0.0.1:9", rooms.path.clone());
        settings.database_url = url.clone();
        let s = TestServer::start_with(settings, test_agent::registry(), rooms).await;
        for _ in 0..3 {
            let created = s.post("/api/v1/rooms/sx/agui", &json!({})).await;
            let created: Value = created.json().await.expect("a thread");
            let thread = created["thread_id"].as_str().expect("thread id").to_owned();
            let run_id = created["runs"]
                .as_object()
                .expect("runs")
                .keys()
                .next()
                .expect("a run")
                .clone();
            let body = json!({"threadId": thread, "runId": run_id,
                "messages": [{"id": "m1", "role": "user", "content": "hi"}]});
            let path = format!("/api/v1/rooms/sx/agui/{thread}/{run_id}");
            let run = RunResult::read(s.post(&path, &body).await).await;
            assert_eq!(
                run.last()["type"],
                "RUN_FINISHED",
                "{url}: {}",
                run.error_body
            );
            let (_, got) = s.get(&format!("/api/v1/rooms/sx/agui/{thread}")).await;
            assert!(!got["runs"][&run_id]["finished"].is_null(), "{url}: {got}");
            let (_, stored) = s.get(&path).await;
            assert_eq!(
                stored["events"].as_array().map(Vec::len),
                Some(run.events.len()),
                "{url}: {stored}"
            );
        }
    }
}

/// A 3 MB tmpfs at `dir/mnt` (root only); unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &TempDir) -> Option<SmallDisk> {
        let at = dir.path.join("mnt");
        std::fs::create_dir_all(&at).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(at))
    }

    /// Fills the disk with a file; its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last partial block too.
        while file.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn store_faults_sqlite_on_a_full_disk_commits_again_once_space_is_freed() {
    let dir = TempDir::new();
    let Some(disk) = SmallDisk::mount(&dir) else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let mock = MockLlm::start().await;
    let gate = Gate::default();
    let url = format!("sqlite://{}", disk.0.join("rh.db").display());
    let server = held_server(&mock, &gate, &url).await;
    let room = parallelization::ROOM;
    let path = format!("/rooms/{room}/run");
    let before = server.run(room, run_body("t0", "before", VOTE)).await;
    assert_eq!(before.last()["type"], "RUN_FINISHED");
    let mut streaming = server
        .open_run(room, run_body("t1", "held", &format!("held big {VOTE}")))
        .await;
    let mut seen = streaming.read_until("RUN_STARTED").await;
    let filler = disk.fill();
    // The streaming run's long answer needs space the disk no longer has.
    finish_held(&gate, &mut streaming, &mut seen).await;
    readyz_becomes(&server, 503).await;
    // Starts during the fault: refused, or run and then kept like the rest.
    let mut answered = vec![("before", before.events), ("held", seen)];
    let during = server.post(&path, &run_body("t2", "during", VOTE)).await;
    if during.status().as_u16() == 200 {
        answered.push(("during", RunResult::read(during).await.events));
    } else {
        assert_refused(during).await;
    }

    std::fs::remove_file(filler).expect("space freed");
    let ready = readyz_becomes(&server, 200).await;
    assert_eq!(ready["store"], "ok", "{ready}");
    let after = server.run(room, run_body("t3", "after", VOTE)).await;
    assert_eq!(after.last()["type"], "RUN_FINISHED", "{}", after.error_body);
    answered.push(("after", after.events));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (run_id, events) in answered {
        loop {
            let (run, stored) = stored_run(&server, run_id).await;
            if run["status"] == "finished" && !run["events_cut"].as_bool().unwrap_or(true) {
                assert_eq!(stored, events, "{run_id}: every event, once");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{run_id} never written: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Other connections can write: no pooled connection was left holding a transaction.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the write lock is free");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
}
