//! What runs whose client left may hold: each owner (under `auth: none`, each client address)
//! has a budget of detached runs and of the LLM queue places they keep. A run that would pass it
//! is cancelled at once when its client leaves, so that clients that start runs and hang up cost
//! their owner, not everyone waiting for the queue.

use std::net::IpAddr;

use crate::auth::User;
use crate::config::Settings;
use crate::tally::{Held, Tally};

/// Whose budget a run counts against.
pub fn owner_key(user: &User, peer: IpAddr) -> String {
    match user.name() {
        User::ANONYMOUS => format!("address {peer}"),
        name => format!("user {name}"),
    }
}

/// Detached runs and the queue places they hold, per owner.
#[derive(Default)]
pub struct DetachedRuns {
    runs: Tally<String>,
    places: Tally<String>,
}

/// A run counted as detached until dropped (when it ends).
pub struct Detached {
    _run: Held<String>,
    _places: Held<String>,
}

impl DetachedRuns {
    /// Counts a run holding `places` queue places as detached for `owner`, or `None` when that
    /// would pass the owner's budget.
    pub fn enter(&self, owner: &str, places: usize, settings: &Settings) -> Option<Detached> {
        let owner = owner.to_owned();
        let run = self
            .runs
            .enter(&owner, 1, settings.max_detached_per_user)
            .ok()?;
        let places = self
            .places
            .enter(&owner, places, settings.max_detached_places_per_user)
            .ok()?;
        Some(Detached {
            _run: run,
            _places: places,
        })
    }

    /// The runs `owner` (an [`owner_key`]) has going on detached.
    pub fn runs_of(&self, owner: &str) -> usize {
        self.runs.held(&owner.to_owned())
    }
}
