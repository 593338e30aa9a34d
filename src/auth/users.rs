//! The per-user limit of runs in flight, so one user cannot take every LLM slot.

use super::User;
use crate::tally::{Held, Tally};

/// Runs in flight per user.
pub type UserRuns = Tally<User>;

/// One run counted against its user until dropped.
pub type UserRun = Held<User>;
