//! Load: 200 concurrent runs of the parallelization room (sectioning, map-reduce, voting) against
//! the mock, through a concurrency limit far below the calls asked for. Every stream is complete
//! and well-ordered, every answer is exactly what its tasks produced, the activity patches rebuild
//! the final activity, and every mock reply lands in exactly one place: nothing lost, nothing
//! duplicated, nothing crossed between runs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::harness::RunResult;
use crate::support::harness::{eventually, slots};
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply};
use crate::support::parallelization::{finished, server_with, subagents, ROOM};
use futures::future::join_all;
use serde_json::{json, Value};

const RUNS: usize = 200;
const LIMIT: usize = 16;

/// The text reply to the mock's `index`th request: it names the request, so each answer can be
/// traced to exactly one call.
fn reply_text(index: usize) -> String {
    format!("req{index} alpha bravo charlie delta echo foxtrot ")
}

fn request_index(text: &str) -> Option<usize> {
    text.strip_prefix("req")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Debug, Clone)]
enum Job {
    Sections(Vec<String>),
    Documents,
    Vote,
}

fn job(i: usize) -> (Job, Value) {
    let (job, prompt, strategy) = match i % 10 {
        0..=5 => {
            let names: Vec<String> = ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
                .iter()
                .take(2 + i % 4)
                .map(|n| format!("{n}{i}"))
                .collect();
            let prompt = format!("Write about topic {i}: {}", names.join(", "));
            (Job::Sections(names), prompt, "sectioning")
        }
        6 | 7 => (
            Job::Documents,
            format!("Summarize: report {i} one | report {i} two | report {i} three"),
            "map_reduce",
        ),
        _ => (
            Job::Vote,
            format!("Is plan {i} better than the other plan?"),
            "voting",
        ),
    };
    (
        job,
        json!({"prompt": prompt, "forwardedProps": {"strategy": strategy}}),
    )
}

/// Records which mock request a text came from and checks it is that request's reply verbatim.
fn trace(text: &str, seen: &mut BTreeMap<usize, usize>) {
    let index = request_index(text).unwrap_or_else(|| panic!("untraceable text {text:?}"));
    assert_eq!(text, reply_text(index), "reply {index} arrived altered");
    *seen.entry(index).or_default() += 1;
}

fn check_run(i: usize, job: &Job, run: &RunResult, seen: &mut BTreeMap<usize, usize>) {
    let result = finished(run);
    let subs = subagents(run);
    for (id, name, end) in &subs {
        assert_eq!(end, "SUBAGENT_FINISHED", "run {i}: {name}");
        let output = result["activity"]["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["subagent_run_id"] == id.as_str()))
            .map(|r| r["output"].clone());
        assert_eq!(
            output,
            Some(json!(run.subagent_text(id))),
            "run {i}: the activity's output of {name} differs from what it streamed"
        );
    }
    let answer = run.final_text();
    match job {
        Job::Sections(names) => {
            let labels: Vec<String> = subs.iter().map(|(_, n, _)| n.clone()).collect();
            let want: Vec<String> = names.iter().map(|n| format!("Section: {n}")).collect();
            assert_eq!(labels, want, "run {i}");
            let body: Vec<String> = names
                .iter()
                .zip(&subs)
                .map(|(name, (id, _, _))| format!("## {name}\n\n{}", run.subagent_text(id)))
                .collect();
            let start = answer.find("## ").unwrap_or(0);
            assert_eq!(&answer[start..], body.join("\n\n"), "run {i}: document");
            for (id, _, _) in &subs {
                trace(&run.subagent_text(id), seen);
            }
        }
        Job::Documents => {
            assert_eq!(subs.len(), 3, "run {i}");
            for (id, _, _) in &subs {
                trace(&run.subagent_text(id), seen);
            }
            trace(&answer, seen);
        }
        Job::Vote => {
            assert_eq!(subs.len(), 3, "run {i}");
            let votes = &result["votes"];
            let winner = votes["answer"].as_str().unwrap_or_default();
            let ballots = run
                .of_type("SUBAGENT_FINISHED")
                .iter()
                .filter(|e| e["result"]["answer"] == winner)
                .count();
            assert_eq!(votes["count"], ballots, "run {i}: {votes}");
            assert!(answer.starts_with(&format!("**{winner}**")), "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_runs_are_complete_and_exact() {
    let mock = MockLlm::start().await;
    mock.respond_with(|req| {
        let reply = match req.schema() {
            Some(_) => auto_reply(req, 4),
            None => MockReply::new().text(reply_text(req.index)),
        };
        reply.chunk_delay(Duration::from_millis(2))
    });
    let server = server_with(&mock, "num_voters: 3", |s| {
        s.llm.max_concurrency = slots(LIMIT);
        s.llm.max_queue = RUNS * 6;
    })
    .await;

    let jobs: Vec<(Job, Value)> = (0..RUNS).map(job).collect();
    let runs = join_all(jobs.iter().map(|(_, body)| server.run(ROOM, body.clone()))).await;

    let mut seen = BTreeMap::new();
    for (i, ((job, _), run)) in jobs.iter().zip(&runs).enumerate() {
        check_run(i, job, run, &mut seen);
    }
    let text_calls: Vec<usize> = mock
        .requests()
        .iter()
        .filter(|r| r.schema().is_none())
        .map(|r| r.index)
        .collect();
    let traced: Vec<usize> = seen.keys().copied().collect();
    assert_eq!(traced.len(), text_calls.len(), "replies lost");
    assert_eq!(
        traced,
        {
            let mut sorted = text_calls.clone();
            sorted.sort_unstable();
            sorted
        },
        "replies that went nowhere, or texts from no call"
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "replies delivered twice: {:?}",
        seen.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert_eq!(
        mock.peak_in_flight(),
        LIMIT,
        "the limit was reached, never passed"
    );
    eventually("every run task and LLM slot is released", || {
        let load = server.app.llm.load();
        server.app.runs.is_empty() && load.in_flight == 0 && load.queued == 0
    })
    .await;
    assert_eq!(mock.in_flight(), 0);
}
