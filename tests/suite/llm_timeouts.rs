//! Each timeout fires on its own and names itself.

use std::time::Duration;

use crate::support::llm_calls::{ask, call, client, settings, BOTH_APIS};
use crate::support::mock_llm::{MockLlm, MockReply};
use roomhost::config::LlmConfig;
use roomhost::llm::{LlmApi, LlmError, LlmSettings};

/// Generous limits, so that only the one a test shortens can fire on a busy machine.
fn generous(mock: &MockLlm, api: LlmApi) -> LlmSettings {
    LlmSettings {
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        max_retries: 0,
        ..settings(&[mock], api)
    }
}

const SHORT: Duration = Duration::from_millis(300);

fn assert_timeout(result: &Result<roomhost::llm::Completion, LlmError>, expected: &str) {
    match result {
        Err(e @ LlmError::Timeout { which, .. }) => {
            assert_eq!(*which, expected, "{e}");
            // The client knows settings by what they do, not by where the server reads them.
            assert!(!e.to_string().contains("ROOMHOST_"), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("{expected} timeout after")),
                "{e}"
            );
        }
        other => panic!("expected a {expected} timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn slow_headers_hit_the_first_byte_timeout() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .text("late")
                .first_byte_delay(Duration::from_secs(10)),
        );
        let client = client(&LlmSettings {
            first_byte_timeout: SHORT,
            ..generous(&mock, api)
        });
        let out = call(&*client, ask("q")).await;
        assert_timeout(&out.result, "first-byte");
        assert!(out
            .result
            .unwrap_err()
            .to_string()
            .contains("raise the first-byte timeout"));
        assert_eq!(client.load().in_flight, 0);
    }
}

#[tokio::test]
async fn headers_without_a_body_hit_the_first_byte_timeout() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(MockReply::new().hang());
        let settings = LlmSettings {
            first_byte_timeout: SHORT,
            ..generous(&mock, api)
        };
        let out = call(&*client(&settings), ask("q")).await;
        assert_timeout(&out.result, "first-byte");
    }
}

#[tokio::test]
async fn a_stall_between_chunks_hits_the_idle_timeout() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .text("one two")
                .chunk_delay(Duration::from_secs(10)),
        );
        let settings = LlmSettings {
            idle_timeout: SHORT,
            ..generous(&mock, api)
        };
        let out = call(&*client(&settings), ask("q")).await;
        assert_eq!(out.content, "one ", "{api:?}");
        assert_timeout(&out.result, "idle");
        assert!(out
            .result
            .unwrap_err()
            .to_string()
            .contains("raise the idle timeout"));
    }
}

#[tokio::test]
async fn a_steady_but_long_answer_hits_the_total_timeout() {
    for api in BOTH_APIS {
        let mock = MockLlm::start().await;
        mock.push(
            MockReply::new()
                .text("word ".repeat(100))
                .chunk_delay(Duration::from_millis(20)),
        );
        let settings = LlmSettings {
            request_timeout: SHORT,
            ..generous(&mock, api)
        };
        let out = call(&*client(&settings), ask("q")).await;
        assert!(
            out.chunks > 0,
            "{api:?}: some words came before the deadline"
        );
        assert_timeout(&out.result, "total");
        assert!(out
            .result
            .unwrap_err()
            .to_string()
            .contains("raise the request timeout"));
    }
}

/// A listener whose accept queue is full drops new SYNs, so connecting hangs until the timeout.
#[tokio::test]
async fn an_unanswered_connect_hits_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let _listener = socket.listen(0).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let settings = LlmSettings {
        base_urls: vec![format!("http://{addr}")],
        connect_timeout: SHORT,
        max_retries: 0,
        ..LlmConfig::default().settings()
    };
    let out = call(&*client(&settings), ask("q")).await;
    assert_timeout(&out.result, "connect");
}
