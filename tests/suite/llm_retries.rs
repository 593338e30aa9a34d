//! Retries: counted per status code, only before anything was streamed, within the budget.

use crate::support::llm_calls::{ask, call, client, settings, BOTH_APIS};
use crate::support::mock_llm::{MockLlm, MockReply};
use roomhost::llm::{LlmApi, LlmError};

/// Pushes `failures` replies of `status`, then lets the auto answer follow; returns the number of
/// requests the call made and its error, if it failed.
async fn requests_for(
    api: LlmApi,
    status: u16,
    failures: usize,
    max_retries: u32,
) -> (usize, Option<LlmError>) {
    let mock = MockLlm::start().await;
    for _ in 0..failures {
        mock.push(MockReply::new().status(status, format!("mock {status}")));
    }
    let mut settings = settings(&[&mock], api);
    settings.max_retries = max_retries;
    let client = client(&settings);
    let out = call(&*client, ask("q")).await;
    assert_eq!(client.load().in_flight, 0);
    (mock.request_count(), out.result.err())
}

#[tokio::test]
async fn transient_statuses_are_retried_until_success() {
    for api in BOTH_APIS {
        for status in [429, 502, 503, 504] {
            let (requests, error) = requests_for(api, status, 3, 3).await;
            assert_eq!(requests, 4, "{api:?} {status}: 3 failures + 1 success");
            assert!(error.is_none(), "{api:?} {status}: {error:?}");
        }
    }
}

#[tokio::test]
async fn retries_stop_at_max_retries() {
    let (requests, error) = requests_for(LlmApi::Ollama, 503, 10, 2).await;
    assert_eq!(requests, 3, "1 try + 2 retries");
    assert!(
        matches!(error, Some(LlmError::Status { status: 503, ref message }) if message == "mock 503"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_500_is_retried_once() {
    for api in BOTH_APIS {
        let (requests, error) = requests_for(api, 500, 5, 5).await;
        assert_eq!(requests, 2, "{api:?}");
        assert!(matches!(error, Some(LlmError::Status { status: 500, .. })));
        let (requests, error) = requests_for(api, 500, 1, 5).await;
        assert_eq!((requests, error.is_none()), (2, true), "{api:?}");
    }
}

#[tokio::test]
async fn refused_requests_are_never_retried() {
    for api in BOTH_APIS {
        for status in [400, 401, 404, 422] {
            let (requests, error) = requests_for(api, status, 5, 5).await;
            assert_eq!(requests, 1, "{api:?} {status}");
            assert!(error.is_some());
        }
    }
}

#[tokio::test]
async fn nothing_is_retried_once_content_was_streamed() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().text("one two three").reset_after(2));
        mock.push(
            MockReply::new()
                .text("one two three")
                .error_after(1, "boom"),
        );
        let client = client(&settings(&[&mock], api));
        let reset = call(&*client, ask("q")).await;
        assert_eq!(reset.content, "one two ", "{api:?}");
        assert!(
            matches!(reset.result, Err(LlmError::Disconnected { .. })),
            "{api:?}: {:?}",
            reset.result
        );
        let failed = call(&*client, ask("q")).await;
        assert!(matches!(failed.result, Err(LlmError::MidStream(_))));
        assert_eq!(mock.request_count(), 2, "{api:?}: no retries");
    }
}

#[tokio::test]
async fn a_connection_lost_before_the_first_chunk_is_retried() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().raw(vec![]).reset_after(0));
        let client = client(&settings(&[&mock], api));
        let out = call(&*client, ask("again")).await;
        assert!(out.result.is_ok(), "{api:?}: {:?}", out.result);
        assert!(out.content.starts_with("again:"));
        assert_eq!(mock.request_count(), 2, "{api:?}");
    }
}

#[tokio::test]
async fn a_dead_backend_is_a_connect_error_after_the_retries() {
    let mock = MockLlm::start().await;
    let settings = settings(&[&mock], LlmApi::Ollama);
    mock.stop();
    drop(mock);
    let error = call(&*client(&settings), ask("q"))
        .await
        .result
        .expect_err("nobody listens");
    assert!(matches!(error, LlmError::Connect { .. }), "{error}");
    assert!(
        error.to_string().contains("is the server running"),
        "{error}"
    );
}
