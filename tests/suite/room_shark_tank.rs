//! The shark tank: the planner alone, then the four analyses at once, then the four decisions at
//! once, each told the others' leanings; the verdict, a failed shark, prose answers, the legacy
//! profile and the shipped room file.

use std::sync::Arc;

use serde_json::json;

use crate::support::harness::{eventually, test_settings, verify_agui, TempDir, TestServer};
use crate::support::mock_llm::{MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{finished, prompt, statuses, system_of};
use roomhost::agents::shark_tank::prompts::{ANALYST_MARK, DECIDER_MARK, PLANNER_MARK, SHARKS};
use roomhost::agents::Registry;

const PITCH: &str = "An app that matches dog owners for playdates";

async fn server(mock: &MockLlm) -> TestServer {
    let room = "id: shark-tank\nname: Shark Tank\nagent:\n  kind: factory\n  factory_name: crazy_glue.factories.shark_tank_factory.create_shark_tank_agent\n  with_agent_config: true\n  extra_config:\n    model_name: mock\n    think: \"off\"\n";
    let dir = TempDir::with_rooms(&[room]);
    let settings = test_settings(&mock.url(), dir.path.clone());
    TestServer::start_with(settings, Registry::builtin(), dir).await
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Plan,
    Analysis(usize),
    Decision(usize),
}

fn call_of(req: &MockRequest) -> Call {
    let system = system_of(req);
    if system.starts_with(PLANNER_MARK) {
        return Call::Plan;
    }
    let shark = SHARKS
        .iter()
        .position(|(name, _)| system.starts_with(&format!("You are the {name}")))
        .unwrap_or_else(|| panic!("unknown shark: {system}"));
    if system.contains(ANALYST_MARK) {
        Call::Analysis(shark)
    } else if system.contains(DECIDER_MARK) {
        Call::Decision(shark)
    } else {
        panic!("unknown call: {system}")
    }
}

/// Shark `i` is as excited as `excitement[i]` and invests when that is 8 or more.
fn tank(excitement: [u8; 4]) -> impl Fn(&MockRequest) -> MockReply {
    move |req| match call_of(req) {
        Call::Plan => MockReply::new().text("Problem: lonely dogs. Solution: an app."),
        Call::Analysis(s) => MockReply::new().text(
            json!({"excitement": excitement[s], "reasons": format!("reasons {s}")}).to_string(),
        ),
        Call::Decision(s) => {
            let invest = excitement[s] >= 8;
            MockReply::new().text(
                json!({"invest": invest, "amount": 50000, "equity": 10, "conditions": "a vet on board"})
                    .to_string(),
            )
        }
    }
}

#[tokio::test]
async fn the_planner_then_four_analyses_then_four_decisions_that_see_the_others_leanings() {
    let mock = MockLlm::start().await;
    mock.respond_with(tank([9, 3, 6, 2]));
    let server = server(&mock).await;
    let run = server.run("shark-tank", prompt(PITCH)).await;
    let result = finished(&run);

    let requests = mock.requests();
    let calls: Vec<Call> = requests.iter().map(call_of).collect();
    assert_eq!(calls.len(), 9);
    assert_eq!(calls[0], Call::Plan);
    let mut analysed: Vec<usize> = calls[1..5]
        .iter()
        .map(|c| match c {
            Call::Analysis(s) => *s,
            other => panic!("{other:?} among the analyses"),
        })
        .collect();
    analysed.sort();
    assert_eq!(analysed, [0, 1, 2, 3]);
    for (req, call) in requests.iter().zip(&calls) {
        let user = req.last_user().unwrap_or_default();
        match call {
            Call::Analysis(_) => assert!(user.contains("Problem: lonely dogs."), "{user}"),
            Call::Decision(1) => {
                assert!(user.contains("excitement 3/10. reasons 1"), "{user}");
                assert!(user.contains("- Market Shark: interested"), "{user}");
                assert!(user.contains("- Money Shark: interested"), "{user}");
                assert!(user.contains("- Risk Shark: not interested"), "{user}");
                assert!(!user.contains("- Tech Shark"), "not its own: {user}");
            }
            _ => {}
        }
    }
    assert!(calls[5..].iter().all(|c| matches!(c, Call::Decision(_))));

    assert_eq!(result["funded"], true);
    let activity = &result["activity"];
    assert_eq!(activity["funded"], true);
    assert_eq!(activity["sharks"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        activity["analyses"][0],
        json!({"shark": "Market Shark", "excitement": 9, "interested": true})
    );
    assert_eq!(activity["analyses"][3]["interested"], false);
    assert_eq!(
        activity["deals"][0],
        json!({"shark": "Market Shark", "invest": true, "amount": 50000.0, "equity": 10.0, "conditions": "a vet on board"})
    );
    assert_eq!(
        activity["deals"][1],
        json!({"shark": "Tech Shark", "invest": false})
    );
    assert_eq!(
        statuses(&run),
        ["starting", "planning", "analyzing", "deciding", "complete"]
    );
    assert_eq!(run.of_type("SUBAGENT_STARTED").len(), 9);
    let text = run.final_text();
    assert!(text.contains("Funded: 1 shark(s) invest."), "{text}");
    assert!(
        text.contains(
            "**Market Shark** (9/10): reasons 0 — invests $50000 for 10% (a vet on board)."
        ),
        "{text}"
    );
}

#[tokio::test]
async fn no_shark_investing_is_no_deal() {
    let mock = MockLlm::start().await;
    mock.respond_with(tank([5, 3, 7, 2]));
    let server = server(&mock).await;
    let result = finished(&server.run("shark-tank", prompt(PITCH)).await);
    assert_eq!(result["funded"], false);
    assert_eq!(result["activity"]["funded"], false);
    assert!(result["text"]
        .as_str()
        .unwrap_or_default()
        .contains("No deal: no shark invests."));
}

#[tokio::test]
async fn the_four_analyses_are_in_flight_at_once() {
    let mock = MockLlm::start().await;
    let normal = tank([9, 9, 9, 9]);
    mock.respond_with(move |req| match call_of(req) {
        Call::Analysis(_) => MockReply::new().text("weighing it").hang(),
        _ => normal(req),
    });
    let server = server(&mock).await;
    let reader = server.open_run("shark-tank", prompt(PITCH)).await;
    // An analysis that waited for another would leave fewer calls in flight.
    eventually("four analyses in flight", || {
        mock.in_flight() == 4 && mock.request_count() == 5
    })
    .await;
    assert!(mock
        .requests()
        .iter()
        .all(|r| !matches!(call_of(r), Call::Decision(_))));
    drop(reader);
    eventually("all closed", || mock.in_flight() == 0).await;
}

#[tokio::test]
async fn a_failed_analysis_keeps_its_shark_out_and_a_failed_decision_is_no_deal() {
    let mock = MockLlm::start().await;
    let normal = Arc::new(tank([9, 8, 3, 2]));
    mock.respond_with(move |req| match call_of(req) {
        Call::Analysis(3) => MockReply::new().status(400, "the risk shark broke"),
        Call::Decision(0) => MockReply::new().status(400, "the market shark's decision broke"),
        _ => normal(req),
    });
    let server = server(&mock).await;
    let run = server.run("shark-tank", prompt(PITCH)).await;
    let result = finished(&run);
    assert_eq!(
        mock.request_count(),
        1 + 4 + 3,
        "no decision for the shark without an analysis"
    );
    let activity = &result["activity"];
    assert_eq!(activity["analyses"].as_array().map(Vec::len), Some(3));
    assert_eq!(activity["deals"].as_array().map(Vec::len), Some(2));
    assert_eq!(activity["failed_tasks"], 2);
    let notes = activity["notes"].to_string();
    assert!(
        notes.contains("The Risk Shark's analysis failed"),
        "{notes}"
    );
    assert!(
        notes.contains("The Market Shark's decision failed"),
        "{notes}"
    );
    assert_eq!(result["funded"], true, "the Tech Shark invests");
    assert!(run
        .final_text()
        .contains("**Market Shark** (9/10): reasons 0 — gave no decision."));
}

#[tokio::test]
async fn a_failed_planner_ends_the_run_with_the_llm_code() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().status(404, "model not found"));
    let server = server(&mock).await;
    let run = server.run("shark-tank", prompt(PITCH)).await;
    verify_agui(&run.events).expect("valid stream");
    let last = run.last();
    assert_eq!(last["type"], "RUN_ERROR", "{last}");
    assert_eq!(last["code"], "model_not_found");
    assert_eq!(run.activity_state()["status"], "failed");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn answers_in_prose_are_read_after_one_reask() {
    let mock = MockLlm::start().await;
    let normal = Arc::new(tank([9, 9, 9, 9]));
    mock.respond_with(move |req| match call_of(req) {
        Call::Analysis(_) => MockReply::new().text("Solid idea, I'd say 7/10."),
        Call::Decision(_) => MockReply::new().text("Sorry, for those reasons I'm out."),
        Call::Plan => normal(req),
    });
    let server = server(&mock).await;
    let result = finished(&server.run("shark-tank", prompt(PITCH)).await);
    assert_eq!(
        mock.request_count(),
        1 + 8 + 8,
        "each shark was asked once more for JSON"
    );
    let activity = &result["activity"];
    assert_eq!(activity["analyses"][2]["excitement"], 7);
    assert_eq!(activity["results"][1]["source"], "free_text");
    assert_eq!(result["funded"], false);
}

#[tokio::test]
async fn a_legacy_client_gets_no_subagents_and_the_same_result() {
    let mock = MockLlm::start().await;
    mock.respond_with(tank([9, 3, 6, 2]));
    let server = server(&mock).await;
    let body = json!({"prompt": PITCH, "forwardedProps": {"agui_profile": "legacy"}});
    let run = server.run("shark-tank", body).await;
    let result = finished(&run);
    assert!(
        run.types().iter().all(|t| !t.starts_with("SUBAGENT")),
        "{:?}",
        run.types()
    );
    assert_eq!(result["funded"], true);
}

#[tokio::test]
async fn the_shipped_room_file_loads_and_the_mocks_default_replies_finish() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rooms/shark-tank/room_config.yaml"
    );
    let text = std::fs::read_to_string(path).expect("shipped");
    let mock = MockLlm::start().await;
    let server = TestServer::start(&mock.url(), &text.replace("gpt-oss:20b", "mock")).await;
    let (status, room) = server.get("/rooms/shark-tank").await;
    assert_eq!(status, 200);
    assert_eq!(
        room["agent"]["factory_name"],
        "crazy_glue.factories.shark_tank_factory.create_shark_tank_agent"
    );
    assert!(room["suggestions"].as_array().is_some_and(|s| s.len() >= 5));
    let result = finished(&server.run("shark-tank", prompt(PITCH)).await);
    assert_eq!(result["activity"]["status"], "complete");
}
