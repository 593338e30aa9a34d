//! Vote arithmetic: which answers a question allows, how free-form answers are normalised before
//! counting, and the tally with its agreement and tie.

use serde::Serialize;
use serde_json::{json, Value};

use crate::agents::kit::words::{folded, normalize, split_word, word_spans};

/// The answers a question allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answers {
    /// The question names them ("Python or JavaScript?", "A, B or C?").
    Options(Vec<String>),
    YesNo,
    Free,
}

/// Words that open a yes/no question.
pub const YES_NO_OPENERS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "am",
    "do",
    "does",
    "did",
    "can",
    "could",
    "should",
    "shall",
    "will",
    "would",
    "may",
    "might",
    "must",
    "has",
    "have",
    "had",
    "isn't",
    "aren't",
    "doesn't",
    "don't",
    "can't",
    "shouldn't",
    "won't",
    "wouldn't",
];

/// Words that open an open question.
pub const WH_WORDS: &[&str] = &[
    "which", "what", "who", "whom", "whose", "where", "when", "why", "how",
];

/// Besides the openers, words that come before a question's first option ("Should I learn |
/// Python or Go?").
const LEAD_WORDS: &[&str] = &[
    "i",
    "we",
    "you",
    "they",
    "it",
    "he",
    "she",
    "this",
    "that",
    "there",
    "one",
    "better",
    "best",
    "to",
    "use",
    "learn",
    "choose",
    "pick",
    "prefer",
    "go",
    "with",
    "be",
    "get",
    "buy",
    "take",
    "try",
    "recommend",
    "rather",
    "either",
    "i'd",
    "you'd",
    "we'd",
    "more",
    "worth",
];

fn is_lead_word(word: &str) -> bool {
    let word = word.to_lowercase();
    [YES_NO_OPENERS, WH_WORDS, LEAD_WORDS]
        .iter()
        .any(|list| list.contains(&word.as_str()))
}

const MAX_OPTIONS: usize = 8;
const MAX_OPTION_WORDS: usize = 6;
const MAX_OPTION_CHARS: usize = 60;

/// The answers `question` allows: its named options, yes/no, or free-form.
pub fn question_answers(question: &str) -> Answers {
    if let Some(options) = named_options(question) {
        return Answers::Options(options);
    }
    let first = question
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches(['¿', '"', '\''])
        .to_lowercase();
    if YES_NO_OPENERS.contains(&first.as_str()) {
        Answers::YesNo
    } else {
        Answers::Free
    }
}

fn named_options(question: &str) -> Option<Vec<String>> {
    let q = question
        .trim()
        .trim_end_matches(['?', '？', '؟', '.', '!'])
        .trim();
    let (list, after_colon) = match q.find(": ") {
        Some(i) if !q[..i].contains("//") => (&q[i + 2..], true),
        _ => (q, false),
    };
    let or_parts = split_word(list, "or");
    if or_parts.len() < 2 {
        return None;
    }
    let mut lead: Vec<&str> = or_parts[0].split(',').collect();
    let first = lead.remove(0).trim();
    let mut options: Vec<String> = Vec::new();
    let first = if !lead.is_empty() && starts_with_any(first, WH_WORDS) {
        // "Which is faster, Rust or Go": the part before the comma is the question, not an option.
        String::new()
    } else if after_colon {
        first.to_owned()
    } else {
        strip_lead(first)
    };
    let last = or_parts[or_parts.len() - 1].trim();
    // The first and last option have about the same length: trim what the question wraps them in
    // ("Should I learn Python or Go for the backend" -> Python, Go).
    let k = match (
        first.split_whitespace().count(),
        last.split_whitespace().count(),
    ) {
        (0, n) => n,
        (f, l) => f.min(l),
    };
    if !first.is_empty() {
        options.push(last_words(&first, k));
    }
    options.extend(lead.iter().map(|s| s.trim().to_owned()));
    options.extend(
        or_parts[1..or_parts.len() - 1]
            .iter()
            .map(|s| s.trim().to_owned()),
    );
    options.push(first_words(last, k));
    let options: Vec<String> = options
        .into_iter()
        .map(|o| {
            o.trim()
                .trim_start_matches("either ")
                .trim_matches(|c: char| c == '"' || c == '\'' || c == ',')
                .trim()
                .to_owned()
        })
        .collect();
    let mut keys: Vec<String> = options.iter().map(|o| normalize(o)).collect();
    keys.sort();
    keys.dedup();
    let fits = |o: &String| {
        !o.is_empty()
            && o.split_whitespace().count() <= MAX_OPTION_WORDS
            && o.chars().count() <= MAX_OPTION_CHARS
    };
    (options.len() >= 2
        && options.len() <= MAX_OPTIONS
        && keys.len() == options.len()
        && keys.iter().all(|k| !k.is_empty())
        && options.iter().all(fits))
    .then_some(options)
}

fn starts_with_any(text: &str, words: &[&str]) -> bool {
    text.split_whitespace()
        .next()
        .is_some_and(|w| words.contains(&w.to_lowercase().as_str()))
}

fn strip_lead(text: &str) -> String {
    let words = word_spans(text);
    let skip = words.iter().take_while(|(_, w)| is_lead_word(w)).count();
    words
        .get(skip)
        .map_or(String::new(), |(pos, _)| text[*pos..].trim().to_owned())
}

fn last_words(text: &str, k: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words[words.len().saturating_sub(k)..].join(" ")
}

fn first_words(text: &str, k: usize) -> String {
    text.split_whitespace()
        .take(k)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One voter's answer as counted: `key` is what votes are compared by, `answer` what is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub key: String,
    pub answer: String,
}

impl Answers {
    /// The values the answer schema allows, when the question restricts them.
    pub fn allowed(&self) -> Option<Vec<String>> {
        match self {
            Answers::Options(options) => Some(options.clone()),
            Answers::YesNo => Some(vec!["yes".into(), "no".into()]),
            Answers::Free => None,
        }
    }

    /// The JSON schema voters answer with.
    pub fn schema(&self) -> Value {
        let answer = match self.allowed() {
            Some(values) => json!({"type": "string", "enum": values}),
            None => json!({"type": "string"}),
        };
        json!({
            "type": "object",
            "properties": {"answer": answer, "reasoning": {"type": "string"}},
            "required": ["answer", "reasoning"],
        })
    }

    /// Maps a voter's raw answer to what is counted; None when it is not an allowed answer.
    pub fn count_as(&self, raw: &str) -> Option<Counted> {
        let key = normalize(raw);
        if key.is_empty() {
            return None;
        }
        let Some(allowed) = self.allowed() else {
            return Some(Counted {
                key,
                answer: raw.trim().trim_end_matches('.').trim().to_owned(),
            });
        };
        let keyed: Vec<(String, &String)> = allowed.iter().map(|o| (normalize(o), o)).collect();
        let exact = keyed.iter().find(|(k, _)| *k == key);
        // "Python, because ..." counts as Python; the longest matching option wins.
        let prefixed = || {
            keyed
                .iter()
                .filter(|(k, _)| key.starts_with(&format!("{k} ")))
                .max_by_key(|(k, _)| k.len())
        };
        exact.or_else(prefixed).map(|(k, o)| Counted {
            key: k.clone(),
            answer: (*o).clone(),
        })
    }
}

impl Answers {
    /// The one allowed answer a reply in prose names as a whole word ("I'd pick Python" ->
    /// Python); None when it names none or several, or when the question allows any answer.
    pub fn named_in(&self, text: &str) -> Option<Counted> {
        let allowed = self.allowed()?;
        let words = format!(
            " {} ",
            folded(text)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut named = allowed.iter().filter(|option| {
            let key = folded(option)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            !key.is_empty() && words.contains(&format!(" {key} "))
        });
        match (named.next(), named.next()) {
            (Some(one), None) => self.count_as(one),
            _ => None,
        }
    }
}

/// Votes for one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub answer: String,
    #[serde(skip)]
    pub key: String,
    pub votes: usize,
    /// The earliest voter (0-based) who gave it; breaks ties with `tie_break: first`.
    #[serde(skip)]
    pub first_voter: usize,
}

/// Counts per answer, most votes first, ties in order of the earliest voter.
pub fn tally(votes: &[Option<Counted>]) -> Vec<Count> {
    let mut counts: Vec<Count> = Vec::new();
    for (voter, vote) in votes.iter().enumerate() {
        let Some(vote) = vote else { continue };
        match counts.iter_mut().find(|c| c.key == vote.key) {
            Some(c) => c.votes += 1,
            None => counts.push(Count {
                answer: vote.answer.clone(),
                key: vote.key.clone(),
                votes: 1,
                first_voter: voter,
            }),
        }
    }
    counts.sort_by(|a, b| {
        b.votes
            .cmp(&a.votes)
            .then(a.first_voter.cmp(&b.first_voter))
    });
    counts
}

/// The answers tied for the most votes (one when there is no tie; none without votes).
pub fn leaders(counts: &[Count]) -> &[Count] {
    let top = counts.first().map_or(0, |c| c.votes);
    let n = counts.iter().take_while(|c| c.votes == top).count();
    &counts[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(q: &str) -> Vec<String> {
        match question_answers(q) {
            Answers::Options(o) => o,
            other => panic!("{q}: expected options, got {other:?}"),
        }
    }

    #[test]
    fn named_options_are_found() {
        assert_eq!(
            options("Which is better: Python or JavaScript?"),
            ["Python", "JavaScript"]
        );
        assert_eq!(
            options("Should I learn Python or JavaScript?"),
            ["Python", "JavaScript"]
        );
        assert_eq!(options("Tea or coffee?"), ["Tea", "coffee"]);
        assert_eq!(options("Should we use A, B or C?"), ["A", "B", "C"]);
        assert_eq!(options("Which is faster, Rust or Go?"), ["Rust", "Go"]);
        assert_eq!(
            options("Is remote work or office work better?"),
            ["remote work", "office work"]
        );
        assert_eq!(
            options("Should I learn Python, Rust or Go for the backend?"),
            ["Python", "Rust", "Go"]
        );
        assert_eq!(
            options("Is it better to rent or buy a house?"),
            ["rent", "buy"]
        );
    }

    #[test]
    fn yes_no_and_free_questions() {
        assert_eq!(
            question_answers("Is remote work better than office work?"),
            Answers::YesNo
        );
        assert_eq!(question_answers("Can penguins fly?"), Answers::YesNo);
        assert_eq!(
            question_answers("What is the best sorting algorithm?"),
            Answers::Free
        );
        assert_eq!(
            question_answers("¿Es Python mejor que Rust?"),
            Answers::Free
        );
    }

    #[test]
    fn answers_map_to_options() {
        let a = Answers::Options(vec!["Python".into(), "JavaScript".into()]);
        assert_eq!(
            a.count_as("python").map(|c| c.answer),
            Some("Python".into())
        );
        assert_eq!(
            a.count_as("JavaScript, because it runs everywhere")
                .map(|c| c.answer),
            Some("JavaScript".into())
        );
        assert_eq!(a.count_as("Ruby"), None);
        let yn = Answers::YesNo;
        assert_eq!(yn.count_as("Yes.").map(|c| c.key), Some("yes".into()));
        assert_eq!(yn.count_as("maybe"), None);
        let letters = Answers::Options(vec!["A".into(), "B".into()]);
        assert_eq!(letters.count_as("a").map(|c| c.answer), Some("A".into()));
        assert_eq!(Answers::Free.count_as(" ").map(|c| c.key), None);
    }

    #[test]
    fn prose_that_names_one_option_is_read() {
        let a = Answers::Options(vec!["Python".into(), "JavaScript".into()]);
        let named = |text: &str| a.named_in(text).map(|c| c.answer);
        assert_eq!(named("I'd pick Python."), Some("Python".into()));
        assert_eq!(named("Python over JavaScript, clearly."), None);
        assert_eq!(named("Hard to say."), None);
        assert_eq!(named("Pythonic code is nice"), None);
        let yn = Answers::YesNo;
        assert_eq!(
            yn.named_in("No, office work builds trust.").map(|c| c.key),
            Some("no".into())
        );
        assert_eq!(Answers::Free.named_in("Python"), None);
        let multi = Answers::Options(vec!["remote work".into(), "office work".into()]);
        assert_eq!(
            multi.named_in("I think remote work wins").map(|c| c.answer),
            Some("remote work".into())
        );
    }

    #[test]
    fn tally_orders_and_ties() {
        let v = |s: &str| Answers::Free.count_as(s);
        let votes = vec![v("B"), v("A"), None, v("b."), v("A")];
        let counts = tally(&votes);
        assert_eq!(counts.len(), 2);
        assert_eq!((counts[0].answer.as_str(), counts[0].votes), ("B", 2));
        assert_eq!(leaders(&counts).len(), 2);
        let counts = tally(&[v("x"), v("y"), v("y")]);
        assert_eq!(leaders(&counts).len(), 1);
        assert_eq!(leaders(&counts)[0].answer, "y");
        assert!(leaders(&tally(&[None])).is_empty());
    }
}
