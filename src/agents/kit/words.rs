//! Word helpers: normalising answers, splitting on words, filling prompt templates.

/// Splits on a whole word, case-insensitively ("Wind and Sun" -> ["Wind", "Sun"]).
pub fn split_word<'a>(text: &'a str, word: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let words = word_spans(text);
    for (pos, w) in words {
        if w.eq_ignore_ascii_case(word) {
            parts.push(&text[start..pos]);
            start = pos + w.len();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Byte offsets and text of the whitespace-separated words of `text`.
pub fn word_spans(text: &str) -> Vec<(usize, &str)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, &text[s..]));
    }
    spans
}

/// Case-folded words, punctuation removed.
pub fn folded(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '+' || c == '#' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

/// Case-folded, punctuation and articles removed, single spaces: "The Python." -> "python". A
/// lone "A" stays (it is an answer, not an article).
pub fn normalize(answer: &str) -> String {
    let cleaned = folded(answer);
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let content: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect();
    if content.is_empty() {
        words.join(" ")
    } else {
        content.join(" ")
    }
}

/// Fills the `{name}` placeholders of `template` in one pass: an inserted value is never scanned
/// again, so braces in user text (`{text}`, `{topic}`) reach the model as written. Braces that
/// name no value (the JSON examples) stay as they are.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (close, *value))
        });
        match value {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize("  The Python. "), "python");
        assert_eq!(normalize("A"), "a");
        assert_eq!(normalize("a cat"), "cat");
        assert_eq!(normalize("Yes!"), "yes");
        assert_eq!(normalize("C++"), "c++");
        assert_eq!(normalize("New   York,  NY"), "new york ny");
        assert_eq!(normalize("..."), "");
    }
}
