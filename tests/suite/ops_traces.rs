//! Traces over OTLP/HTTP, from the real binary to a collector in the test: one span per run, one
//! child per LLM call with the GenAI attributes the mock LLM's answers determine, the run's trace
//! id in its log lines, the last spans sent on SIGTERM; nothing sent without an endpoint; a
//! collector that is down costs the runs nothing.

use std::collections::HashMap;
use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Attr;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::process_lifecycle::{free_port, roomhost, wait_exit, wait_healthy, Running, ROOM};
use crate::support::harness::{RunResult, TempDir, TestServer};
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply};

/// Spans as the collector received them, with the `service.name` of their resource.
#[derive(Default)]
struct Received {
    posts: AtomicUsize,
    spans: Mutex<Vec<(String, Span)>>,
}

/// An OTLP/HTTP collector on a loopback port that keeps what it is sent.
async fn collector() -> (String, Arc<Received>) {
    async fn export(State(received): State<Arc<Received>>, body: Bytes) -> Vec<u8> {
        received.posts.fetch_add(1, Ordering::SeqCst);
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
        let mut spans = received.spans.lock().expect("spans");
        for resource in request.resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        // An empty ExportTraceServiceResponse: everything was taken.
        Vec::new()
    }
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Attr> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attr(attributes, key)? {
        Attr::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        Attr::IntValue(n) => Some(*n),
        _ => None,
    }
}

fn texts(attributes: &[KeyValue], key: &str) -> Option<Vec<String>> {
    match attr(attributes, key)? {
        Attr::ArrayValue(array) => array
            .values
            .iter()
            .map(|v| match &v.value {
                Some(Attr::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binary with `env`, its stdout (the log) read on a thread, and its rooms folder.
async fn start(
    mock: &MockLlm,
    env: &[(&str, &str)],
) -> (Running, String, std::thread::JoinHandle<String>, TempDir) {
    let dir = TempDir::new();
    dir.write("parallelization/room_config.yaml", ROOM);
    let port = free_port();
    let mut cmd = roomhost(&dir.path, &mock.url(), port);
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn roomhost");
    let mut stdout = child.stdout.take().expect("stdout");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url).await;
    (Running(child), url, log, dir)
}

/// SIGTERM, then the exit status.
async fn stop(child: &mut Running) -> ExitStatus {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_exit(child, Duration::from_secs(20)).await
}

async fn run(url: &str, run_id: &str, prompt: &str, strategy: &str) -> RunResult {
    let body = json!({
        "threadId": format!("thread-{run_id}"),
        "runId": run_id,
        "prompt": prompt,
        "forwardedProps": {"strategy": strategy},
    });
    let resp = TestServer::client()
        .post(format!("{url}/rooms/parallelization/run"))
        .json(&body)
        .send()
        .await
        .expect("run starts");
    RunResult::read(resp).await
}

/// Every line of `log` that names `run_id`.
fn lines_of<'a>(log: &'a str, run_id: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(run_id)).collect()
}

/// Tokens the mock reports for every call.
const INPUT: u64 = 13;
const OUTPUT: u64 = 9;

#[tokio::test]
async fn runs_and_llm_calls_are_exported_as_spans_and_the_trace_id_is_logged() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| auto_reply(req, 6).usage(INPUT, OUTPUT).done_reason("stop"));
    let (collector_url, received) = collector().await;
    // No export before the exit: the spans arrive only if SIGTERM sends them.
    let (mut child, url, log, _dir) = start(
        &mock,
        &[
            ("ROOMHOST_OTLP_ENDPOINT", collector_url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;

    let good = [
        ("sectioning", "Write about tea: Green, Black, Oolong"),
        ("voting", "Is tea better than coffee?"),
        (
            "map_reduce",
            "Summarize: the first report | the second report",
        ),
    ];
    // Per run id: its strategy, the mock's requests during it, its last event.
    let mut runs = Vec::new();
    for (strategy, prompt) in good {
        let before = mock.requests().len();
        let done = run(&url, &format!("run-{strategy}"), prompt, strategy).await;
        assert_eq!(
            done.last()["type"],
            "RUN_FINISHED",
            "{strategy}: {:?}",
            done.types()
        );
        runs.push((
            format!("run-{strategy}"),
            strategy,
            mock.requests()[before..].to_vec(),
            done,
        ));
    }
    mock.respond_with(|_| MockReply::new().status(400, "the model refuses"));
    let before = mock.requests().len();
    let failed = run(&url, "run-failing", "Is tea better than coffee?", "voting").await;
    assert_eq!(failed.last()["type"], "RUN_ERROR", "{:?}", failed.types());
    runs.push((
        "run-failing".into(),
        "voting",
        mock.requests()[before..].to_vec(),
        failed,
    ));
    assert_eq!(
        received.posts.load(Ordering::SeqCst),
        0,
        "exported before the exit"
    );

    let exit = stop(&mut child).await;
    assert!(exit.success(), "exit status {exit}");
    let log = log.join().expect("the log");
    let spans = received.spans.lock().expect("spans").clone();
    assert!(spans.iter().all(|(service, _)| service == "roomhost"));
    let by_id: HashMap<Vec<u8>, &Span> =
        spans.iter().map(|(_, s)| (s.span_id.clone(), s)).collect();
    let run_spans: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "run")
        .collect();
    assert_eq!(
        run_spans.len(),
        runs.len(),
        "{:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let calls: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name != "run")
        .collect();
    // Every call belongs to a run.
    assert!(calls.iter().all(|c| by_id
        .get(&c.parent_span_id)
        .is_some_and(|p| p.name == "run")));
    assert_eq!(calls.len(), runs.iter().map(|r| r.2.len()).sum::<usize>());

    for (run_id, strategy, requests, done) in &runs {
        let span = run_spans
            .iter()
            .find(|s| text(&s.attributes, "run_id").as_deref() == Some(run_id))
            .unwrap_or_else(|| panic!("no span for {run_id}"));
        let a = &span.attributes;
        assert!(
            span.parent_span_id.is_empty(),
            "{run_id}: a run is a trace's root"
        );
        assert_eq!(text(a, "room").as_deref(), Some("parallelization"));
        assert_eq!(text(a, "strategy").as_deref(), Some(*strategy));
        assert_eq!(text(a, "thread_id"), Some(format!("thread-{run_id}")));
        assert_eq!(
            text(a, "gen_ai.operation.name").as_deref(),
            Some("invoke_agent")
        );
        let status = span.status.clone().unwrap_or_default();
        let children: Vec<&&Span> = calls
            .iter()
            .filter(|c| c.parent_span_id == span.span_id)
            .collect();
        assert_eq!(
            children.len(),
            requests.len(),
            "{run_id}: one span per LLM call"
        );
        // The room's model, as the mock was asked for it.
        let model = &requests.first().expect("calls").model;
        for call in &children {
            let c = &call.attributes;
            assert_eq!(call.trace_id, span.trace_id);
            assert_eq!(&call.name, &format!("chat {model}"));
            assert_eq!(call.kind, SpanKind::Client as i32);
            assert_eq!(text(c, "gen_ai.operation.name").as_deref(), Some("chat"));
            assert_eq!(text(c, "gen_ai.provider.name").as_deref(), Some("ollama"));
            assert_eq!(text(c, "gen_ai.request.model").as_ref(), Some(model));
            assert_eq!(
                text(c, "roomhost.llm.endpoint").as_deref(),
                Some("backend 1")
            );
            // Never the backend's URL, never a prompt.
            let shown = format!("{c:?}");
            assert!(
                !shown.contains(&mock.addr().to_string()) && !shown.contains("tea"),
                "{shown}"
            );
        }
        // The calls asked for what the mock saw (in some order).
        let mut asked: Vec<Option<i64>> = children
            .iter()
            .map(|c| int(&c.attributes, "gen_ai.request.max_tokens"))
            .collect();
        let mut sent: Vec<Option<i64>> = requests.iter().map(|r| r.max_tokens).collect();
        asked.sort();
        sent.sort();
        assert_eq!(asked, sent, "{run_id}");

        let trace_id = hex(&span.trace_id);
        let lines = lines_of(&log, run_id);
        assert!(!lines.is_empty(), "{run_id}: no log line\n{log}");
        for line in lines {
            assert!(
                line.contains(&format!("trace_id={trace_id}")),
                "{run_id}: {line}"
            );
        }

        if done.last()["type"] == "RUN_FINISHED" {
            let calls = requests.len() as i64;
            assert_eq!(text(a, "roomhost.run.outcome").as_deref(), Some("finished"));
            assert_ne!(status.code, StatusCode::Error as i32);
            assert_eq!(
                int(a, "gen_ai.usage.input_tokens"),
                Some(calls * INPUT as i64),
                "{run_id}"
            );
            assert_eq!(
                int(a, "gen_ai.usage.output_tokens"),
                Some(calls * OUTPUT as i64),
                "{run_id}"
            );
            for call in &children {
                let c = &call.attributes;
                assert_eq!(int(c, "gen_ai.usage.input_tokens"), Some(INPUT as i64));
                assert_eq!(int(c, "gen_ai.usage.output_tokens"), Some(OUTPUT as i64));
                assert_eq!(
                    texts(c, "gen_ai.response.finish_reasons"),
                    Some(vec!["stop".to_owned()])
                );
                assert_ne!(
                    call.status.clone().unwrap_or_default().code,
                    StatusCode::Error as i32
                );
            }
        } else {
            let code = done.last()["code"]
                .as_str()
                .expect("RUN_ERROR has a code")
                .to_owned();
            assert_eq!(text(a, "roomhost.run.outcome").as_deref(), Some("error"));
            assert_eq!(status.code, StatusCode::Error as i32);
            assert_eq!(status.message, code);
            assert_eq!(text(a, "error.type"), Some(code));
            assert!(!children.is_empty());
            for call in &children {
                let status = call.status.clone().unwrap_or_default();
                assert_eq!(status.code, StatusCode::Error as i32);
                assert_eq!(status.message, "llm_http_error");
                assert_eq!(
                    text(&call.attributes, "error.type").as_deref(),
                    Some("llm_http_error")
                );
                assert_eq!(int(&call.attributes, "gen_ai.usage.input_tokens"), None);
            }
        }
    }
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_or_logged_as_a_trace() {
    let mock = MockLlm::start().await;
    let (_collector_url, received) = collector().await;
    let (mut child, url, log, _dir) = start(&mock, &[]).await;
    let done = run(&url, "run-plain", "Is tea better than coffee?", "voting").await;
    assert_eq!(done.last()["type"], "RUN_FINISHED", "{:?}", done.types());
    assert!(stop(&mut child).await.success());
    let log = log.join().expect("the log");
    let lines = lines_of(&log, "run-plain");
    assert!(!lines.is_empty(), "no log line\n{log}");
    assert!(lines.iter().all(|l| !l.contains("trace_id")), "{lines:?}");
    assert_eq!(received.posts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_collector_that_is_down_costs_the_runs_nothing() {
    let mock = MockLlm::start().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (mut child, url, log, _dir) = start(
        &mock,
        &[
            ("ROOMHOST_OTLP_ENDPOINT", closed.as_str()),
            // Exports are tried while the runs go on.
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    )
    .await;
    for n in 0..3 {
        let done = run(
            &url,
            &format!("run-{n}"),
            "Is tea better than coffee?",
            "voting",
        )
        .await;
        assert_eq!(done.last()["type"], "RUN_FINISHED", "{:?}", done.types());
    }
    assert!(stop(&mut child).await.success());
    let log = log.join().expect("the log");
    assert!(log.contains("cannot reach the OTLP collector"), "{log}");
}

fn endpoint(env: &[(&str, &str)]) -> Result<Option<String>, String> {
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    roomhost::config::Settings::load_with(&roomhost::config::Cli::default(), get)
        .map(|s| s.otlp_endpoint)
        .map_err(|e| e.to_string())
}

#[test]
fn the_endpoint_setting_takes_a_base_url_or_the_standard_variable() {
    assert_eq!(endpoint(&[]), Ok(None));
    assert_eq!(endpoint(&[("ROOMHOST_OTLP_ENDPOINT", "  ")]), Ok(None));
    assert_eq!(
        endpoint(&[("ROOMHOST_OTLP_ENDPOINT", "http://collector:4318/")]),
        Ok(Some("http://collector:4318".into()))
    );
    assert_eq!(
        endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example/base")]),
        Ok(Some("https://otel.example/base".into()))
    );
    assert_eq!(
        endpoint(&[
            ("ROOMHOST_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
        ]),
        Ok(Some("http://a:4318".into()))
    );
    for bad in [
        "collector:4318",
        "grpc://collector:4317",
        "http://",
        "http:///v1",
    ] {
        let error = endpoint(&[("ROOMHOST_OTLP_ENDPOINT", bad)]).expect_err(bad);
        assert!(error.starts_with("ROOMHOST_OTLP_ENDPOINT"), "{error}");
    }
}
