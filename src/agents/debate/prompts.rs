//! The debate's prompts. `{...}` placeholders are filled once, in one pass.

use crate::agents::kit::words::fill;

const DEBATER_SYSTEM: &str = "\
You are the {side} side in a formal debate. {stance} Make your strongest case in at most \
{words} words: answer the other side's latest points, add new ones, and stay on the topic.";

const FOR: &str = "Argue FOR the motion.";
const AGAINST: &str = "Argue AGAINST the motion.";

const JUDGE_SYSTEM: &str = "\
You are an impartial debate judge. Read both sides of this round, then score the {side} side \
only, from 1 (weak) to 10 (compelling), for logic, evidence and how well it answered the other \
side. Reply with a JSON object only: {\"score\": <1-10>, \"reasoning\": \"<one or two sentences>\"}";

/// Words an argument may take.
pub const ARGUMENT_WORDS: usize = 150;

/// Which side a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Pro,
    Con,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Pro => "PRO",
            Side::Con => "CON",
        }
    }
}

/// The motion and every argument made so far, oldest first.
fn transcript(topic: &str, earlier: &[(Side, &str)]) -> String {
    let mut text = format!("Motion: {topic}");
    for (side, argument) in earlier {
        text.push_str(&format!("\n\n{}: {}", side.name(), argument.trim()));
    }
    text
}

/// A debater's call: it sees the motion and every earlier argument.
pub fn debater(side: Side, topic: &str, earlier: &[(Side, &str)]) -> (String, String) {
    let stance = match side {
        Side::Pro => FOR,
        Side::Con => AGAINST,
    };
    let system = fill(
        DEBATER_SYSTEM,
        &[
            ("side", side.name()),
            ("stance", stance),
            ("words", &ARGUMENT_WORDS.to_string()),
        ],
    );
    let mut user = transcript(topic, earlier);
    user.push_str(&format!("\n\nNow give the {} argument.", side.name()));
    (system, user)
}

/// A judge's call: both sides of the round, one side scored.
pub fn judge(side: Side, topic: &str, pro: &str, con: &str) -> (String, String) {
    let system = fill(JUDGE_SYSTEM, &[("side", side.name())]);
    let user = transcript(topic, &[(Side::Pro, pro), (Side::Con, con)]);
    (system, user)
}

/// The start of the judge's system prompt, to tell its calls apart (the mock LLM's tests).
pub const JUDGE_MARK: &str = "You are an impartial debate judge.";
/// The start of a debater's system prompt.
pub const DEBATER_MARK: &str = "You are the ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_text_is_never_filled_again() {
        let (system, user) = debater(Side::Con, "{side}", &[(Side::Pro, "{words}")]);
        assert!(system.starts_with("You are the CON side"));
        assert!(system.contains("AGAINST") && system.contains("150 words"));
        assert!(user.contains("Motion: {side}") && user.contains("PRO: {words}"));
        let (system, user) = judge(Side::Pro, "t", "p", "c");
        assert!(system.starts_with(JUDGE_MARK) && system.contains("score the PRO side"));
        assert!(system.contains("{\"score\""));
        assert_eq!(user, "Motion: t\n\nPRO: p\n\nCON: c");
    }
}
