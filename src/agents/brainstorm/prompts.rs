//! The arena's prompts. `{...}` placeholders are filled once, in one pass.

use crate::agents::kit::words::fill;

/// The personas, each a name and a point of view; the first `num_voters` of them also vote.
pub const PERSONAS: &[(&str, &str)] = &[
    (
        "Visionary",
        "You favour bold, long-range ideas that change the game.",
    ),
    (
        "Pragmatist",
        "You favour ideas that can be done next week with what is at hand.",
    ),
    (
        "Skeptic",
        "You favour ideas that survive hard questions about risk and cost.",
    ),
    (
        "Maverick",
        "You favour unexpected angles nobody else would think of.",
    ),
];

const GENERATOR_SYSTEM: &str = "\
You are the {name} in a brainstorming session. {view} Offer up to {count} distinct ideas for the \
challenge, one per line, each a single short sentence, with no preamble or numbering.";

const VOTER_SYSTEM: &str = "\
You are the {name}, now voting in a brainstorming session. {view} Rank every numbered idea from \
best to worst. Reply with a JSON object only: {\"ranking\": [<idea numbers, best first>]}";

/// Ideas one persona may offer.
pub const IDEAS_PER_PERSONA: usize = 3;

/// The start of a generator's and of a voter's system prompt (the mock LLM's tests).
pub const GENERATOR_MARK: &str = "in a brainstorming session.";
pub const VOTER_MARK: &str = "now voting in a brainstorming session.";

pub fn generator(persona: usize, challenge: &str) -> (String, String) {
    let (name, view) = PERSONAS[persona];
    let system = fill(
        GENERATOR_SYSTEM,
        &[
            ("name", name),
            ("view", view),
            ("count", &IDEAS_PER_PERSONA.to_string()),
        ],
    );
    (system, format!("Challenge: {challenge}"))
}

/// A voter's call: the challenge and the others' ideas, numbered from 1.
pub fn voter(persona: usize, challenge: &str, ideas: &[&str]) -> (String, String) {
    let (name, view) = PERSONAS[persona];
    let system = fill(VOTER_SYSTEM, &[("name", name), ("view", view)]);
    let mut user = format!("Challenge: {challenge}\n\nIdeas:");
    for (i, idea) in ideas.iter().enumerate() {
        user.push_str(&format!("\n{}. {}", i + 1, idea));
    }
    (system, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_see_numbered_ideas_and_text_is_never_filled_again() {
        let (system, user) = voter(1, "{name}", &["a {view}", "b"]);
        assert!(system.starts_with("You are the Pragmatist") && system.contains(VOTER_MARK));
        assert_eq!(user, "Challenge: {name}\n\nIdeas:\n1. a {view}\n2. b");
        let (system, _) = generator(0, "c");
        assert!(system.contains(GENERATOR_MARK) && !system.contains(VOTER_MARK));
    }
}
