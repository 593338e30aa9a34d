//! Token usage of a run, added up per model for `RUN_FINISHED.usage`.

use crate::agui::UsageEntry;
use crate::llm::Usage;

#[derive(Debug, Default)]
pub struct UsageBook {
    by_model: Vec<(String, Usage)>,
}

impl UsageBook {
    pub fn add(&mut self, model: &str, usage: Usage) {
        match self.by_model.iter_mut().find(|(m, _)| m == model) {
            Some((_, total)) => *total += usage,
            None => self.by_model.push((model.to_owned(), usage)),
        }
    }

    /// The LLM requests answered in the run, all models together.
    pub fn requests(&self) -> u64 {
        self.by_model.iter().map(|(_, u)| u.requests).sum()
    }

    pub fn entries(&self, provider: &str) -> Vec<UsageEntry> {
        self.by_model
            .iter()
            .map(|(model, u)| UsageEntry {
                provider: Some(provider.to_owned()),
                model: Some(model.clone()),
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
                total_tokens: u.prompt_tokens + u.completion_tokens,
                reasoning_tokens: Some(u.reasoning_tokens),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_per_model() {
        let mut book = UsageBook::default();
        let u = |p, c, r| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            reasoning_tokens: r,
            ..Usage::default()
        };
        book.add("a", u(10, 5, 1));
        book.add("b", u(1, 1, 0));
        book.add("a", u(20, 5, 2));
        let entries = book.entries("ollama");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                entries[0].input_tokens,
                entries[0].output_tokens,
                entries[0].total_tokens
            ),
            (30, 10, 40)
        );
        assert_eq!(entries[0].reasoning_tokens, Some(3));
        assert_eq!(entries[1].model.as_deref(), Some("b"));
    }
}
