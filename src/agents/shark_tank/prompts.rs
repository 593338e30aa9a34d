//! The tank's prompts. `{...}` placeholders are filled once, in one pass.

use crate::agents::kit::words::fill;

/// The sharks, each a name and what it looks at.
pub const SHARKS: &[(&str, &str)] = &[
    (
        "Market Shark",
        "the customers, the market's size and the competition",
    ),
    (
        "Tech Shark",
        "the product, how hard it is to build and what keeps others from copying it",
    ),
    (
        "Money Shark",
        "the business model, margins and the road to profit",
    ),
    (
        "Risk Shark",
        "what could sink it: legal, operational and founder risk",
    ),
];

const PLANNER_SYSTEM: &str = "\
You prepare startup pitches for investors. Break the pitch down under these headings, a sentence \
or two each: Problem, Solution, Market, Business model, Risks.";

const ANALYST_SYSTEM: &str = "\
You are the {name} on an investors' panel; you judge {focus}. Read the pitch and its breakdown \
and say how excited you are, from 1 (not at all) to 10 (very). Reply with a JSON object only: \
{\"excitement\": <1-10>, \"reasons\": \"<two or three sentences>\"}";

const DECIDER_SYSTEM: &str = "\
You are the {name} on an investors' panel, deciding whether to invest. Your own analysis and the \
other sharks' leanings follow. Reply with a JSON object only: {\"invest\": <true|false>, \
\"amount\": <dollars>, \"equity\": <percent>, \"conditions\": \"<one sentence>\"}";

/// The start of each call's system prompt (the mock LLM's tests).
pub const PLANNER_MARK: &str = "You prepare startup pitches";
pub const ANALYST_MARK: &str = "say how excited you are";
pub const DECIDER_MARK: &str = "deciding whether to invest";

pub fn planner(pitch: &str) -> (String, String) {
    (PLANNER_SYSTEM.to_owned(), format!("Pitch: {pitch}"))
}

pub fn analyst(shark: usize, pitch: &str, plan: &str) -> (String, String) {
    let (name, focus) = SHARKS[shark];
    let system = fill(ANALYST_SYSTEM, &[("name", name), ("focus", focus)]);
    (
        system,
        format!("Pitch: {pitch}\n\nBreakdown:\n{}", plan.trim()),
    )
}

/// A decision: the pitch, the shark's own analysis and each other shark's leaning.
pub fn decider(shark: usize, pitch: &str, own: &str, others: &[(usize, bool)]) -> (String, String) {
    let system = fill(DECIDER_SYSTEM, &[("name", SHARKS[shark].0)]);
    let mut user = format!(
        "Pitch: {pitch}\n\nYour analysis: {}\n\nThe other sharks:",
        own.trim()
    );
    for (other, interested) in others {
        let leaning = if *interested {
            "interested"
        } else {
            "not interested"
        };
        user.push_str(&format!("\n- {}: {leaning}", SHARKS[*other].0));
    }
    (system, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_carries_the_others_leanings_and_text_is_never_filled_again() {
        let (system, user) = decider(0, "{name}", "good", &[(1, true), (3, false)]);
        assert!(system.starts_with("You are the Market Shark") && system.contains(DECIDER_MARK));
        assert!(user.starts_with("Pitch: {name}"));
        assert!(user.contains("- Tech Shark: interested\n- Risk Shark: not interested"));
        assert!(analyst(2, "p", "b").0.contains(ANALYST_MARK));
    }
}
