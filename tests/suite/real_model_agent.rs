#![cfg(feature = "real-model")]
//! The room's three suggestions through the router against a real model (SmolLM2-135M), behind
//! llama-cpp-python's OpenAI-compatible server and behind the Ollama-native shim
//! (`scripts/ollama_shim.py`, what `ROOMHOST_LLM_API=ollama` talks to), both started by
//! `scripts/with-real-model.sh`. Asserts structure, never wording.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::harness::{
    real_llm, real_ollama, slots, test_settings, verify_agui, RunResult, TempDir, TestServer,
};
use crate::support::parallelization::{finished, prompt, subagents};
use roomhost::agents::{parallelization, AgentDeps, EventSink, Registry};
use roomhost::agui::RunAgentInput;
use roomhost::config::LlmConfig;
use roomhost::llm::{build_client, LlmApi, OpenAiJsonMode};
use serde_json::json;

/// The shipped room, as a user runs it.
const ROOM: &str = "parallelization";

fn real_llm_settings(api: LlmApi) -> (LlmConfig, String) {
    let (url, model) = match api {
        LlmApi::Openai => real_llm(),
        LlmApi::Ollama => real_ollama(),
    };
    let mut settings = test_settings(&url, PathBuf::new()).llm;
    settings.api = api;
    // llama-cpp-python's server answers 500 to the standard json_schema form
    // (ROOMHOST_OPENAI_JSON_MODE=json_object).
    settings.openai_json_mode = OpenAiJsonMode::JsonObject;
    // Each serves one call at a time; the others wait in its queue (or in ours).
    settings.max_concurrency = slots(1);
    settings.first_byte_timeout = Duration::from_secs(300);
    settings.idle_timeout = Duration::from_secs(60);
    settings.request_timeout = Duration::from_secs(600);
    (settings, model)
}

/// The router with the shipped rooms, unedited, and the model set as `ROOMHOST_MODEL` sets it.
async fn real_server(api: LlmApi) -> TestServer {
    let (llm, model) = real_llm_settings(api);
    let mut settings = test_settings(&llm.base_urls[0], shipped_rooms());
    settings.llm = llm;
    settings.model = Some(model);
    TestServer::start_with(settings, Registry::builtin(), TempDir::new()).await
}

fn shipped_rooms() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rooms")
}

/// Runs `text` in the room and says how long it took. A tiny model on a busy 2-core machine can
/// take minutes for a whole run, longer than the harness client waits.
async fn run(server: &TestServer, text: &str) -> RunResult {
    post(server, prompt(text), text).await
}

/// Posts `body` (a run input), named `text` in the log.
async fn post(server: &TestServer, body: serde_json::Value, text: &str) -> RunResult {
    post_to(server, ROOM, body, text).await
}

/// Posts `body` to `room`.
async fn post_to(
    server: &TestServer,
    room: &str,
    mut body: serde_json::Value,
    text: &str,
) -> RunResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .expect("client");
    let started = Instant::now();
    // The full (AG-UI 1.0) stream, so that the tasks show as subagents.
    body["protocolVersion"] = json!("1.0");
    let response = client
        .post(format!("{}/rooms/{room}/run", server.url))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let run = RunResult::read(response).await;
    eprintln!("'{text}' took {:.1?}", started.elapsed());
    run
}

async fn sectioning_writes_the_three_sections_in_order(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(
        &server,
        "Write about AI ethics: Privacy, Bias, Transparency",
    )
    .await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "sectioning");
    let ends: Vec<String> = subagents(&run).into_iter().map(|(_, _, e)| e).collect();
    assert_eq!(ends, ["SUBAGENT_FINISHED"; 3]);
    let text = run.final_text();
    let at = |heading: &str| {
        text.find(heading)
            .unwrap_or_else(|| panic!("no {heading} in {text}"))
    };
    assert!(at("## Privacy\n") < at("## Bias\n"));
    assert!(at("## Bias\n") < at("## Transparency\n"));
    let last = &text[at("## Transparency\n") + "## Transparency\n".len()..];
    assert!(!last.trim().is_empty(), "the last section has text");
}

async fn voting_answers_among_the_options_with_a_count(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(&server, "Is remote work better than office work?").await;
    let result = finished(&run);
    let votes = &result["votes"];
    let answer = votes["answer"].as_str().unwrap_or("");
    assert!(["yes", "no"].contains(&answer), "{votes}");
    let count = votes["count"].as_u64().unwrap_or(0);
    let valid = votes["valid"].as_u64().unwrap_or(0);
    assert!(
        valid >= 2 && count * 2 >= valid,
        "a quorum and a plurality: {votes}"
    );
    assert!(
        run.final_text()
            .starts_with(&format!("**{answer}** ({count} of 3 voters)")),
        "{}",
        run.final_text()
    );
}

async fn map_reduce_summarizes_the_three_articles(api: LlmApi) {
    let server = real_server(api).await;
    let run = run(&server, "Summarize: Article1 | Article2 | Article3").await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "map_reduce");
    assert_eq!(result["documents"], 3);
    assert_eq!(result["failed"].as_array().map(Vec::len), Some(0));
    let activity = result["activity"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        activity.iter().all(|r| r["status"] == "complete"),
        "{activity:?}"
    );
    assert!(!run.final_text().trim().is_empty());
}

/// A follow-up in a thread, the whole history sent as chat frontends do: detected as one, and
/// answered by one call that carries the earlier turns (the mock tests show the turns in the call;
/// this one shows a real model answers with them).
async fn a_follow_up_is_answered_in_one_call_with_the_conversation(api: LlmApi) {
    let server = real_server(api).await;
    let follow_up = "Now summarise that in one paragraph.";
    let body = json!({
        "messages": [
            {"id": "u1", "role": "user", "content": "Write about lighthouses: History, Keepers"},
            {"id": "a1", "role": "assistant", "content": "## History\n\nLighthouses guided ships \
                into harbours for centuries, first with fires and later with lamps and lenses.\n\n\
                ## Keepers\n\nKeepers lived at the lighthouse, trimmed the wicks and kept the \
                light burning through every night and storm."},
            {"id": "x1", "role": "activity", "activityType": "parallelization",
             "content": {"status": "complete", "strategy": "sectioning"}},
            {"id": "u2", "role": "user", "content": follow_up},
        ]
    });
    let run = post(&server, body, follow_up).await;
    let result = finished(&run);
    assert_eq!(result["strategy"], "follow_up");
    assert_eq!(result["strategy_source"], "conversation");
    assert_eq!(result["activity"]["history"]["turns_used"], 2);
    assert!(subagents(&run).is_empty(), "one call, no fan-out");
    assert!(!run.final_text().trim().is_empty());
    eprintln!("follow-up answer: {}", run.final_text());
}

/// Every other shipped room's first suggestion, as the page offers it: a valid stream that ends
/// with an answer. A debate may end `all_tasks_failed` when no judge of the tiny model gave a
/// score it could read, or `llm_truncated` when the tiny server cuts a late round's stream (its
/// context fills over three rounds); its first arguments are there all the same.
async fn every_rooms_first_suggestion_runs(api: LlmApi) {
    let server = real_server(api).await;
    for room in ["chat", "debate"] {
        let (status, config) = server.get(&format!("/rooms/{room}")).await;
        assert_eq!(status, 200, "{room}");
        let text = config["suggestions"][0].as_str().expect("a suggestion");
        let run = post_to(&server, room, prompt(text), text).await;
        if let Err(e) = verify_agui(&run.events) {
            panic!("{room}: {e}");
        }
        let last = run.last();
        match last["type"].as_str() {
            Some("RUN_FINISHED") => assert!(!run.final_text().trim().is_empty(), "{room}"),
            _ if room == "debate" => {
                assert!(
                    matches!(
                        last["code"].as_str(),
                        Some("all_tasks_failed" | "llm_truncated")
                    ),
                    "{last}"
                );
                let results = &run.activity_state()["results"];
                assert!(results[0]["output"].as_str().is_some_and(|t| !t.is_empty()));
            }
            _ => panic!("{room}: {last}"),
        }
        eprintln!("{room}: {}", run.final_text());
    }
}

#[tokio::test]
async fn openai_every_rooms_first_suggestion_runs() {
    every_rooms_first_suggestion_runs(LlmApi::Openai).await;
}

#[tokio::test]
async fn openai_a_follow_up_is_answered_in_one_call_with_the_conversation() {
    a_follow_up_is_answered_in_one_call_with_the_conversation(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_a_follow_up_is_answered_in_one_call_with_the_conversation() {
    a_follow_up_is_answered_in_one_call_with_the_conversation(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_sectioning_writes_the_three_sections_in_order() {
    sectioning_writes_the_three_sections_in_order(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_sectioning_writes_the_three_sections_in_order() {
    sectioning_writes_the_three_sections_in_order(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_voting_answers_among_the_options_with_a_count() {
    voting_answers_among_the_options_with_a_count(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_voting_answers_among_the_options_with_a_count() {
    voting_answers_among_the_options_with_a_count(LlmApi::Ollama).await;
}

#[tokio::test]
async fn openai_map_reduce_summarizes_the_three_articles() {
    map_reduce_summarizes_the_three_articles(LlmApi::Openai).await;
}

#[tokio::test]
async fn ollama_map_reduce_summarizes_the_three_articles() {
    map_reduce_summarizes_the_three_articles(LlmApi::Ollama).await;
}

/// Voting without the schema: each ballot is read from JSON in the reply, a re-ask or the prose,
/// or the voter fails; the run ends either way, with a vote or with `quorum_not_met`.
#[tokio::test]
async fn ollama_voting_without_the_schema_reads_what_it_can() {
    let (mut settings, model) = real_llm_settings(LlmApi::Ollama);
    settings.structured_output = false;
    let deps = AgentDeps {
        llm: build_client(&settings.settings()).expect("client"),
        model_override: Some(model),
    };
    let agent =
        parallelization::create(&json!({"num_voters": 3, "seed": 7}), &deps).expect("agent");
    let input: RunAgentInput = serde_json::from_value(json!({
        "messages": [{"id": "1", "role": "user", "content": "Is remote work better than office work?"}],
        "forwardedProps": {"strategy": "voting"},
    }))
    .expect("input");
    let started = Instant::now();
    let outcome = agent
        .start(input, EventSink::discard())
        .expect("starts")
        .run
        .await;
    eprintln!("voting without the schema took {:.1?}", started.elapsed());
    match outcome {
        Ok(output) => {
            let votes = output.result()["votes"].clone();
            for ballot in votes["ballots"].as_array().into_iter().flatten() {
                let source = &ballot["source"];
                assert!(
                    ["json", "reask", "free_text"].contains(&source.as_str().unwrap_or(""))
                        || ballot["error"].is_string(),
                    "{ballot}"
                );
            }
            eprintln!("ballots: {}", votes["ballots"]);
        }
        Err(e) => assert_eq!(e.code().as_str(), "quorum_not_met", "{e}"),
    }
}
