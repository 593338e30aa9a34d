//! Bad input, generated: thousands of request bodies (well-formed, ill-typed, mangled, random
//! bytes) through `parse_input` and the run routes, and thousands of prompts through the
//! parallelization room's prompt parser (`detect::choose`) and its runs. Nothing panics; every
//! request is answered with an error status and JSON body, or with a stream that ends in
//! `RUN_FINISHED` or `RUN_ERROR`.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::harness::{
    eventually, patient_llm, test_settings, verify_agui, RunResult, TempDir, TestServer, HANG_GUARD,
};
use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{room_yaml, ROOM};
use crate::support::test_agent;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use roomhost::agents::parallelization::detect::{choose, Source};
use roomhost::agents::parallelization::Strategy as Plan;
use roomhost::agents::parallelization::{FollowUp, Job, Sections, Summarize, Vote};
use roomhost::server::{parse_input, ApiError};
use serde_json::{json, Map, Value};

const BODY_LIMIT: usize = 16 * 1024;

/// Texts a user might send, and texts nobody should.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[ \t\r\n]{0,4}",
        2 => "[a-zA-Z ,:|?]{0,40}",
        1 => Just("Write about renewable energy: Solar, Wind, Hydro".to_owned()),
        1 => Just("Is Python or JavaScript better for web scraping?".to_owned()),
        1 => Just("Summarize: article 1 | article 2 | article 3".to_owned()),
        1 => Just("/reject this".to_owned()),
        1 => Just("\u{0}\u{feff}\u{202e}\\\"".to_owned()),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "threadId",
            "runId",
            "parentRunId",
            "messages",
            "prompt",
            "state",
            "tools",
            "context",
            "forwardedProps",
            "role",
            "content",
            "id",
            "type",
            "text",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{0,8}",
    ]
    .boxed()
}

fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A value of the right type most of the time, anything now and then.
fn mostly(typed: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![5 => typed, 1 => any_json()].boxed()
}

fn role() -> BoxedStrategy<Value> {
    let role = prop_oneof![
        4 => Just("user".to_owned()),
        2 => Just("assistant".to_owned()),
        1 => prop::sample::select(vec!["system", "developer", "tool", "activity", "User"])
            .prop_map(str::to_owned),
        1 => "[a-z]{0,6}",
    ];
    mostly(role.prop_map(Value::from).boxed())
}

fn content() -> BoxedStrategy<Value> {
    let part = (
        prop::sample::select(vec!["text", "image", "binary", ""]),
        prop::option::of(mostly(text().prop_map(Value::from).boxed())),
    )
        .prop_map(|(kind, text)| {
            let mut p = json!({ "type": kind });
            if let Some(t) = text {
                p["text"] = t;
            }
            p
        });
    let typed = prop_oneof![
        3 => text().prop_map(Value::from),
        1 => prop::collection::vec(part, 0..4).prop_map(Value::Array),
    ];
    mostly(typed.boxed())
}

fn message() -> BoxedStrategy<Value> {
    (
        prop::option::of(mostly("[a-z0-9-]{0,12}".prop_map(Value::from).boxed())),
        prop::option::of(role()),
        prop::option::of(content()),
    )
        .prop_map(|(id, role, content)| {
            let mut m = Map::new();
            for (k, v) in [("id", id), ("role", role), ("content", content)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
        .boxed()
}

/// Something shaped like a `RunAgentInput` (or the prompt shorthand), with slips.
fn run_input() -> BoxedStrategy<Value> {
    let id = || prop::option::of(mostly("[a-z0-9-]{0,12}".prop_map(Value::from).boxed()));
    let messages = mostly(
        prop::collection::vec(message(), 0..5)
            .prop_map(Value::Array)
            .boxed(),
    );
    (
        id(),
        id(),
        prop::option::of(messages),
        prop::option::of(mostly(text().prop_map(Value::from).boxed())),
        prop::option::of(any_json()),
        prop::option::of(any_json()),
        prop::option::of((key(), any_json())),
    )
        .prop_map(|(thread, run, messages, prompt, state, props, extra)| {
            let mut m = Map::new();
            let fields = [
                ("threadId", thread),
                ("runId", run),
                ("messages", messages),
                ("prompt", prompt),
                ("state", state),
                ("forwardedProps", props),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// A body the server should run: the prompt shorthand or well-typed messages, any extras.
fn valid_input() -> BoxedStrategy<Value> {
    let typed_message = (
        prop::sample::select(vec!["user", "assistant", "system"]),
        text(),
    )
        .prop_map(|(role, text)| json!({"id": "m", "role": role, "content": text}));
    let last = "[a-zA-Z][a-zA-Z ,:|?]{0,40}";
    let messages = (prop::collection::vec(typed_message, 0..3), last).prop_map(|(mut ms, text)| {
        ms.push(json!({"id": "u", "role": "user", "content": text}));
        json!({ "messages": ms })
    });
    let prompt = last.prop_map(|text| json!({ "prompt": text }));
    (
        prop_oneof![messages, prompt],
        prop::option::of(any_json()),
        prop::option::of("[a-z0-9-]{1,12}"),
    )
        .prop_map(|(mut input, state, thread)| {
            if let Some(state) = state {
                input["state"] = state;
            }
            if let Some(thread) = thread {
                input["threadId"] = json!(thread);
            }
            input
        })
        .boxed()
}

/// Request bodies as bytes: inputs, any JSON, JSON cut short or with bytes flipped, random bytes.
fn body() -> BoxedStrategy<Vec<u8>> {
    let mangled =
        (run_input(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, byte)| {
            let mut bytes = v.to_string().into_bytes();
            let i = at.index(bytes.len());
            if byte % 2 == 0 {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            bytes
        });
    prop_oneof![
        8 => valid_input().prop_map(|v| v.to_string().into_bytes()),
        8 => run_input().prop_map(|v| v.to_string().into_bytes()),
        3 => any_json().prop_map(|v| v.to_string().into_bytes()),
        3 => mangled,
        2 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

fn check_parsed(body: &[u8], parsed: &Result<roomhost::agui::RunAgentInput, ApiError>) {
    match parsed {
        Ok(input) => {
            assert!(!input.thread_id.is_empty() && !input.run_id.is_empty());
            assert!(input.last_user_text().is_some());
            let sent: Value = serde_json::from_slice(body).expect("accepted bodies are JSON");
            for (key, got) in [("threadId", &input.thread_id), ("runId", &input.run_id)] {
                if let Some(id) = sent[key].as_str().filter(|s| !s.is_empty()) {
                    assert_eq!(got, id, "{key} was not kept");
                }
            }
        }
        Err(e) => {
            assert_eq!(e.status().as_u16(), 400, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Sends one generated request and reads the answer, JSON error or whole stream.
async fn send(request: reqwest::RequestBuilder) -> Result<RunResult, TestCaseError> {
    let resp = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    Ok(RunResult::read(resp).await)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn parse_input_never_panics_and_errors_are_400(body in body()) {
        check_parsed(&body, &parse_input(&body));
    }

    /// The shorthand: any string is accepted as the one user message unless it is blank.
    #[test]
    fn a_prompt_is_the_user_message(prompt in text()) {
        let body = json!({ "prompt": prompt }).to_string();
        match parse_input(body.as_bytes()) {
            Ok(input) => {
                prop_assert!(!prompt.trim().is_empty());
                prop_assert_eq!(input.last_user_text(), Some(prompt));
            }
            Err(e) => {
                prop_assert!(prompt.trim().is_empty(), "{} rejected: {}", prompt, e);
                prop_assert_eq!(e.code(), "no_user_message");
            }
        }
    }

    /// Well-typed messages: accepted exactly when the last user message has non-blank text,
    /// and that text is what the agent gets.
    #[test]
    fn well_typed_messages_are_read_as_sent(
        messages in prop::collection::vec(
            (prop::sample::select(vec!["user", "assistant", "system"]), text(),
             prop::collection::vec(text(), 0..3), any::<bool>()),
            0..5,
        )
    ) {
        let mut wire = Vec::new();
        let mut want = None;
        for (i, (role, text, parts, as_parts)) in messages.iter().enumerate() {
            let (content, plain) = if *as_parts {
                let ps: Vec<Value> = parts.iter().map(|t| json!({"type": "text", "text": t})).collect();
                (Value::Array(ps), parts.join("\n"))
            } else {
                (json!(text), text.clone())
            };
            wire.push(json!({"id": i.to_string(), "role": role, "content": content}));
            if *role == "user" {
                want = Some(plain);
            }
        }
        let want = want.filter(|t| !t.trim().is_empty());
        let body = json!({ "messages": wire }).to_string();
        match parse_input(body.as_bytes()) {
            Ok(input) => {
                prop_assert_eq!(input.messages.len(), messages.len());
                prop_assert_eq!(input.last_user_text(), want);
            }
            Err(e) => {
                prop_assert!(want.is_none(), "rejected: {}", e);
                prop_assert_eq!(e.code(), "no_user_message");
            }
        }
    }
}

const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    Some("application/vnd.agui+json"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    None,
];

#[derive(Debug, Clone)]
struct Request {
    room: &'static str,
    soliplex: bool,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Request> {
    let oversized =
        any_json().prop_map(|v| json!({"prompt": "x", "pad": [v, "y".repeat(BODY_LIMIT)]}));
    let body = prop_oneof![
        30 => body(),
        1 => oversized.prop_map(|v| v.to_string().into_bytes()),
    ];
    (
        prop::sample::select(vec!["echo", "echo", "echo", "echo", "nope"]),
        any::<bool>(),
        prop_oneof![6 => Just(Some("application/json")), 1 => prop::sample::select(CONTENT_TYPES)],
        body,
    )
        .prop_map(|(room, soliplex, content_type, body)| Request {
            room,
            soliplex,
            content_type,
            body,
        })
}

/// What the server must answer: an error status and code, or a run (`Ok(user text)`).
fn expected(req: &Request) -> Result<String, (u16, &'static str)> {
    if req.room != "echo" {
        return Err((404, "room_not_found"));
    }
    let json = req.content_type.is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || mime.ends_with("+json")
    });
    if !json {
        return Err((415, "unsupported_media_type"));
    }
    if req.body.len() > BODY_LIMIT {
        return Err((413, "payload_too_large"));
    }
    let input = parse_input(&req.body).map_err(|e| (e.status().as_u16(), e.code()))?;
    let text = input.last_user_text().unwrap_or_default();
    if text.starts_with("/reject") {
        return Err((400, "bad_request"));
    }
    Ok(text)
}

#[test]
fn every_generated_request_gets_a_status_or_a_complete_stream() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(async {
        let dir = TempDir::with_rooms(&[&test_agent::room("echo", 1, 0, false)]);
        let mut settings = test_settings("http://127.0.0.1:9", dir.path.clone());
        settings.body_limit_bytes = BODY_LIMIT;
        TestServer::start_with(settings, test_agent::registry(), dir).await
    });
    let client = reqwest::Client::builder()
        .timeout(HANG_GUARD)
        .build()
        .expect("client");
    let (runs, errors) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(config(2000));
    let outcome = runner.run(&request(), |req| {
        // soliplex routes take UUIDs only.
        let (thread, run) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let path = if req.soliplex {
            format!("/api/v1/rooms/{}/agui/{thread}/{run}", req.room)
        } else {
            format!("/rooms/{}/run", req.room)
        };
        let mut http = client
            .post(format!("{}{path}", server.url))
            .body(req.body.clone());
        if let Some(ct) = req.content_type {
            http = http.header("content-type", ct);
        }
        let got = rt.block_on(send(http))?;
        // A soliplex body naming ids is refused: they differ from the path's fresh UUIDs.
        let names_ids = req.soliplex
            && serde_json::from_slice::<Value>(&req.body).is_ok_and(|v| {
                ["threadId", "runId", "thread_id", "run_id"]
                    .iter()
                    .any(|k| v.get(k).is_some_and(Value::is_string))
            });
        let detail = |got: &RunResult| {
            got.error_body["detail"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        };
        match expected(&req) {
            Err((status, code)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, status, "{}", got.error_body);
                if req.soliplex {
                    prop_assert!(detail(&got), "{}", got.error_body);
                } else {
                    prop_assert_eq!(&got.error_body["error"]["code"], code);
                    prop_assert!(got.error_body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()));
                }
            }
            Ok(_) if names_ids => {
                errors.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, 400, "{}", got.error_body);
                prop_assert!(detail(&got), "{}", got.error_body);
            }
            Ok(text) => {
                runs.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, 200, "{}", got.error_body);
                verify_agui(&got.events).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got.last()["type"], "RUN_FINISHED");
                prop_assert_eq!(&got.last()["result"]["echo"], &json!(text));
                if req.soliplex {
                    prop_assert_eq!(&got.events[0]["threadId"], &json!(thread));
                    prop_assert_eq!(&got.events[0]["runId"], &json!(run));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (runs, errors) = (runs.into_inner(), errors.into_inner());
    // The generator must reach both outcomes often, or the test proves little.
    assert!(runs > 200 && errors > 200, "runs {runs}, errors {errors}");
    // Each run's task ends just after its last event was read.
    rt.block_on(eventually("no run is left behind", || {
        server.app.runs.is_empty()
    }));
}

const STRATEGY_NAMES: &[&str] = &[
    "sectioning",
    "voting",
    "map_reduce",
    "map-reduce",
    "MapReduce",
    "auto",
    "",
    "  ",
    "bogus",
];

/// Prompts shaped like each strategy's, with slips, and anything at all.
fn prompt_text() -> BoxedStrategy<String> {
    let item = "[A-Za-z][A-Za-z ]{0,14}|[ ]{0,2}|[A-Za-z ]{40,70}";
    let topic_list = (
        "[A-Za-z ]{0,30}",
        prop::collection::vec(item, 0..8),
        prop::sample::select(vec![", ", "; ", " and ", "\n- ", ","]),
    )
        .prop_map(|(topic, items, sep)| format!("{topic}: {}", items.join(sep)));
    let documents = (
        prop::sample::select(vec![
            "Summarize: ",
            "Summarise the reports: ",
            "summarize ",
            "Compare these: ",
            "",
        ]),
        prop::collection::vec("[A-Za-z .]{0,40}", 0..6),
        prop::sample::select(vec![" | ", "\n---\n", "|", "\n\n"]),
    )
        .prop_map(|(lead, docs, sep)| format!("{lead}{}", docs.join(sep)));
    let question = (
        prop::sample::select(vec![
            "Is",
            "Should I use",
            "Which is better:",
            "Does",
            "Why",
        ]),
        "[A-Za-z]{0,10}",
        "[A-Za-z, ]{0,20}",
        prop::sample::select(vec!["?", "", ".", "??"]),
    )
        .prop_map(|(opener, a, b, end)| format!("{opener} {a} or {b}{end}"));
    let body = prop_oneof![topic_list, documents, question, text()];
    (
        prop::sample::select(vec![
            "",
            "",
            "",
            "/sectioning ",
            "/voting ",
            "/mapreduce ",
            "/map-reduce ",
            "/bogus ",
            "/usr/bin ",
            "/",
            "/voting",
        ]),
        body,
    )
        .prop_map(|(command, body)| format!("{command}{body}"))
        .boxed()
}

fn forwarded_props() -> BoxedStrategy<Value> {
    let strategy = prop_oneof![
        4 => prop::sample::select(STRATEGY_NAMES).prop_map(|s| json!(s)),
        1 => any_json(),
    ];
    let documents = prop_oneof![
        3 => prop::collection::vec("[A-Za-z .]{0,30}", 0..4).prop_map(|d| json!(d)),
        1 => any_json(),
    ];
    prop_oneof![
        2 => Just(json!({})),
        1 => any_json(),
        4 => (prop::option::of(strategy), prop::option::of(documents)).prop_map(|(s, d)| {
            let mut props = json!({});
            if let Some(s) = s {
                props["strategy"] = s;
            }
            if let Some(d) = d {
                props["documents"] = d;
            }
            props
        }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(4000))]

    /// The prompt parser: no panic; an explicit strategy is obeyed; what it hands a strategy is
    /// usable (no blank section, document or question); a refusal says why.
    #[test]
    fn the_prompt_parser_never_panics_and_hands_over_usable_jobs(
        text in prompt_text().prop_filter("the host refuses blank text", |t| !t.trim().is_empty()),
        props in forwarded_props(),
        follows in any::<bool>(),
    ) {
        match choose(&text, &props, Plan::Sectioning, follows) {
            Ok(choice) => {
                if let Some(explicit) = props["strategy"].as_str().and_then(Plan::parse) {
                    prop_assert_eq!(choice.strategy, explicit);
                    prop_assert_eq!(choice.source, Source::Explicit);
                }
                match &choice.job {
                    Job::Sectioning(Sections { topic, sections, .. }) => {
                        prop_assert!(!topic.trim().is_empty() || !sections.is_empty());
                        prop_assert!(sections.iter().all(|s| !s.trim().is_empty()), "{:?}", sections);
                    }
                    Job::Voting(Vote { question, .. }) => prop_assert!(!question.trim().is_empty()),
                    Job::MapReduce(Summarize { instruction, documents }) => {
                        prop_assert!(!instruction.trim().is_empty());
                        prop_assert!(!documents.is_empty());
                        prop_assert!(documents.iter().all(|d| !d.trim().is_empty()), "{:?}", documents);
                    }
                    Job::FollowUp(FollowUp { message }) => {
                        prop_assert!(!message.trim().is_empty());
                    }
                }
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }
}

/// What the parallelization room must answer: its parser's refusal as a 400, or a run.
fn expected_run(body: &[u8]) -> Result<(), (u16, &'static str, Option<String>)> {
    let input = parse_input(body).map_err(|e| (e.status().as_u16(), e.code(), None))?;
    let text = input.last_user_text().unwrap_or_default();
    choose(&text, &input.forwarded_props, Plan::Sectioning, false)
        .map(|_| ())
        .map_err(|message| (400, "bad_request", Some(message)))
}

#[test]
fn every_generated_prompt_gets_a_refusal_or_a_complete_parallelization_run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mock, server) = rt.block_on(async {
        let mock = MockLlm::start().await;
        let dir = TempDir::with_rooms(&[&room_yaml("")]);
        let mut settings = test_settings(&mock.url(), dir.path.clone());
        settings.body_limit_bytes = BODY_LIMIT;
        // A run ends with RUN_FINISHED however long a busy machine takes to answer it.
        patient_llm(&mut settings);
        let server =
            TestServer::start_with(settings, roomhost::agents::Registry::builtin(), dir).await;
        (mock, server)
    });
    let client = reqwest::Client::builder()
        .timeout(HANG_GUARD)
        .build()
        .expect("client");
    let (runs, refusals) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(config(400));
    let outcome = runner.run(&(prompt_text(), forwarded_props()), |(prompt, props)| {
        let body = json!({"prompt": prompt, "forwardedProps": props}).to_string();
        let http = client
            .post(format!("{}/rooms/{ROOM}/run", server.url))
            .header("content-type", "application/json")
            .body(body.clone());
        let got = rt.block_on(send(http))?;
        match expected_run(body.as_bytes()) {
            Err((status, code, message)) => {
                refusals.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, status, "{}", got.error_body);
                prop_assert_eq!(&got.error_body["error"]["code"], code);
                if let Some(message) = message {
                    prop_assert_eq!(&got.error_body["error"]["message"], &json!(message));
                }
            }
            Ok(()) => {
                runs.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, 200, "{}", got.error_body);
                verify_agui(&got.events).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got.last()["type"], "RUN_FINISHED", "{}", got.last());
            }
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (runs, refusals) = (runs.into_inner(), refusals.into_inner());
    assert!(
        runs > 100 && refusals > 20,
        "runs {runs}, refusals {refusals}"
    );
    assert!(mock.request_count() > runs, "the runs called the model");
}
