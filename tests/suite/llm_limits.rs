//! The concurrency limit: never exceeded, always used, FIFO, bounded queue, freed on drop, and
//! spread over endpoints by load.

use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{eventually, slots};
use crate::support::llm_calls::{ask, call, client, settings, BOTH_APIS};
use crate::support::mock_llm::{MockLlm, MockReply};
use futures::future::join_all;
use futures::StreamExt;
use roomhost::llm::{LlmApi, LlmClient, LlmError, LlmLoad, Refused, Reservation};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn fifty_calls_never_exceed_the_limit_and_fill_it() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.set_timing(Duration::ZERO, Duration::from_millis(2));
        let mut settings = settings(&[&mock], api);
        settings.max_concurrency = slots(4);
        let client = client(&settings);
        let calls = (0..50).map(|i| {
            let client = client.clone();
            async move { call(&*client, ask(&format!("task {i}"))).await }
        });
        let outcomes = join_all(calls).await;
        for (i, out) in outcomes.iter().enumerate() {
            assert!(out.result.is_ok(), "{api:?} call {i}: {:?}", out.result);
            assert!(
                out.content.starts_with(&format!("task {i}:")),
                "{}",
                out.content
            );
        }
        assert_eq!(mock.request_count(), 50, "{api:?}");
        assert_eq!(
            mock.peak_in_flight(),
            4,
            "{api:?}: limit reached, never passed"
        );
        assert_eq!(client.load(), idle(4));
    }
}

fn idle(capacity: usize) -> LlmLoad {
    LlmLoad {
        in_flight: 0,
        queued: 0,
        capacity,
        reserved: 0,
    }
}

/// Starts a call in the background; it runs until it ends or is aborted.
fn spawn_call(client: &Arc<dyn LlmClient>, prompt: &str) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    let request = ask(prompt);
    tokio::spawn(async move {
        if let Ok(stream) = client.chat_stream(request).await {
            stream.for_each(|_| async {}).await;
        }
    })
}

#[tokio::test]
async fn waiting_calls_are_served_in_arrival_order() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().text("holding").hang());
    let mut settings = settings(&[&mock], LlmApi::Ollama);
    settings.max_concurrency = slots(1);
    let client = client(&settings);
    let holder = spawn_call(&client, "holder");
    eventually("the holder is in flight", || mock.in_flight() == 1).await;
    let mut waiters = Vec::new();
    for i in 0..8 {
        waiters.push(spawn_call(&client, &format!("waiter {i}")));
        eventually("the waiter queues", || client.load().queued == i + 1).await;
    }
    holder.abort();
    for waiter in waiters {
        waiter.await.expect("waiter finishes");
    }
    let order: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.last_user().map(str::to_owned))
        .collect();
    let expected: Vec<String> = std::iter::once("holder".to_owned())
        .chain((0..8).map(|i| format!("waiter {i}")))
        .collect();
    assert_eq!(order, expected);
    assert_eq!(mock.peak_in_flight(), 1);
    assert_eq!(client.load(), idle(1));
}

#[tokio::test]
async fn a_full_queue_fails_fast_with_saturated() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().hang());
    let mut settings = settings(&[&mock], LlmApi::Ollama);
    settings.max_concurrency = slots(1);
    settings.max_queue = 2;
    let client = client(&settings);
    let mut tasks = vec![spawn_call(&client, "in flight")];
    eventually("one call in flight", || mock.in_flight() == 1).await;
    tasks.push(spawn_call(&client, "queued 1"));
    tasks.push(spawn_call(&client, "queued 2"));
    eventually("two calls queue", || client.load().queued == 2).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), client.chat_stream(ask("one more")))
        .await
        .expect("refused without waiting");
    match refused {
        Err(LlmError::Saturated { waiting, limit }) => assert_eq!((waiting, limit), (2, 2)),
        Err(other) => panic!("expected Saturated, got {other}"),
        Ok(_) => panic!("expected Saturated, got a stream"),
    }
    assert_eq!(
        mock.request_count(),
        1,
        "the refused call never reached the backend"
    );
    for task in &tasks {
        task.abort();
    }
    eventually("everything is released", || client.load() == idle(1)).await;
    eventually("the backend sees the call go", || mock.in_flight() == 0).await;
}

#[tokio::test]
async fn dropping_a_stream_mid_way_disconnects_and_frees_the_slot() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .text("a long answer that keeps on coming word after word")
                .chunk_delay(Duration::from_millis(200)),
        );
        let client = client(&settings(&[&mock], api));
        let mut stream = client.chat_stream(ask("q")).await.expect("opens");
        let first = stream.next().await.expect("a chunk").expect("no error");
        assert!(matches!(first, roomhost::llm::ChatChunk::Content(_)));
        assert_eq!(client.load().in_flight, 1);
        drop(stream);
        assert_eq!(client.load().in_flight, 0, "{api:?}: freed at once");
        eventually("the mock sees the disconnect", || mock.disconnects() == 1).await;
        assert_eq!(mock.in_flight(), 0);
        // The slot is usable again.
        call(&*client, ask("again"))
            .await
            .result
            .expect("next call");
        assert_eq!(mock.disconnects(), 1, "{api:?}");
    }
}

#[tokio::test]
async fn dropping_a_call_that_waits_for_its_first_byte_disconnects_too() {
    let mock = MockLlm::start().await;
    mock.push(MockReply::new().hang_before_headers());
    let client = client(&settings(&[&mock], LlmApi::Ollama));
    let task = spawn_call(&client, "q");
    eventually("the call reaches the backend", || mock.in_flight() == 1).await;
    task.abort();
    eventually("the mock sees the disconnect", || mock.disconnects() == 1).await;
    assert_eq!(client.load(), idle(4));
}

#[tokio::test]
async fn calls_go_to_the_least_busy_endpoint() {
    let a = MockLlm::start().await;
    let b = MockLlm::start().await;
    for mock in [&a, &b] {
        mock.respond_with(|_| MockReply::new().hang());
    }
    let mut settings = settings(&[&a, &b], LlmApi::Ollama);
    settings.max_concurrency = slots(3);
    let client = client(&settings);
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(spawn_call(&client, &format!("call {i}")));
        eventually("the call is in flight", || {
            a.in_flight() + b.in_flight() == i + 1
        })
        .await;
    }
    assert_eq!((a.in_flight(), b.in_flight()), (2, 2));
    assert_eq!(client.load().capacity, 6);
    assert_eq!(client.load().in_flight, 4);
    // Freeing a slot on `a` makes it the less busy one.
    let on_a = a.requests()[0].last_user().map(str::to_owned);
    let first = (0..4)
        .position(|i| Some(format!("call {i}")) == on_a)
        .expect("a got a known call");
    tasks[first].abort();
    eventually("a sees the call go", || a.in_flight() == 1).await;
    tasks.push(spawn_call(&client, "call 4"));
    eventually("the new call lands", || a.in_flight() + b.in_flight() == 4).await;
    assert_eq!((a.in_flight(), b.in_flight()), (2, 2));
    for task in tasks {
        task.abort();
    }
    eventually("everything is released", || client.load().in_flight == 0).await;
}

#[tokio::test]
async fn reservations_hold_a_fair_share_and_refuse_what_does_not_fit() {
    let mock = MockLlm::start().await;
    let mut settings = settings(&[&mock], LlmApi::Ollama);
    settings.max_concurrency = slots(2);
    settings.max_queue = 16;
    let client = client(&settings);
    // 18 places; a reservation holds at most max(2, 16 / 4) = 4 of them.
    let held: Vec<Reservation> = (0..4)
        .map(|_| client.reserve(100).expect("room for four"))
        .collect();
    assert!(held.iter().all(|r| r.places() == 4));
    assert_eq!(client.load().reserved, 16);
    let refused = match client.reserve(3) {
        Err(refused) => refused,
        Ok(_) => panic!("3 more places do not fit in 2"),
    };
    assert!(
        matches!(
            refused,
            Refused::Saturated {
                held: 16,
                places: 18,
                ..
            }
        ),
        "{refused}"
    );
    assert!((1..=60).contains(&refused.retry_after().as_secs()));
    let last = client.reserve(2).expect("the last two places");
    // A call outside any reservation finds no place and fails at once.
    let outside = call(&*client, ask("outside")).await;
    assert!(
        matches!(outside.result, Err(LlmError::Saturated { .. })),
        "{:?}",
        outside.result
    );
    assert_eq!(mock.request_count(), 0);
    assert!(
        client.reserve(0).is_ok_and(|r| r.places() == 0),
        "no calls, no places"
    );
    drop(held);
    drop(last);
    assert_eq!(client.load(), idle(2));
}

#[tokio::test]
async fn calls_of_a_reservation_never_exceed_it_and_never_fail_for_a_full_queue() {
    let mock = MockLlm::start().await;
    mock.set_timing(Duration::ZERO, Duration::from_millis(2));
    let mut settings = settings(&[&mock], LlmApi::Ollama);
    settings.max_concurrency = slots(4);
    settings.max_queue = 0;
    let client = client(&settings);
    let reservation = client.reserve(2).expect("two places");
    assert!(client.reserve(3).is_err(), "4 places, 2 held");
    let calls = (0..10).map(|i| {
        let client = client.clone();
        async move { call(&*client, ask(&format!("task {i}"))).await }
    });
    let outcomes = reservation.scope(join_all(calls)).await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert_eq!(mock.request_count(), 10);
    assert_eq!(
        mock.peak_in_flight(),
        2,
        "the reservation's two places, no more"
    );
    assert_eq!(client.load(), idle(4), "released with the job");
}

#[tokio::test]
async fn a_stopped_job_gives_up_its_turn_and_its_calls_never_reach_the_backend() {
    let mock = MockLlm::start().await;
    mock.respond_with(|_| MockReply::new().text("holding").hang());
    let mut settings = settings(&[&mock], LlmApi::Ollama);
    settings.max_concurrency = slots(1);
    settings.max_queue = 16;
    let client = client(&settings);
    let holder = spawn_call(&client, "holder");
    eventually("the holder is in flight", || mock.in_flight() == 1).await;
    // A job of two calls queues behind the holder, then a call of someone still waiting for it.
    let stop = CancellationToken::new();
    let job = client.reserve(2).expect("room").until(stop.clone());
    let calls = (0..2).map(|i| {
        let client = client.clone();
        async move { call(&*client, ask(&format!("stopped {i}"))).await }
    });
    let stopped = tokio::spawn(job.scope(join_all(calls)));
    eventually("the job's calls queue", || client.load().queued == 2).await;
    let wanted = spawn_call(&client, "wanted");
    eventually("the wanted call queues", || client.load().queued == 3).await;
    // The job, first in line, is stopped as the slot is freed: whether its calls leave the queue
    // first or are handed the slot, the slot ends with the call still wanted.
    stop.cancel();
    holder.abort();
    let outcomes = stopped.await.expect("the job ends");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.result, Err(LlmError::Abandoned))),
        "{outcomes:?}"
    );
    eventually("the wanted call reaches the backend", || {
        mock.request_count() == 2
    })
    .await;
    let prompts: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| r.last_user().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        prompts,
        ["holder", "wanted"],
        "no call of the stopped job was sent"
    );
    assert_eq!(client.load().queued, 0);
    wanted.abort();
    eventually("everything is released", || client.load().in_flight == 0).await;
}
