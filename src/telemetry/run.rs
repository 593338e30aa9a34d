//! A run's measurements: started, ended with which outcome, its duration and its time to the
//! first text of the answer; and the open SSE responses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::agui::Event;

/// Sees a run's events on their way to the client. Only a run that was [`started`](Self::start)
/// is counted; one dropped without its last event counts as cancelled.
pub struct RunMeter {
    room: String,
    started: OnceLock<(&'static str, Instant)>,
    first_text: AtomicBool,
    ended: AtomicBool,
}

impl RunMeter {
    pub fn new(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            started: OnceLock::new(),
            first_text: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        }
    }

    /// The run was admitted and its stream starts now.
    pub fn start(&self, strategy: &'static str) {
        if self.started.set((strategy, Instant::now())).is_ok() {
            metrics::counter!("roomhost_runs_started_total", "room" => self.room.clone(), "strategy" => strategy)
                .increment(1);
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
            Event::RunFinished { .. } => self.end("finished"),
            // A run stopped on request or left by its client ends with RUN_ERROR `cancelled`.
            Event::RunError { code, .. } if code.as_deref() == Some("cancelled") => {
                self.end("cancelled")
            }
            Event::RunError { .. } => self.end("error"),
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
