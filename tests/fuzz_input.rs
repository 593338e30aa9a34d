//! Bad input, generated: thousands of request bodies (well-formed, ill-typed, mangled, random
//! bytes) through `parse_input` and through the run routes. Nothing panics; every request is
//! answered with an error status and JSON body, or with a stream that ends in `RUN_FINISHED` or
//! `RUN_ERROR`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use roomhost::server::{parse_input, ApiError};
use serde_json::{json, Map, Value};
use support::harness::{test_settings, verify_agui, RunResult, TempDir, TestServer};
use support::test_agent;

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
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let seq = AtomicUsize::new(0);
    let (runs, errors) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(config(2000));
    let outcome = runner.run(&request(), |req| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let (thread, run) = (format!("t{n}"), format!("r{n}"));
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
        let got = rt.block_on(async {
            let resp = http
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            Ok::<_, TestCaseError>(RunResult::read(resp).await)
        })?;
        match expected(&req) {
            Err((status, code)) => {
                errors.fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(got.status, status, "{}", got.error_body);
                prop_assert_eq!(&got.error_body["error"]["code"], code);
                prop_assert!(got.error_body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()));
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
    let settled = rt.block_on(async {
        for _ in 0..500 {
            if server.app.runs.is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    assert!(settled, "{} runs left behind", server.app.runs.len());
}
