//! The strategies, registered once. Each is a type (its job, read from the message) behind
//! [`Fanout`] in its own file; `strategies!` below derives the `Strategy` names, the `Job` enum and
//! the dispatch from one list, so a new strategy is a file and a line here.

use std::future::Future;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::config::ParallelizationConfig;
use super::follow_up::FollowUp;
use super::map_reduce::Summarize;
use super::progress::SectionsSource;
use super::sectioning::Sections;
use super::voting::Vote;
use super::Outcome;
use super::Run;
use crate::agents::{AgentError, StrategyInfo};

/// What names a strategy and what the page shows of it.
pub struct Info {
    /// The name in `forwardedProps.strategy`, the room's `default_strategy` and the activity.
    pub name: &'static str,
    /// The slash command (`/mapreduce`).
    pub command: &'static str,
    /// Other names a user may write.
    pub aliases: &'static [&'static str],
    pub label: &'static str,
    pub description: &'static str,
}

/// One strategy: its job read from the message, its cost, and its run.
pub trait Fanout: Sized {
    const INFO: Info;

    /// The job from the message's text (command taken off) and the attached documents; an error
    /// is the caller's mistake (HTTP 400).
    fn read(text: &str, documents: Vec<String>) -> Result<Self, String>;

    /// Checks the job before its stream; returns the most LLM calls the run has at once.
    fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String>;

    fn run(&self, run: &mut Run) -> impl Future<Output = Result<Outcome, AgentError>> + Send;

    fn sections_source(&self) -> Option<SectionsSource> {
        None
    }
}

/// The message's text, or the 400 for a command with nothing after it (`/voting` alone); `what`
/// names what is missing.
pub fn text_after_command<'a>(text: &'a str, what: &str) -> Result<&'a str, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "nothing to work on: write the {what} after the command"
        ));
    }
    Ok(text)
}

macro_rules! strategies {
    ($($variant:ident($job:ty),)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Strategy {
            $($variant,)*
        }

        /// What a strategy works on, read from the message.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Job {
            $($variant($job),)*
        }

        impl Strategy {
            pub const ALL: &'static [Strategy] = &[$(Strategy::$variant,)*];

            pub fn info(self) -> &'static Info {
                match self {
                    $(Strategy::$variant => &<$job as Fanout>::INFO,)*
                }
            }

            pub(crate) fn read(self, text: &str, documents: Vec<String>) -> Result<Job, String> {
                match self {
                    $(Strategy::$variant => <$job>::read(text, documents).map(Job::$variant),)*
                }
            }
        }

        impl Job {
            pub(crate) fn admit(&self, config: &ParallelizationConfig) -> Result<usize, String> {
                match self {
                    $(Job::$variant(job) => job.admit(config),)*
                }
            }

            pub(crate) fn sections_source(&self) -> Option<SectionsSource> {
                match self {
                    $(Job::$variant(job) => job.sections_source(),)*
                }
            }

            pub(crate) async fn run(&self, run: &mut Run) -> Result<Outcome, AgentError> {
                match self {
                    $(Job::$variant(job) => job.run(run).await,)*
                }
            }
        }
    };
}

strategies! {
    Sectioning(Sections),
    Voting(Vote),
    MapReduce(Summarize),
    FollowUp(FollowUp),
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Parses a user-given name (`forwardedProps.strategy`, slash commands, `default_strategy`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Strategy::ALL.iter().copied().find(|strategy| {
            let info = strategy.info();
            info.name == s || info.command == s || info.aliases.contains(&s.as_str())
        })
    }

    /// "a, b or c" of every strategy's name (or command).
    pub fn list(name: impl Fn(&Info) -> String) -> String {
        let names: Vec<String> = Strategy::ALL.iter().map(|s| name(s.info())).collect();
        match names.split_last() {
            Some((last, first)) if !first.is_empty() => format!("{} or {last}", first.join(", ")),
            _ => names.concat(),
        }
    }

    /// Every strategy as the page lists it.
    pub fn catalogue() -> Vec<StrategyInfo> {
        Strategy::ALL
            .iter()
            .map(|s| {
                let info = s.info();
                StrategyInfo {
                    name: info.name,
                    label: info.label,
                    description: info.description,
                }
            })
            .collect()
    }
}

impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Strategy::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown strategy '{name}'; use {}",
                Strategy::list(|i| i.name.to_owned())
            ))
        })
    }
}
