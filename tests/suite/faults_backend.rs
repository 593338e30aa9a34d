//! Backend faults during runs: the backend dies, hangs past its deadline, answers 503, sends
//! garbage, an over-long line, or resets the connection. Each run ends with a partial result (the
//! other sections are kept, the failed one is marked) or a clear `RUN_ERROR`; never a hang or a
//! cut stream; and afterwards no call, slot or run task is left.

use std::time::Duration;

use crate::support::harness::{slots, RunResult, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply};
use crate::support::parallelization::{
    assert_idle, failed, finished, section_of, server_with, subagents, ROOM,
};
use futures::future::join_all;
use roomhost::config::Settings;
use serde_json::{json, Value};

/// Longer than any of these runs may take: reaching it means a run hangs.
const HANG: Duration = Duration::from_secs(20);

fn sections_body(names: &[&str]) -> Value {
    json!({
        "prompt": format!("Write about faults: {}", names.join(", ")),
        "forwardedProps": {"strategy": "sectioning"},
    })
}

async fn run_bounded(server: &TestServer, body: Value) -> RunResult {
    tokio::time::timeout(HANG, server.run(ROOM, body))
        .await
        .expect("the run hung")
}

/// `(status, error)` of each section in `RUN_FINISHED.result.sections`.
fn section_report(result: &Value) -> Vec<(String, String)> {
    result["sections"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .map(|s| {
                    (
                        s["status"].as_str().unwrap_or_default().to_owned(),
                        s["error"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the document says under `## {name}`, up to the next heading.
fn section_text<'a>(document: &'a str, name: &str) -> &'a str {
    let heading = format!("## {name}\n\n");
    let start = document
        .find(&heading)
        .map(|at| at + heading.len())
        .unwrap_or_else(|| panic!("no section {name} in {document}"));
    let rest = &document[start..];
    rest.find("\n\n## ").map_or(rest, |end| &rest[..end])
}

/// The `SUBAGENT_ERROR` code of the subagent named `Section: {name}`.
fn error_code(run: &RunResult, name: &str) -> String {
    let label = format!("Section: {name}");
    let (id, _, end) = subagents(run)
        .into_iter()
        .find(|(_, n, _)| *n == label)
        .unwrap_or_else(|| panic!("no subagent {label}"));
    assert_eq!(end, "SUBAGENT_ERROR", "{label}");
    run.events
        .iter()
        .find(|e| e["type"] == "SUBAGENT_ERROR" && e["subagentRunId"] == id.as_str())
        .and_then(|e| e["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// One run of sections Alpha, Bravo, Charlie where Bravo's reply is `bad`; Alpha and Charlie
/// must be written, Bravo marked failed with `code`. Returns the run for further checks.
async fn bravo_fails(
    bad: impl Fn(MockReply) -> MockReply + Send + Sync + 'static,
    tweak: impl FnOnce(&mut Settings),
    code: &str,
) -> (RunResult, MockLlm) {
    let mock = MockLlm::start().await;
    mock.respond_with(move |req| {
        let reply = MockReply::new().text(format!("{} text here ", section_of(req)));
        if section_of(req) == "Bravo" {
            bad(reply)
        } else {
            reply
        }
    });
    let server = server_with(&mock, "", tweak).await;
    let run = run_bounded(&server, sections_body(&["Alpha", "Bravo", "Charlie"])).await;
    let result = finished(&run);
    let report = section_report(&result);
    assert_eq!(report.len(), 3);
    assert_eq!(report[0].0, "complete");
    assert_eq!(report[1].0, "failed", "{report:?}");
    assert_eq!(report[2].0, "complete");
    assert_eq!(error_code(&run, "Bravo"), code);
    let activity = &result["activity"];
    assert_eq!(activity["completed_tasks"], 2);
    assert_eq!(activity["failed_tasks"], 1);
    let text = run.final_text();
    assert_eq!(section_text(&text, "Alpha"), "Alpha text here ");
    assert_eq!(section_text(&text, "Charlie"), "Charlie text here ");
    assert_idle(&server, &mock).await;
    (run, mock)
}

#[tokio::test]
async fn a_garbage_line_fails_only_that_section() {
    let (run, _) = bravo_fails(MockReply::garbage_line, |_| {}, "llm_protocol_error").await;
    let text = run.final_text();
    assert!(section_text(&text, "Bravo").starts_with("_This section could not be written:"));
}

#[tokio::test]
async fn an_over_long_line_is_refused_without_reading_it_all() {
    // 4 MiB in 16 KiB writes 1 ms apart: the client must give up long before the mock is done.
    let (run, mock) = bravo_fails(
        |r| {
            r.oversized_line(4 * 1024 * 1024)
                .chunk_delay(Duration::from_millis(1))
        },
        |_| {},
        "llm_protocol_error",
    )
    .await;
    let report = section_report(&run.last()["result"]);
    assert!(report[1].1.contains("line longer than"), "{report:?}");
    assert_eq!(
        mock.disconnects(),
        1,
        "the over-long reply's connection was closed before its end"
    );
}

#[tokio::test]
async fn a_reset_connection_cuts_only_that_section_short() {
    let (run, mock) = bravo_fails(|r| r.reset_after(2), |_| {}, "llm_disconnected").await;
    let text = run.final_text();
    assert!(
        section_text(&text, "Bravo").starts_with("Bravo text \n\n_This section was cut short:"),
        "{text}"
    );
    assert_eq!(
        mock.request_count(),
        3,
        "nothing is retried once text streamed"
    );
}

#[tokio::test]
async fn a_backend_that_keeps_answering_503_fails_that_section_after_its_retries() {
    let (_, mock) = bravo_fails(|r| r.status(503, "overloaded"), |_| {}, "llm_http_error").await;
    let bravo = mock
        .requests()
        .iter()
        .filter(|r| section_of(r) == "Bravo")
        .count();
    assert_eq!(bravo, 3, "one try and two retries (max_retries: 2)");
}

#[tokio::test]
async fn answers_503_then_recovers() {
    let mock = MockLlm::start().await;
    for _ in 0..2 {
        mock.push(MockReply::new().status(503, "loading model"));
    }
    let server = server_with(&mock, "", |_| {}).await;
    let run = run_bounded(&server, sections_body(&["Alpha", "Bravo", "Charlie"])).await;
    let result = finished(&run);
    assert!(section_report(&result).iter().all(|(s, _)| s == "complete"));
    assert_eq!(mock.request_count(), 5, "two 503s retried, three answers");
    assert_idle(&server, &mock).await;
}

#[tokio::test]
async fn a_backend_hanging_past_the_deadlines_is_abandoned() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| match section_of(req).as_str() {
        // No headers ever: the first-byte deadline.
        "Bravo" => MockReply::new().hang_before_headers(),
        // Some text, then silence: the idle deadline.
        "Charlie" => MockReply::new().text("Charlie begins ").hang(),
        _ => MockReply::new().text("Alpha text here"),
    });
    let tweak = |s: &mut Settings| {
        s.llm.first_byte_timeout = Duration::from_millis(300);
        s.llm.idle_timeout = Duration::from_millis(300);
    };
    let server = server_with(&mock, "", tweak).await;
    let run = run_bounded(&server, sections_body(&["Alpha", "Bravo", "Charlie"])).await;
    let result = finished(&run);
    let report = section_report(&result);
    assert_eq!(report[0].0, "complete");
    for (status, error) in &report[1..] {
        assert_eq!(status, "failed");
        assert!(error.contains("timeout"), "{error}");
    }
    assert_eq!(error_code(&run, "Bravo"), "llm_timeout");
    assert_eq!(error_code(&run, "Charlie"), "llm_timeout");
    assert!(run.final_text().contains("Charlie begins"));
    assert_idle(&server, &mock).await;
    assert_eq!(mock.disconnects(), 2, "both hanging calls were closed");

    // Every section hanging: the run fails, clearly.
    mock.respond_with(|_| MockReply::new().hang_before_headers());
    let run = run_bounded(&server, sections_body(&["Alpha", "Bravo"])).await;
    let message = failed(&run, "llm_timeout");
    assert!(message.contains("timeout"), "{message}");
    assert_idle(&server, &mock).await;
}

#[tokio::test]
async fn the_backend_dying_mid_run_fails_only_what_it_was_writing() {
    const RUNS: usize = 10;
    let mock = MockLlm::start().await;
    // Alpha answers at once; the others stream for 10 s, so they are mid-reply when it dies.
    mock.respond_with(|req| {
        let section = section_of(req);
        if section.starts_with("Alpha") {
            MockReply::new().text(format!("{section} text here"))
        } else {
            MockReply::new()
                .text("slow ".repeat(1000))
                .chunk_delay(Duration::from_millis(10))
        }
    });
    let server = server_with(&mock, "", |s| s.llm.max_concurrency = slots(3 * RUNS)).await;
    let mut readers = join_all((0..RUNS).map(|i| {
        let names = [
            format!("Alpha{i}"),
            format!("Bravo{i}"),
            format!("Charlie{i}"),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        server.open_run(ROOM, sections_body(&names))
    }))
    .await;
    // Once every run has its first section and the others have begun streaming, the backend dies.
    let mut seen = Vec::new();
    for reader in &mut readers {
        let mut events = tokio::time::timeout(HANG, reader.read_until("SUBAGENT_FINISHED"))
            .await
            .expect("Alpha never finished");
        events.extend(reader.read_until("TEXT_MESSAGE_CONTENT").await);
        seen.push(events);
    }
    mock.stop();
    let rest = join_all(
        readers
            .iter_mut()
            .map(|r| tokio::time::timeout(HANG, r.read_to_end())),
    )
    .await;
    for (i, (mut events, rest)) in seen.into_iter().zip(rest).enumerate() {
        events.extend(rest.expect("a run hung after the backend died"));
        let run = RunResult {
            status: 200,
            content_type: "text/event-stream".into(),
            error_body: Value::Null,
            events,
        };
        let result = finished(&run);
        let report = section_report(&result);
        let statuses: Vec<&str> = report.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(statuses, ["complete", "failed", "failed"], "run {i}");
        assert!(run.final_text().contains(&format!("Alpha{i} text here")));
        let text = run.final_text();
        for name in ["Bravo", "Charlie"] {
            let part = section_text(&text, &format!("{name}{i}"));
            assert!(
                part.starts_with("_This section could not be written:")
                    || part.contains("_This section was cut short:"),
                "run {i}, {name}: {part}"
            );
        }
    }
    assert_idle(&server, &mock).await;

    // A run after the backend is gone fails at once, saying why.
    let run = run_bounded(&server, sections_body(&["Alpha", "Bravo"])).await;
    let message = failed(&run, "llm_unreachable");
    assert!(message.contains("cannot connect"), "{message}");
    assert_idle(&server, &mock).await;
}
