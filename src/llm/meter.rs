//! One call's measurements through the `metrics` facade: its outcome, time to first token, duration
//! and tokens, labelled by endpoint (`backend N`, never the URL) and model. The same hooks fill the
//! call's span (a child of the caller's, such as a run's) with the GenAI semantic-convention
//! attributes; it is disabled, and free, unless a subscriber exports it. Neither ever holds a
//! prompt or an answer.

use opentelemetry::trace::Status;
use opentelemetry::{Array, StringValue, Value};
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{ChatRequest, Completion, LlmError};

/// The target of the LLM call span, for the subscriber's filters.
pub const CALL_SPAN_TARGET: &str = "roomhost::llm::call";

pub(crate) struct CallMeter {
    endpoint: String,
    model: String,
    started: Instant,
    first_token: bool,
    ended: bool,
    span: Span,
}

impl CallMeter {
    /// A call that got its slot now.
    pub(crate) fn new(endpoint: &str, provider: &str, request: &ChatRequest) -> Self {
        let model = request.model.as_str();
        let span = tracing::info_span!(
            target: CALL_SPAN_TARGET,
            "chat",
            otel.name = format!("chat {model}"),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = provider,
            gen_ai.request.model = model,
            gen_ai.request.max_tokens = request.options.max_tokens.map(i64::from),
            roomhost.llm.endpoint = endpoint,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            roomhost.llm.retries = Empty,
            "error.type" = Empty,
        );
        Self {
            endpoint: endpoint.to_owned(),
            model: model.to_owned(),
            started: Instant::now(),
            first_token: false,
            ended: false,
            span,
        }
    }

    pub(crate) fn retry(&self, attempt: u32) {
        metrics::counter!("roomhost_llm_retries_total", "endpoint" => self.endpoint.clone(), "model" => self.model.clone())
            .increment(1);
        self.span.record("roomhost.llm.retries", i64::from(attempt));
    }

    /// A content or thinking token arrived.
    pub(crate) fn token(&mut self) {
        if !std::mem::replace(&mut self.first_token, true) {
            metrics::histogram!("roomhost_llm_first_token_seconds", "endpoint" => self.endpoint.clone(), "model" => self.model.clone())
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn done(&mut self, completion: &Completion) {
        let usage = &completion.usage;
        let model = self.model.clone();
        for (kind, n) in [
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
            ("reasoning", usage.reasoning_tokens),
        ] {
            metrics::counter!("roomhost_llm_tokens_total", "model" => model.clone(), "type" => kind)
                .increment(n);
        }
        self.span
            .record("gen_ai.usage.input_tokens", signed(usage.prompt_tokens))
            .record(
                "gen_ai.usage.output_tokens",
                signed(usage.completion_tokens),
            );
        if let Some(reason) = &completion.done_reason {
            // An array by the conventions, which a span field cannot hold.
            let reasons = Array::String(vec![StringValue::from(reason.clone())]);
            self.span
                .set_attribute("gen_ai.response.finish_reasons", Value::Array(reasons));
        }
        self.end("ok");
    }

    pub(crate) fn failed(&mut self, error: &LlmError) {
        // The code only: a message may quote the backend, which may quote the prompt.
        self.span.record("error.type", error.code());
        self.span.set_status(Status::error(error.code()));
        self.end("error");
    }

    fn end(&mut self, outcome: &'static str) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let labels = [
            ("endpoint", self.endpoint.clone()),
            ("model", self.model.clone()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::counter!("roomhost_llm_calls_total", &labels).increment(1);
        metrics::histogram!("roomhost_llm_call_duration_seconds", &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Span fields as OpenTelemetry integers (signed; an unsigned field would be exported as text).
pub(crate) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A call dropped before its end (the run was cancelled).
impl Drop for CallMeter {
    fn drop(&mut self) {
        if !self.ended {
            self.span.record("error.type", "cancelled");
        }
        self.end("cancelled");
    }
}
