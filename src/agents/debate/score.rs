//! A judge's score and the winner's rule.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agents::kit::reply::{json_object, text_field};

/// The JSON a judge is asked for.
pub static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "reasoning": {"type": "string"},
        },
        "required": ["score", "reasoning"],
    })
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub value: u8,
    pub reasoning: String,
}

/// The side with the higher total; equal totals are a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    Pro,
    Con,
    Tie,
}

impl Winner {
    pub fn of(pro: u32, con: u32) -> Self {
        match pro.cmp(&con) {
            std::cmp::Ordering::Greater => Winner::Pro,
            std::cmp::Ordering::Less => Winner::Con,
            std::cmp::Ordering::Equal => Winner::Tie,
        }
    }
}

fn in_range(n: f64) -> Option<u8> {
    (1.0..=10.0).contains(&n).then(|| n.round() as u8)
}

/// The JSON reply: a score from 1 to 10 and the reasoning.
pub fn parse_score(text: &str) -> Result<Score, String> {
    let object = json_object(text).ok_or("it is not a JSON object")?;
    let value = text_field(&object, "score")
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(in_range)
        .ok_or("`score` is not a number from 1 to 10")?;
    Ok(Score {
        value,
        reasoning: text_field(&object, "reasoning").unwrap_or_default(),
    })
}

/// A score written in prose: "7/10", "score: 7", "7 out of 10"; the whole reply is the reasoning.
pub fn score_in_prose(text: &str) -> Option<Score> {
    let lower = text.to_lowercase();
    let number_before = |at: usize| {
        let head = lower[..at].trim_end();
        let start = head
            .rfind(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(0, |i| i + 1);
        head[start..].parse::<f64>().ok()
    };
    let number_after = |at: usize| {
        let tail = lower[at..].trim_start_matches(|c: char| c == ':' || c.is_whitespace());
        let end = tail
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(tail.len());
        tail[..end].parse::<f64>().ok()
    };
    let value = lower
        .find("/10")
        .or_else(|| lower.find(" out of 10"))
        .and_then(number_before)
        .or_else(|| lower.find("score").and_then(|at| number_after(at + 5)))
        .and_then(in_range)?;
    Some(Score {
        value,
        reasoning: text.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_read_from_json_or_prose() {
        let s = parse_score(r#"{"score": 7, "reasoning": "clear"}"#).expect("json");
        assert_eq!((s.value, s.reasoning.as_str()), (7, "clear"));
        assert!(parse_score(r#"{"score": 11}"#).is_err());
        assert!(parse_score("no json").is_err());
        assert_eq!(score_in_prose("I give it 8/10.").map(|s| s.value), Some(8));
        assert_eq!(score_in_prose("Score: 6. Fine.").map(|s| s.value), Some(6));
        assert_eq!(score_in_prose("5 out of 10").map(|s| s.value), Some(5));
        assert_eq!(score_in_prose("a good case"), None);
        assert_eq!(score_in_prose("0/10"), None);
    }

    #[test]
    fn equal_totals_are_a_tie() {
        assert_eq!(Winner::of(20, 18), Winner::Pro);
        assert_eq!(Winner::of(18, 20), Winner::Con);
        assert_eq!(Winner::of(19, 19), Winner::Tie);
    }
}
