//! The fan-out really runs at once: the mock sees as many calls in flight as there are tasks when
//! the backend limit allows it, and exactly the limit when it does not.

use std::time::Duration;

use crate::support::harness::slots;
use crate::support::mock_llm::MockLlm;
use crate::support::parallelization::{finished, prompt, server_with};

/// Every reply waits before its first byte, so calls that run at once overlap.
async fn slow_mock() -> MockLlm {
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::from_millis(300), Duration::ZERO);
    mock
}

#[tokio::test]
async fn every_task_is_in_flight_at_once_when_the_limit_allows() {
    let cases = [
        ("Which is better: Python or JavaScript?", "num_voters: 5", 5),
        ("Energy: Wind, Sun, Water, Heat", "", 4),
        ("Summarize: A | B | C | D | E | F", "", 6),
    ];
    for (text, extra, tasks) in cases {
        let mock = slow_mock().await;
        let server = server_with(&mock, extra, |s| s.llm.max_concurrency = slots(8)).await;
        let run = server.run("par", prompt(text)).await;
        finished(&run);
        assert_eq!(mock.peak_in_flight(), tasks, "{text}");
    }
}

#[tokio::test]
async fn the_backend_limit_holds() {
    let mock = slow_mock().await;
    let server = server_with(&mock, "num_voters: 5", |s| s.llm.max_concurrency = slots(2)).await;
    let run = server
        .run("par", prompt("Which is better: Python or JavaScript?"))
        .await;
    let result = finished(&run);
    assert_eq!(mock.peak_in_flight(), 2);
    assert_eq!(mock.request_count(), 5);
    assert_eq!(result["votes"]["valid"], 5);
}

#[tokio::test]
async fn the_rooms_task_limit_holds() {
    let mock = slow_mock().await;
    let server = server_with(&mock, "num_voters: 5\nmax_parallel_tasks: 3", |s| {
        s.llm.max_concurrency = slots(8)
    })
    .await;
    let run = server
        .run("par", prompt("Which is better: Python or JavaScript?"))
        .await;
    finished(&run);
    assert_eq!(mock.peak_in_flight(), 3);
    assert_eq!(mock.request_count(), 5);
}
