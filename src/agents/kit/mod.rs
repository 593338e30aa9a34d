//! The fan-out kit every room is built from: model settings, budgets and the thread's history,
//! streamed and structured calls (with the re-ask and the free-text reading), the repetition
//! guard, AG-UI messages, the activity board and its patches, failures and usage, and the fan-out
//! that runs many calls at once as subagents under the shared limiter. A room is this kit, its
//! prompts and its logic.
//!
//! The kit knows no room: it uses only the agent contract (`agents`), `agui` and `llm`
//! (`tests/suite/agents_layers.rs` keeps it so).

pub mod board;
pub mod budget;
pub mod failures;
pub mod history;
pub mod messages;
pub mod model;
pub mod repetition;
pub mod reply;
pub mod runner;
pub mod usage;
pub mod words;
