//! The AG-UI wire format: the events this server sends and the run input it reads.
//! SSE framing is axum's (`axum::response::sse`), configured in `server::run`.

mod events;
mod input;

pub use events::{Event, TextRole, UsageEntry};
pub use input::{ContentPart, Message, MessageContent, RunAgentInput};
