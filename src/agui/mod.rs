//! The AG-UI wire format: the events this server sends and the run input it reads, and the event
//! profiles that shape a run's stream for its client's AG-UI generation.
//! SSE framing is axum's (`axum::response::sse`), configured in `server::run`.

mod events;
mod input;
pub mod patch;
mod profile;

pub use events::{Event, TextRole, UsageEntry};
pub use input::{ContentPart, Message, MessageContent, RunAgentInput};
pub use profile::{Profile, Shaper, UnknownProfile, LIVE_TEXT_INTERVAL, PROFILE_PROP};
