//! Clients that leave at random points (before the response, right after it, mid fan-out, mid
//! reduce): the backend sees every call it was serving closed, queued calls never start, and the
//! limiter and the run tracker are back to idle. Nothing leaks.

use std::time::Duration;

use crate::support::harness::{slots, TestServer};
use crate::support::mock_llm::{auto_reply, MockLlm, MockReply, MockRequest};
use crate::support::parallelization::{asks, assert_idle, server_with, ROOM};
use futures::future::join_all;
use roomhost::agents::parallelization::prompts;
use serde_json::{json, Value};

const CLIENTS: usize = 60;

/// Calls that stream for longer than the test runs: everything but ballots and map summaries.
fn is_long(req: &MockRequest) -> bool {
    req.schema().is_none() && !asks(req, prompts::MAP_SYSTEM)
}
const LIMIT: usize = 8;

fn body(i: usize) -> Value {
    let (prompt, strategy) = match i % 3 {
        0 => (
            format!("Write about leaving {i}: Start, Middle, End"),
            "sectioning",
        ),
        1 => (
            format!("Summarize: part {i} a | part {i} b | part {i} c"),
            "map_reduce",
        ),
        _ => (format!("Is leaving {i} early a good idea?"), "voting"),
    };
    json!({"prompt": prompt, "forwardedProps": {"strategy": strategy}})
}

/// How a client leaves: `None` drops the request before the response arrives; `Some(n)` reads
/// `n` events (0: none) and then drops the stream.
async fn leave(server: &TestServer, i: usize, after: Option<usize>) {
    let url = format!("{}/rooms/{ROOM}/run", server.url);
    let request = TestServer::client().post(url).json(&body(i)).send();
    let Some(events) = after else {
        // Long enough for the request to be sent, too short for a response.
        let _ = tokio::time::timeout(Duration::from_millis(1), request).await;
        return;
    };
    let resp = request.await.expect("the run starts");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = crate::support::harness::SseReader::new(resp);
    for _ in 0..events {
        if reader.next_event().await.is_none() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_at_random_points_leave_nothing_behind() {
    let mock = MockLlm::start().await;
    // Section writers and reduce calls stream for 20 s, so none can end on its own while the test
    // runs: the mock sees each one closed by the server. Ballots and map summaries answer at once,
    // so runs get to their tally or their reduce call, and clients leave there too.
    mock.respond_with(|req| {
        if is_long(req) {
            MockReply::new()
                .text("word ".repeat(2000))
                .chunk_delay(Duration::from_millis(10))
        } else {
            auto_reply(req, 4)
        }
    });
    let server = server_with(&mock, "num_voters: 3", |s| {
        s.llm.max_concurrency = slots(LIMIT);
        s.llm.max_queue = CLIENTS * 4;
    })
    .await;

    let mut rng = fastrand::Rng::with_seed(6);
    let plans: Vec<Option<usize>> = (0..CLIENTS)
        .map(|_| match rng.u8(0..10) {
            0 => None,
            1 => Some(0),
            _ => Some(rng.usize(1..40)),
        })
        .collect();
    join_all(
        plans
            .iter()
            .enumerate()
            .map(|(i, &plan)| leave(&server, i, plan)),
    )
    .await;

    assert_idle(&server, &mock).await;
    let requests = mock.requests();
    let long = requests.iter().filter(|r| is_long(r)).count();
    let reduces = requests
        .iter()
        .filter(|r| asks(r, prompts::REDUCE_SYSTEM))
        .count();
    assert!(
        long > 0 && reduces > 0,
        "{long} long calls, {reduces} reduce calls: the clients did not leave where they should"
    );
    let closed = mock.disconnects();
    assert!(
        closed >= long && closed <= requests.len(),
        "{closed} calls closed early; {long} could only end that way, {} calls in all",
        requests.len()
    );
    // Calls that were queued when their client left must never be made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.request_count(),
        requests.len(),
        "a call started after its client left"
    );
    assert_eq!(mock.in_flight(), 0);
}
