//! Reading structured replies: models asked for JSON sometimes wrap it in prose, code fences or a
//! reasoning preamble, or put it after gpt-oss's final-channel marker.

use serde_json::{Map, Value};

/// gpt-oss's harmony format: what follows is the answer, what precedes it is analysis.
const FINAL_CHANNEL: &str = "<|channel|>final<|message|>";

/// The JSON object a reply gives: after the final-channel marker when there is one, the last
/// top-level object in the text (a preamble that reasons about the answer comes before it).
pub fn json_object(text: &str) -> Option<Map<String, Value>> {
    let text = text
        .rfind(FINAL_CHANNEL)
        .map_or(text, |at| &text[at + FINAL_CHANNEL.len()..]);
    let mut found = None;
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(Value::Object(map))) => {
                found = Some(map);
                from = start + values.byte_offset();
            }
            _ => from = start + 1,
        }
    }
    found
}

/// A string field, or a number or boolean written as text.
pub fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(s) => Some(s.trim().to_owned()),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Option<String> {
        text_field(&json_object(text)?, "answer")
    }

    #[test]
    fn finds_wrapped_objects() {
        assert_eq!(answer(r#"{"answer": "yes"}"#).as_deref(), Some("yes"));
        assert_eq!(
            answer("```json\n{\"answer\": 42}\n```").as_deref(),
            Some("42")
        );
        assert!(json_object("no json here").is_none());
        assert!(json_object("[1, 2]").is_none());
        assert!(json_object("} {").is_none());
    }

    #[test]
    fn the_answer_after_a_preamble_or_the_final_marker_wins() {
        let preamble = "The form is {answer, reasoning}; e.g. {\"answer\": \"x\"}. So:\n\
                        {\"answer\": \"Python\", \"reasoning\": \"simple {really}\"} done";
        assert_eq!(answer(preamble).as_deref(), Some("Python"));
        let harmony = "<|channel|>analysis<|message|>{\"answer\": \"no\"} hmm<|end|>\
                       <|start|>assistant<|channel|>final<|message|>{\"answer\": \"yes\"}<|return|>";
        assert_eq!(answer(harmony).as_deref(), Some("yes"));
        let nested = r#"{"answer": "a", "extra": {"b": 1}}"#;
        assert_eq!(answer(nested).as_deref(), Some("a"));
    }
}
