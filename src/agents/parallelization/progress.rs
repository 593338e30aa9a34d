//! The parallelization activity: the strategy and the run's status beside the kit's task board.

use serde::Serialize;

use super::detect::Source;
use super::strategy::Strategy;
use crate::agents::kit::board::Board;
use crate::agents::kit::history::HistoryUse;

pub const ACTIVITY_TYPE: &str = "parallelization";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Starting,
    Running,
    Aggregating,
    Complete,
    Failed,
}

/// Where sectioning's sections came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionsSource {
    /// Listed in the prompt ("Topic: A, B, C").
    Listed,
    /// Asked of the model first.
    Planned,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub status: RunStatus,
    pub strategy: Strategy,
    pub strategy_source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections_source: Option<SectionsSource>,
    /// The thread's earlier turns the calls carry, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryUse>,
}

pub type Progress = Board<Activity>;

pub fn start(
    strategy: Strategy,
    source: Source,
    sections_source: Option<SectionsSource>,
) -> Progress {
    Board::new(
        ACTIVITY_TYPE,
        Activity {
            status: RunStatus::Starting,
            strategy,
            strategy_source: source,
            sections_source,
            history: None,
        },
    )
}

impl Board<Activity> {
    pub fn set_status(&mut self, status: RunStatus) {
        self.update(|a| a.status = status);
    }
}
