//! A run's measurements: started, ended with which outcome, its duration and its time to the
//! first text of the answer; and the open SSE responses. When traces are exported, the run's span
//! gets its trace id (for its log lines), outcome, status and token totals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::trace::Status;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::agui::Event;
use crate::llm::signed;

/// Sees a run's events on their way to the client. Only a run that was [`started`](Self::start)
/// is counted; one dropped without its last event counts as cancelled.
pub struct RunMeter {
    room: String,
    started: OnceLock<(&'static str, Instant)>,
    first_text: AtomicBool,
    ended: AtomicBool,
    /// The run's span, kept only when it is exported.
    traced: OnceLock<Span>,
}

impl RunMeter {
    pub fn new(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            started: OnceLock::new(),
            first_text: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            traced: OnceLock::new(),
        }
    }

    /// The run was admitted and its stream starts now, in `span` (which declares `trace_id`).
    pub fn start(&self, strategy: &'static str, span: &Span) {
        if self.started.set((strategy, Instant::now())).is_err() {
            return;
        }
        metrics::counter!("roomhost_runs_started_total", "room" => self.room.clone(), "strategy" => strategy)
            .increment(1);
        if let Some(trace_id) = super::trace::trace_id(span) {
            span.record("trace_id", tracing::field::display(trace_id));
            // GenAI semantic conventions: a run is an agent invocation, the room its agent.
            span.set_attribute("gen_ai.operation.name", "invoke_agent");
            span.set_attribute("gen_ai.agent.name", self.room.clone());
            let _ = self.traced.set(span.clone());
        }
    }

    pub fn observe(&self, event: &Event) {
        let Some(&(strategy, since)) = self.started.get() else {
            return;
        };
        match event {
            Event::TextMessageContent { .. } if !self.first_text.swap(true, Ordering::Relaxed) => {
                metrics::histogram!("roomhost_run_first_text_seconds", "room" => self.room.clone(), "strategy" => strategy)
                    .record(since.elapsed().as_secs_f64());
            }
            Event::RunFinished { usage, .. } => {
                if let Some(span) = self.traced.get() {
                    let entries = usage.iter().flatten();
                    let (input, output) = entries.fold((0, 0), |(i, o), e| {
                        (i + e.input_tokens, o + e.output_tokens)
                    });
                    span.set_attribute("gen_ai.usage.input_tokens", signed(input));
                    span.set_attribute("gen_ai.usage.output_tokens", signed(output));
                }
                self.end("finished")
            }
            // A run stopped on request or left by its client ends with RUN_ERROR `cancelled`.
            Event::RunError { code, .. } if code.as_deref() == Some("cancelled") => {
                self.end("cancelled")
            }
            Event::RunError { code, .. } => {
                if let Some(span) = self.traced.get() {
                    let code = code.clone().unwrap_or_else(|| "error".into());
                    span.set_attribute("error.type", code.clone());
                    span.set_status(Status::error(code));
                }
                self.end("error")
            }
            _ => {}
        }
    }

    fn end(&self, outcome: &'static str) {
        let Some(&(strategy, since)) = self.started.get() else {
            return;
        };
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let labels = [
            ("room", self.room.clone()),
            ("strategy", strategy.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::counter!("roomhost_runs_finished_total", &labels).increment(1);
        metrics::histogram!("roomhost_run_duration_seconds", &labels)
            .record(since.elapsed().as_secs_f64());
        if let Some(span) = self.traced.get() {
            span.set_attribute("roomhost.run.outcome", outcome);
        }
    }
}

impl Drop for RunMeter {
    fn drop(&mut self) {
        self.end("cancelled");
    }
}

/// Counts an SSE response as open for its life.
pub struct OpenStream(());

impl OpenStream {
    pub fn open() -> Self {
        metrics::gauge!("roomhost_open_streams").increment(1.0);
        Self(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("roomhost_open_streams").decrement(1.0);
    }
}
