//! One call's measurements through the `metrics` facade: its outcome, time to first token, duration
//! and tokens, labelled by endpoint (`backend N`, never the URL) and model.

use tokio::time::Instant;

use super::Usage;

pub(crate) struct CallMeter {
    endpoint: String,
    model: String,
    started: Instant,
    first_token: bool,
    ended: bool,
}

impl CallMeter {
    /// A call that got its slot now.
    pub(crate) fn new(endpoint: &str, model: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            model: model.to_owned(),
            started: Instant::now(),
            first_token: false,
            ended: false,
        }
    }

    pub(crate) fn retry(&self) {
        metrics::counter!("roomhost_llm_retries_total", "endpoint" => self.endpoint.clone(), "model" => self.model.clone())
            .increment(1);
    }

    /// A content or thinking token arrived.
    pub(crate) fn token(&mut self) {
        if !std::mem::replace(&mut self.first_token, true) {
            metrics::histogram!("roomhost_llm_first_token_seconds", "endpoint" => self.endpoint.clone(), "model" => self.model.clone())
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn done(&mut self, usage: &Usage) {
        let model = self.model.clone();
        for (kind, n) in [
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
            ("reasoning", usage.reasoning_tokens),
        ] {
            metrics::counter!("roomhost_llm_tokens_total", "model" => model.clone(), "type" => kind)
                .increment(n);
        }
        self.end("ok");
    }

    pub(crate) fn failed(&mut self) {
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

/// A call dropped before its end (the run was cancelled).
impl Drop for CallMeter {
    fn drop(&mut self) {
        self.end("cancelled");
    }
}
