//! The debate room: PRO then CON each round, each seeing every earlier argument; both judges of
//! a round at once, each reading both sides; totals, the tie rule, failed judges, cancel, and the
//! legacy profile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::harness::{
    eventually, test_settings, verify_agui, RunResult, TempDir, TestServer,
};
use crate::support::mock_llm::{MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{prompt, statuses, system_of};
use roomhost::agents::debate::prompts::{DEBATER_MARK, JUDGE_MARK};
use roomhost::agents::Registry;

const MOTION: &str = "Pineapple belongs on pizza";

async fn server(mock: &MockLlm, rounds: u32) -> TestServer {
    let room = format!(
        "id: debate\nname: Debate\nagent:\n  kind: factory\n  factory_name: crazy_glue.factories.debate_factory.create_debate_agent\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n    think: \"off\"\n    num_rounds: {rounds}\n"
    );
    let dir = TempDir::with_rooms(&[&room]);
    let settings = test_settings(&mock.url(), dir.path.clone());
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

/// What a call is: `PRO`/`CON` for an argument, `judge PRO`/`judge CON` for a judgement.
fn call_of(req: &MockRequest) -> String {
    let system = system_of(req);
    let side = if system.contains("PRO side") {
        "PRO"
    } else {
        "CON"
    };
    if system.starts_with(JUDGE_MARK) {
        format!("judge {side}")
    } else if system.starts_with(DEBATER_MARK) {
        side.to_owned()
    } else {
        panic!("unknown call: {system}")
    }
}

/// Arguments name their side and round; judges score PRO `pro` and CON `con`.
fn debaters_and_judges(pro: u8, con: u8) -> impl Fn(&MockRequest) -> MockReply {
    move |req| {
        let call = call_of(req);
        let user = req.last_user().unwrap_or_default();
        match call.as_str() {
            "judge PRO" => {
                MockReply::new().text(format!(r#"{{"score": {pro}, "reasoning": "pro reasons"}}"#))
            }
            "judge CON" => {
                MockReply::new().text(format!(r#"{{"score": {con}, "reasoning": "con reasons"}}"#))
            }
            side => {
                let round = user.matches("CON: ").count() + 1;
                MockReply::new().text(format!("{side} case {round}."))
            }
        }
    }
}

/// Checks the stream and returns `RUN_FINISHED.result`; the activity rebuilt from its snapshot
/// and deltas equals the one in the result.
fn finished(run: &RunResult) -> Value {
    assert_eq!(run.status, 200, "{:?}", run.error_body);
    if let Err(e) = verify_agui(&run.events) {
        panic!("{e}\n{:#?}", run.types());
    }
    let last = run.last();
    assert_eq!(last["type"], "RUN_FINISHED", "{last}");
    let result = last["result"].clone();
    assert_eq!(run.activity_state(), result["activity"]);
    assert_eq!(
        run.final_text(),
        result["text"].as_str().unwrap_or_default()
    );
    result
}

#[tokio::test]
async fn each_round_pro_speaks_then_con_then_both_judges_read_both_sides() {
    let mock = MockLlm::start().await;
    mock.respond_with(debaters_and_judges(7, 6));
    let server = server(&mock, 2).await;
    let run = server.run("debate", prompt(MOTION)).await;
    let result = finished(&run);

    let calls: Vec<String> = mock.requests().iter().map(call_of).collect();
    let judges = |calls: &[String]| {
        let mut j = calls.to_vec();
        j.sort();
        j
    };
    assert_eq!(calls[..2], ["PRO", "CON"]);
    assert_eq!(judges(&calls[2..4]), ["judge CON", "judge PRO"]);
    assert_eq!(calls[4..6], ["PRO", "CON"]);
    assert_eq!(judges(&calls[6..]), ["judge CON", "judge PRO"]);
    let requests = mock.requests();
    let user = |i: usize| requests[i].last_user().unwrap_or_default().to_owned();
    assert!(
        user(1).contains("PRO: PRO case 1."),
        "CON sees PRO: {}",
        user(1)
    );
    assert!(user(4).contains("PRO: PRO case 1.") && user(4).contains("CON: CON case 1."));
    for judge in [2, 3, 6, 7] {
        assert!(
            user(judge).contains("PRO: ") && user(judge).contains("CON: "),
            "{}",
            user(judge)
        );
    }

    assert_eq!(result["pro_total"], 14);
    assert_eq!(result["con_total"], 12);
    assert_eq!(result["winner"], "pro");
    assert_eq!(result["llm_requests"], 8);
    let activity = &result["activity"];
    assert_eq!(activity["pro_score"], 14);
    assert_eq!(activity["con_score"], 12);
    assert_eq!(activity["round"], 2);
    assert_eq!(activity["total_rounds"], 2);
    assert_eq!(activity["winner"], "pro");
    assert_eq!(
        activity["rounds"],
        json!([
            {"round": 1, "pro_score": 7, "con_score": 6},
            {"round": 2, "pro_score": 7, "con_score": 6},
        ])
    );
    assert_eq!(activity["total_tasks"], 8);
    assert_eq!(activity["completed_tasks"], 8);
    assert_eq!(
        statuses(&run),
        [
            "starting",
            "pro_speaking",
            "con_speaking",
            "judging",
            "pro_speaking",
            "con_speaking",
            "judging",
            "complete"
        ]
    );
    assert_eq!(run.of_type("SUBAGENT_STARTED").len(), 8);
    let text = run.final_text();
    assert!(text.contains("PRO wins: PRO 14, CON 12."), "{text}");
    assert!(text.contains("**CON:** CON case 2."), "{text}");
}

#[tokio::test]
async fn equal_totals_are_a_tie() {
    let mock = MockLlm::start().await;
    mock.respond_with(debaters_and_judges(5, 5));
    let server = server(&mock, 1).await;
    let result = finished(&server.run("debate", prompt(MOTION)).await);
    assert_eq!(result["winner"], "tie");
    assert_eq!(result["activity"]["winner"], "tie");
    assert!(result["text"]
        .as_str()
        .unwrap_or_default()
        .contains("It is a tie: PRO 5, CON 5."));
}

#[tokio::test]
async fn a_failed_judge_leaves_its_round_unscored_and_the_debate_goes_on() {
    let mock = MockLlm::start().await;
    let judged = Arc::new(AtomicUsize::new(0));
    let normal = debaters_and_judges(8, 4);
    mock.respond_with(move |req| {
        // The first CON judgement fails (a 400 is not retried); the others answer.
        if call_of(req) == "judge CON" && judged.fetch_add(1, Ordering::SeqCst) == 0 {
            return MockReply::new().status(400, "the judge broke");
        }
        normal(req)
    });
    let server = server(&mock, 2).await;
    let run = server.run("debate", prompt(MOTION)).await;
    let result = finished(&run);
    assert_eq!(result["pro_total"], 8, "only round 2 counts");
    assert_eq!(result["con_total"], 4);
    assert_eq!(result["winner"], "pro");
    let activity = &result["activity"];
    assert_eq!(activity["rounds"][0], json!({"round": 1}));
    assert_eq!(activity["failed_tasks"], 1);
    let notes = activity["notes"].to_string();
    assert!(notes.contains("Round 1 was left unscored"), "{notes}");
    assert!(
        notes.contains("judge of round 1's CON side failed"),
        "{notes}"
    );
    let error = run.of_type("SUBAGENT_ERROR");
    assert_eq!(error.len(), 1);
}

#[tokio::test]
async fn no_round_scored_is_a_run_error() {
    let mock = MockLlm::start().await;
    let normal = debaters_and_judges(8, 4);
    mock.respond_with(move |req| {
        if call_of(req).starts_with("judge") {
            MockReply::new().text("no score at all")
        } else {
            normal(req)
        }
    });
    let server = server(&mock, 1).await;
    let run = server.run("debate", prompt(MOTION)).await;
    verify_agui(&run.events).expect("valid stream");
    let last = run.last();
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], "all_tasks_failed");
    assert_eq!(run.activity_state()["status"], "failed");
    // Each judge was asked again once for the JSON.
    assert_eq!(mock.request_count(), 2 + 4);
}

#[tokio::test]
async fn a_failed_argument_ends_the_run_with_the_llm_code() {
    let mock = MockLlm::start().await;
    let normal = debaters_and_judges(8, 4);
    mock.respond_with(move |req| {
        if call_of(req) == "CON" {
            MockReply::new().status(404, "model not found")
        } else {
            normal(req)
        }
    });
    let server = server(&mock, 3).await;
    let run = server.run("debate", prompt(MOTION)).await;
    let last = run.last();
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], "model_not_found");
    assert_eq!(mock.request_count(), 2, "nothing after the failed argument");
}

#[tokio::test]
async fn both_judges_are_in_flight_at_once_and_leaving_closes_them() {
    let mock = MockLlm::start().await;
    let normal = debaters_and_judges(8, 4);
    mock.respond_with(move |req| {
        if call_of(req).starts_with("judge") {
            MockReply::new().text("thinking it over").hang()
        } else {
            normal(req)
        }
    });
    let server = server(&mock, 2).await;
    let mut reader = server.open_run("debate", prompt(MOTION)).await;
    // A judge that waited for the other would leave one call in flight, never two.
    eventually("both judges in flight", || {
        mock.in_flight() == 2 && mock.request_count() == 4
    })
    .await;
    reader.read_until("SUBAGENT_STARTED").await;
    drop(reader);
    eventually("both judges closed", || mock.in_flight() == 0).await;
    assert_eq!(mock.disconnects(), 2);
    eventually("the run ended", || server.app.runs.is_empty()).await;
}

#[tokio::test]
async fn a_legacy_client_gets_no_subagents_and_the_same_result() {
    let mock = MockLlm::start().await;
    mock.respond_with(debaters_and_judges(6, 7));
    let server = server(&mock, 1).await;
    let body = json!({"prompt": MOTION, "forwardedProps": {"agui_profile": "legacy"}});
    let run = server.run("debate", body).await;
    let result = finished(&run);
    assert!(
        run.types().iter().all(|t| !t.starts_with("SUBAGENT")),
        "{:?}",
        run.types()
    );
    assert!(run
        .of_type("TEXT_MESSAGE_START")
        .iter()
        .all(|e| e.get("subagentRunId").is_none()));
    assert_eq!(result["winner"], "con");
    assert_eq!(result["activity"]["results"][0]["output"], "PRO case 1.");
}

#[tokio::test]
async fn the_shipped_room_file_loads_in_the_originals_format() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rooms/debate/room_config.yaml");
    let text = std::fs::read_to_string(dir).expect("shipped");
    let mock = MockLlm::start().await;
    mock.respond_with(debaters_and_judges(6, 6));
    let server = TestServer::start(&mock.url(), &text.replace("gpt-oss:20b", "mock")).await;
    let (status, room) = server.get("/rooms/debate").await;
    assert_eq!(status, 200);
    assert_eq!(
        room["agent"]["factory_name"],
        "crazy_glue.factories.debate_factory.create_debate_agent"
    );
    assert!(room["suggestions"].as_array().is_some_and(|s| s.len() >= 5));
}
