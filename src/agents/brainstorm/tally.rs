//! Ideas merged when they say the same thing, rankings read, and the Borda count.

use std::sync::LazyLock;

use serde_json::{json, Value};

use crate::agents::kit::reply::json_object;
use crate::agents::kit::words::normalize;

/// The JSON a voter is asked for.
pub static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {"ranking": {"type": "array", "items": {"type": "integer"}}},
        "required": ["ranking"],
    })
});

/// One idea after merging: its first wording, everyone who offered it, its points.
#[derive(Debug, Clone, PartialEq)]
pub struct Idea {
    pub text: String,
    pub authors: Vec<usize>,
    pub score: u32,
}

/// A generator's reply as ideas: one a line, bullets and numbering removed, blank lines skipped.
pub fn ideas_in(reply: &str, most: usize) -> Vec<String> {
    reply
        .lines()
        .map(|line| {
            line.trim()
                .trim_start_matches(|c: char| {
                    c.is_ascii_digit()
                        || matches!(c, '-' | '*' | '•' | '.' | ')')
                        || c.is_whitespace()
                })
                .trim()
                .to_owned()
        })
        .filter(|idea| !normalize(idea).is_empty())
        .take(most)
        .collect()
}

/// Merges ideas that read the same once case, punctuation, articles and spacing are set aside,
/// keeping the first wording and every author, in the order first offered.
pub fn merge(offered: &[(usize, Vec<String>)]) -> Vec<Idea> {
    let mut keys: Vec<String> = Vec::new();
    let mut ideas: Vec<Idea> = Vec::new();
    for (author, texts) in offered {
        for text in texts {
            let key = normalize(text);
            match keys.iter().position(|k| *k == key) {
                Some(at) if !ideas[at].authors.contains(author) => ideas[at].authors.push(*author),
                Some(_) => {}
                None => {
                    keys.push(key);
                    ideas.push(Idea {
                        text: text.clone(),
                        authors: vec![*author],
                        score: 0,
                    });
                }
            }
        }
    }
    ideas
}

/// The ranking in a JSON reply: numbers from 1 to `count`, each once, best first.
pub fn parse_ranking(text: &str, count: usize) -> Result<Vec<usize>, String> {
    let object = json_object(text).ok_or("it is not a JSON object")?;
    let numbers: Vec<f64> = object
        .get("ranking")
        .and_then(Value::as_array)
        .ok_or("`ranking` is not a list")?
        .iter()
        .map(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
        .collect::<Option<_>>()
        .ok_or("`ranking` holds something that is not an idea number")?;
    let ranking = valid(numbers.into_iter().map(|n| n as usize), count);
    if ranking.is_empty() {
        return Err(format!("`ranking` names no idea from 1 to {count}"));
    }
    Ok(ranking)
}

/// A ranking written in prose: the idea numbers in the order they appear.
pub fn ranking_in_prose(text: &str, count: usize) -> Option<Vec<usize>> {
    let numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<usize>().ok());
    let ranking = valid(numbers, count);
    (!ranking.is_empty()).then_some(ranking)
}

/// Numbers from 1 to `count`, repeats dropped, as 0-based positions.
fn valid(numbers: impl Iterator<Item = usize>, count: usize) -> Vec<usize> {
    let mut seen = Vec::new();
    for n in numbers {
        if (1..=count).contains(&n) && !seen.contains(&(n - 1)) {
            seen.push(n - 1);
        }
    }
    seen
}

/// Borda: of `count` ideas on a ballot, the first gets `count` points, the next one fewer, and an
/// idea left off gets none.
pub fn borda(ranking: &[usize], count: usize) -> Vec<(usize, u32)> {
    ranking
        .iter()
        .enumerate()
        .map(|(place, &idea)| (idea, (count - place) as u32))
        .collect()
}

/// The ideas' indices, best first; equal scores keep the order the ideas were offered in.
pub fn standings(ideas: &[Idea]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ideas.len()).collect();
    order.sort_by(|&a, &b| ideas[b].score.cmp(&ideas[a].score).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_idea_in_other_words_is_merged() {
        let offered = vec![
            (
                0,
                vec!["Plant a roof garden.".into(), "Bike sharing".into()],
            ),
            (
                1,
                vec!["plant   a ROOF-garden!".into(), "Night market".into()],
            ),
        ];
        let ideas = merge(&offered);
        assert_eq!(ideas.len(), 3);
        assert_eq!(ideas[0].authors, [0, 1]);
        assert_eq!(ideas[0].text, "Plant a roof garden.");
    }

    #[test]
    fn replies_are_read_into_ideas_and_rankings() {
        assert_eq!(
            ideas_in("1. One\n\n- Two\n* Three\nFour", 3),
            ["One", "Two", "Three"]
        );
        assert_eq!(
            parse_ranking(r#"{"ranking": [2, "1", 2, 9]}"#, 3),
            Ok(vec![1, 0])
        );
        assert!(parse_ranking(r#"{"ranking": [9]}"#, 3).is_err());
        assert!(parse_ranking("no json", 3).is_err());
        assert_eq!(ranking_in_prose("Best is 3, then 1.", 3), Some(vec![2, 0]));
        assert_eq!(ranking_in_prose("none", 3), None);
    }

    #[test]
    fn borda_gives_the_top_of_a_ballot_most_and_ties_keep_offer_order() {
        assert_eq!(borda(&[2, 0], 3), [(2, 3), (0, 2)]);
        let idea = |score| Idea {
            text: String::new(),
            authors: vec![],
            score,
        };
        assert_eq!(standings(&[idea(2), idea(5), idea(2)]), [1, 0, 2]);
    }
}
