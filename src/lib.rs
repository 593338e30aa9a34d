//! roomhost: hosts AG-UI rooms for chat frontends.
//!
//! A request flows one way: HTTP (`server`) -> room (`rooms`, `state`) -> agent (`agents`) ->
//! LLM client (`llm`); the agent's AG-UI events (`agui`) flow back through one channel to the SSE
//! response.

pub mod agents;
pub mod agui;
pub mod auth;
pub mod config;
pub mod llm;
pub mod logsafe;
pub mod rooms;
pub mod server;
pub mod state;
pub mod store;
pub mod tally;
pub mod telemetry;

pub use state::{App, AppState, StartupError};
