//! What the store keeps grows with what clients send, no faster: a run keeps its input as its
//! client sent it (the history the model sees is rebuilt from the thread), a thread's runs are
//! capped on every route, a thread read is bounded, and each user's threads, stored bytes and
//! feedback have quotas. Also: a parent run must be of the same thread, and a run that has ended
//! cannot be cancelled.

use roomhost::config::Settings;
use roomhost::store::{
    self, FeedbackAdded, Quotas, RunRecord, RunStatus, Started, ThreadRecord, MAX_RUNS_PER_THREAD,
};
use serde_json::{json, Value};

use crate::store::databases;
use crate::support::harness::{test_settings, RunResult, TempDir, TestServer};
use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{carried, finished, server_with, ROOM};
use crate::support::test_agent;

/// The scripted room these tests run in (no LLM calls).
const SCRIPTED: &str = "limits";

/// A server of the scripted room whose settings `tweak` may change.
async fn scripted(tweak: impl FnOnce(&mut Settings)) -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room(SCRIPTED, 1, 0, false)]);
    let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    tweak(&mut settings);
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn run_in(s: &TestServer, body: Value) -> RunResult {
    RunResult::read(s.post(&format!("/rooms/{SCRIPTED}/run"), &body).await).await
}

/// A soliplex route's refusal: `status` and a `{"detail"}` that mentions `word`.
async fn refused_with_detail(resp: reqwest::Response, status: u16, word: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("a JSON body");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(word), "{body}");
}

/// The error code of a refused request (`{"error": {"code"}}`).
fn code(run: &RunResult) -> String {
    run.error_body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn store_limits_fifty_turns_each_store_only_their_message_and_the_model_sees_them_all() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let mock = MockLlm::start().await;
        let server = server_with(&mock, "", |s| s.database_url = url.clone()).await;
        let message = |i: usize| format!("/voting Turn {i:02}: is tea or coffee the better drink?");
        let mut answers: Vec<String> = Vec::new();
        for i in 0..50 {
            mock.reset_stats();
            let body =
                json!({"threadId": "long", "runId": format!("turn-{i:02}"), "prompt": message(i)});
            let result = finished(&server.run(ROOM, body).await);
            // The history the model was given: every earlier turn, in order, with its answer.
            let history = &result["activity"]["history"];
            let given = history["turns_used"].as_u64().unwrap_or(0)
                + history["turns_dropped"].as_u64().unwrap_or(0);
            assert_eq!(given, 2 * i as u64, "{backend}: turn {i}: {history}");
            if i > 0 {
                let requests = mock.requests();
                assert!(!requests.is_empty());
                for request in &requests {
                    let carried = carried(request);
                    let n = carried.len();
                    assert!(n >= 2, "{backend}: turn {i}: {carried:?}");
                    assert_eq!(
                        carried[n - 2..],
                        [
                            ("user".to_owned(), message(i - 1)),
                            ("assistant".to_owned(), answers[i - 1].clone()),
                        ],
                        "{backend}: turn {i}"
                    );
                }
            }
            answers.push(result["text"].as_str().unwrap_or_default().to_owned());
        }
        // Each run keeps the one message its client sent: the last is no larger than the first.
        let stored = |id: &str| {
            let server = &server;
            let id = id.to_owned();
            async move {
                let (status, run) = server.get(&format!("/rooms/{ROOM}/runs/{id}")).await;
                assert_eq!(status, 200);
                run["run_input"].clone()
            }
        };
        let (first, last) = (stored("turn-00").await, stored("turn-49").await);
        assert_eq!(
            last["messages"].as_array().map(Vec::len),
            Some(1),
            "{backend}: {last}"
        );
        assert_eq!(last["messages"][0]["content"], message(49));
        assert_eq!(
            first.to_string().len(),
            last.to_string().len(),
            "{backend}: the 50th run's input is the size of the first's"
        );
    }
}

#[tokio::test]
async fn store_limits_a_threads_runs_are_capped_on_the_rooms_route_as_on_soliplex_routes() {
    let server = scripted(|_| {}).await;
    for i in 0..MAX_RUNS_PER_THREAD {
        let run = run_in(
            &server,
            json!({"threadId": "capped", "prompt": format!("run {i}")}),
        )
        .await;
        assert_eq!(run.status, 200, "run {i}: {:?}", run.error_body);
    }
    let refused = run_in(&server, json!({"threadId": "capped", "prompt": "one more"})).await;
    assert_eq!(refused.status, 409);
    assert_eq!(code(&refused), "too_many_runs");
    let (_, thread) = server
        .get(&format!("/rooms/{SCRIPTED}/threads/capped"))
        .await;
    assert_eq!(
        thread["runs"].as_array().map(Vec::len),
        Some(MAX_RUNS_PER_THREAD as usize)
    );
}

#[tokio::test]
async fn store_limits_a_thread_read_carries_inputs_up_to_its_bound_and_the_run_read_the_rest() {
    let server = scripted(|s| s.body_limit_bytes = 2 * 1024 * 1024).await;
    // Six runs of 1.5 MB each: 9 MB of inputs, past the 4 MiB a thread read carries.
    let big = "x".repeat(1_500_000);
    let thread_id = uuid::Uuid::new_v4().to_string();
    for i in 0..6 {
        let body = json!({"threadId": thread_id, "runId": format!("big-{i}"),
            "prompt": format!("{i}{big}")});
        assert_eq!(run_in(&server, body).await.status, 200);
    }
    // soliplex's thread read carries its runs' inputs (keyed by run id, oldest first).
    let (status, thread) = server
        .get(&format!("/api/v1/rooms/{SCRIPTED}/agui/{thread_id}"))
        .await;
    assert_eq!(status, 200);
    let runs: Vec<Value> = thread["runs"]
        .as_object()
        .map(|runs| runs.values().cloned().collect())
        .unwrap_or_default();
    let cut: Vec<bool> = runs
        .iter()
        .map(|r| r["run_input_cut"] == json!(true))
        .collect();
    // The newest three fit (less than 4 MiB before each), the older ones are cut.
    assert_eq!(cut, [true, true, true, false, false, false]);
    assert!(runs[0]["run_input"].is_null());
    assert_eq!(
        runs[5]["run_input"]["messages"][0]["content"],
        format!("5{big}")
    );
    let (status, oldest) = server.get(&format!("/rooms/{SCRIPTED}/runs/big-0")).await;
    assert_eq!(status, 200);
    assert_eq!(
        oldest["run_input"]["messages"][0]["content"],
        format!("0{big}")
    );
    assert!(oldest.get("run_input_cut").is_none());
}

#[tokio::test]
async fn store_limits_quotas_refuse_threads_bytes_and_feedback_past_them_with_a_json_body() {
    let server = scripted(|s| {
        s.max_threads_per_user = 2;
        s.max_stored_bytes_per_user = 4000;
        s.max_feedback_per_user = 1;
    })
    .await;
    let threads_path = format!("/api/v1/rooms/{SCRIPTED}/agui");
    let empty = json!({});
    let new_thread = || server.post(&threads_path, &empty);
    // A soliplex thread with its pending run: one feedback row, then 429 with soliplex's body.
    let made: Value = new_thread().await.json().await.expect("JSON");
    let (thread_id, run_id) = (made["thread_id"].as_str(), made["run_id"].as_str());
    let path = format!(
        "/api/v1/rooms/{SCRIPTED}/agui/{}/{}/feedback",
        thread_id.unwrap_or_default(),
        run_id.unwrap_or_default()
    );
    let feedback = json!({"feedback": "thumbs_up"});
    assert_eq!(server.post(&path, &feedback).await.status().as_u16(), 205);
    refused_with_detail(server.post(&path, &feedback).await, 429, "feedback").await;

    // The second thread, then 429 on either route family.
    let run = run_in(&server, json!({"threadId": "q1", "prompt": "hello"})).await;
    assert_eq!(run.status, 200, "{:?}", run.error_body);
    let third = run_in(&server, json!({"threadId": "q3", "prompt": "hello"})).await;
    assert_eq!((third.status, code(&third).as_str()), (429, "thread_quota"));
    refused_with_detail(new_thread().await, 429, "threads").await;

    // A run that would take the stored inputs past 4000 bytes is 413; a small one still runs.
    let big = run_in(
        &server,
        json!({"threadId": "q1", "prompt": "y".repeat(4000)}),
    )
    .await;
    assert_eq!((big.status, code(&big).as_str()), (413, "storage_quota"));
    let small = run_in(&server, json!({"threadId": "q1", "prompt": "small"})).await;
    assert_eq!(small.status, 200);
}

#[tokio::test]
async fn store_limits_quotas_and_parents_are_kept_by_the_store_itself() {
    let (dbs, _dir) = databases().await;
    let quotas = Quotas {
        threads: 2,
        stored_bytes: 100,
        feedback: 1,
    };
    for (backend, url) in dbs {
        let s = store::open(&url, quotas).await.unwrap().expect("a store");
        let thread = |id: &str, owner: &str| ThreadRecord {
            id: id.into(),
            room: "r".into(),
            owner: owner.into(),
            created: 1,
            name: None,
            description: None,
        };
        let run = |thread_id: &str, id: &str, input: &str| RunRecord {
            id: id.into(),
            thread_id: thread_id.into(),
            parent_run_id: None,
            created: 2,
            finished: None,
            status: RunStatus::Running,
            input: input.into(),
            result: None,
            usage: None,
            answer: None,
            llm_requests: None,
            events_cut: false,
            input_cut: false,
            metadata: None,
        };
        let start = |t: ThreadRecord, r: RunRecord| {
            let s = s.clone();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            async move {
                s.start_run(&t, &r, Some(100), "token", deadline)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            start(thread("a", "ann"), run("a", "a1", "{}")).await,
            Started::Recorded
        );
        assert_eq!(
            start(thread("b", "ann"), run("b", "b1", "{}")).await,
            Started::Recorded
        );
        assert_eq!(
            start(thread("c", "ann"), run("c", "c1", "{}")).await,
            Started::OverThreadQuota,
            "{backend}"
        );
        assert!(
            s.thread("r", "c").await.unwrap().is_none(),
            "{backend}: nothing kept"
        );
        // Another user has quotas of their own.
        assert_eq!(
            start(thread("d", "bob"), run("d", "d1", "{}")).await,
            Started::Recorded
        );
        // Bytes: 4 stored so far; 96 more fit, 97 do not.
        let fits = format!("\"{}\"", "x".repeat(94));
        let over = format!("\"{}\"", "x".repeat(95));
        assert_eq!(
            start(thread("a", "ann"), run("a", "a2", &over)).await,
            Started::OverByteQuota
        );
        assert_eq!(
            start(thread("a", "ann"), run("a", "a3", &fits)).await,
            Started::Recorded
        );

        // A parent must be a run of the same thread.
        let child = |parent: &str| RunRecord {
            parent_run_id: Some(parent.into()),
            ..run("d", &format!("child-of-{parent}"), "{}")
        };
        assert_eq!(
            start(thread("d", "bob"), child("a1")).await,
            Started::NoSuchParent
        );
        assert_eq!(
            start(thread("d", "bob"), child("nope")).await,
            Started::NoSuchParent
        );
        assert_eq!(
            start(thread("d", "bob"), child("d1")).await,
            Started::Recorded
        );

        // Feedback: one row per user here.
        assert_eq!(
            s.add_feedback("a1", "{}").await.unwrap(),
            FeedbackAdded::Added
        );
        assert_eq!(
            s.add_feedback("b1", "{}").await.unwrap(),
            FeedbackAdded::OverQuota
        );
        assert_eq!(
            s.add_feedback("d1", "{}").await.unwrap(),
            FeedbackAdded::Added,
            "{backend}"
        );
        assert_eq!(
            s.add_feedback("zz", "{}").await.unwrap(),
            FeedbackAdded::NoSuchRun
        );
    }
}

#[tokio::test]
async fn store_limits_a_parent_run_must_be_of_the_same_thread_on_both_route_families() {
    let server = scripted(|_| {}).await;
    let first = run_in(
        &server,
        json!({"threadId": "p1", "runId": "p1-a", "prompt": "hi"}),
    )
    .await;
    assert_eq!(first.status, 200);
    run_in(
        &server,
        json!({"threadId": "p2", "runId": "p2-a", "prompt": "hi"}),
    )
    .await;
    let stranger = run_in(
        &server,
        json!({"threadId": "p1", "parentRunId": "p2-a", "prompt": "next"}),
    )
    .await;
    assert_eq!(
        (stranger.status, code(&stranger).as_str()),
        (400, "parent_run_not_found")
    );
    let own = run_in(
        &server,
        json!({"threadId": "p1", "parentRunId": "p1-a", "prompt": "next"}),
    )
    .await;
    assert_eq!(own.status, 200, "{:?}", own.error_body);

    // soliplex: a new run naming a parent of another thread.
    let made = |body: Value| {
        let server = &server;
        async move {
            let resp = server
                .post(&format!("/api/v1/rooms/{SCRIPTED}/agui"), &body)
                .await;
            resp.json::<Value>().await.expect("JSON")
        }
    };
    let (a, b) = (made(json!({})).await, made(json!({})).await);
    let runs_of_a = format!(
        "/api/v1/rooms/{SCRIPTED}/agui/{}",
        a["thread_id"].as_str().unwrap_or("")
    );
    let new_run = |parent: &Value| {
        let body = json!({ "parent_run_id": parent });
        let (server, path) = (&server, &runs_of_a);
        async move { server.post(path, &body).await }
    };
    refused_with_detail(new_run(&b["run_id"]).await, 400, "parent").await;
    assert_eq!(new_run(&a["run_id"]).await.status().as_u16(), 200);
}

#[tokio::test]
async fn store_limits_cancelling_a_run_that_has_ended_is_409() {
    let server = scripted(|_| {}).await;
    let run = run_in(&server, json!({"runId": "ended", "prompt": "hi"})).await;
    assert_eq!(run.last()["type"], "RUN_FINISHED");
    let resp = server
        .post(&format!("/rooms/{SCRIPTED}/runs/ended/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    // `run_ended` while it is still kept among the live runs, `run_not_running` after.
    let body: Value = resp.json().await.expect("JSON");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(["run_ended", "run_not_running"].contains(&code), "{body}");
}

#[tokio::test]
async fn store_limits_a_rebuilt_history_goes_back_no_further_than_a_run_that_sent_its_own() {
    let mock = MockLlm::start().await;
    let server = server_with(&mock, "", |_| {}).await;
    let lone = |run: &str, text: &str| json!({"threadId": "mixed", "runId": run, "prompt": text});
    finished(
        &server
            .run(ROOM, lone("m1", "/voting First question?"))
            .await,
    );
    // A client that sends the history itself (its own wording of the first answer).
    let with_history = json!({"threadId": "mixed", "runId": "m2", "messages": [
        {"id": "u1", "role": "user", "content": "/voting First question?"},
        {"id": "a1", "role": "assistant", "content": "The first answer, as the client has it."},
        {"id": "u2", "role": "user", "content": "/voting Second question?"},
    ]});
    let second = finished(&server.run(ROOM, with_history).await);
    mock.reset_stats();
    finished(
        &server
            .run(ROOM, lone("m3", "/voting Third question?"))
            .await,
    );
    let second = second["text"].as_str().unwrap_or_default().to_owned();
    let requests = mock.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        // The second run's messages hold the first turn: it is not read again from the first run.
        assert_eq!(
            carried(request),
            [
                ("user".to_owned(), "/voting First question?".to_owned()),
                (
                    "assistant".to_owned(),
                    "The first answer, as the client has it.".to_owned()
                ),
                ("user".to_owned(), "/voting Second question?".to_owned()),
                ("assistant".to_owned(), second.clone()),
            ]
        );
    }
}
