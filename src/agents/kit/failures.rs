//! Why tasks failed, each distinct reason said once with the tasks it applies to: a backend that
//! is down fails every task with the same long message, which is worth reading only once.

use std::fmt;

use super::runner::TaskFailure;
use crate::agents::ErrorCode;

/// Labels named per reason at most; the rest are counted.
const MAX_LABELS: usize = 8;

/// One reason and the tasks that failed for it, in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    labels: Vec<String>,
    code: ErrorCode,
    from_llm: bool,
    message: String,
}

impl Reason {
    /// More than one task failed for this reason.
    pub fn is_shared(&self) -> bool {
        self.labels.len() > 1
    }
}

/// `A, B and C: message`, at most `MAX_LABELS` labels named; labels that hold commas themselves
/// (`Document 1, part 2 of 5`) are set apart with ` / ` instead.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = &self.labels[..self.labels.len().min(MAX_LABELS)];
        let rest = self.labels.len() - named.len();
        let commas = named.iter().any(|l| l.contains(','));
        match named.split_last() {
            Some((last, first)) if !commas && rest == 0 && !first.is_empty() => {
                write!(f, "{} and {last}", first.join(", "))?
            }
            _ => f.write_str(&named.join(if commas { " / " } else { ", " }))?,
        }
        if rest > 0 {
            write!(f, " and {rest} more")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The failed tasks of a run (or of one step of it), grouped by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures {
    reasons: Vec<Reason>,
}

impl Failures {
    pub fn add(&mut self, label: impl Into<String>, failure: &TaskFailure) {
        self.join(Reason {
            labels: vec![label.into()],
            code: failure.code,
            from_llm: failure.from_llm,
            message: failure.message.clone(),
        });
    }

    /// Adds every failure of `other`.
    pub fn merge(&mut self, other: Failures) {
        for reason in other.reasons {
            self.join(reason);
        }
    }

    fn join(&mut self, reason: Reason) {
        let same = self
            .reasons
            .iter_mut()
            .find(|r| r.code == reason.code && r.message == reason.message);
        match same {
            Some(same) => same.labels.extend(reason.labels),
            None => self.reasons.push(reason),
        }
    }

    /// How many tasks failed.
    pub fn count(&self) -> usize {
        self.reasons.iter().map(|r| r.labels.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    /// The code for the run's error: the LLM's own when every task failed with the same one (so
    /// a client can tell a backend that is down from answers that are unusable), else `fallback`.
    pub fn code(&self, fallback: ErrorCode) -> ErrorCode {
        match self.reasons.split_first() {
            Some((first, rest)) if first.from_llm && rest.iter().all(|r| r.code == first.code) => {
                first.code
            }
            _ => fallback,
        }
    }
}

/// Every reason, separated by `; `.
impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: ErrorCode, message: &str, from_llm: bool) -> TaskFailure {
        TaskFailure {
            code,
            message: message.into(),
            usage: Default::default(),
            from_llm,
        }
    }

    #[test]
    fn one_reason_is_said_once_with_its_tasks() {
        let down = failure(ErrorCode::LlmUnreachable, "cannot connect", true);
        let mut failures = Failures::default();
        for label in ["A", "B", "C"] {
            failures.add(label, &down);
        }
        assert_eq!(failures.to_string(), "A, B and C: cannot connect");
        assert_eq!(failures.count(), 3);
        assert_eq!(
            failures.code(ErrorCode::AllTasksFailed),
            ErrorCode::LlmUnreachable
        );
    }

    #[test]
    fn distinct_reasons_are_kept_apart() {
        let mut failures = Failures::default();
        failures.add("A", &failure(ErrorCode::LlmHttpError, "refused", true));
        failures.add("B", &failure(ErrorCode::EmptyAnswer, "empty", false));
        failures.add("C", &failure(ErrorCode::LlmHttpError, "refused", true));
        assert_eq!(failures.to_string(), "A and C: refused; B: empty");
        assert_eq!(
            failures.code(ErrorCode::AllTasksFailed),
            ErrorCode::AllTasksFailed
        );
        assert!(failures.reasons()[0].is_shared() && !failures.reasons()[1].is_shared());
    }

    #[test]
    fn a_shared_code_with_different_messages_is_still_the_code() {
        let mut failures = Failures::default();
        failures.add(
            "A",
            &failure(ErrorCode::LlmHttpError, "400: too long", true),
        );
        failures.add(
            "B",
            &failure(ErrorCode::LlmHttpError, "400: bad format", true),
        );
        assert_eq!(
            failures.code(ErrorCode::AllTasksFailed),
            ErrorCode::LlmHttpError
        );
        assert_eq!(failures.reasons().len(), 2);
    }

    #[test]
    fn answers_refused_alike_keep_the_fallback_code() {
        let mut failures = Failures::default();
        failures.add("A", &failure(ErrorCode::InvalidAnswer, "not JSON", false));
        failures.add("B", &failure(ErrorCode::InvalidAnswer, "not JSON", false));
        assert_eq!(
            failures.code(ErrorCode::QuorumNotMet),
            ErrorCode::QuorumNotMet
        );
        assert_eq!(
            Failures::default().code(ErrorCode::QuorumNotMet),
            ErrorCode::QuorumNotMet
        );
    }

    #[test]
    fn long_label_lists_are_counted() {
        let down = failure(ErrorCode::LlmTimeout, "timed out", true);
        let mut failures = Failures::default();
        for i in 1..=12 {
            failures.add(format!("D{i}"), &down);
        }
        assert_eq!(
            failures.to_string(),
            "D1, D2, D3, D4, D5, D6, D7, D8 and 4 more: timed out"
        );
        let mut parts = Failures::default();
        parts.add("Document 1, part 1 of 2", &down);
        parts.add("Document 1, part 2 of 2", &down);
        assert_eq!(
            parts.to_string(),
            "Document 1, part 1 of 2 / Document 1, part 2 of 2: timed out"
        );
        let mut merged = Failures::default();
        merged.add("X", &down);
        merged.merge(failures);
        assert_eq!(merged.count(), 13);
        assert_eq!(merged.reasons().len(), 1);
    }
}
