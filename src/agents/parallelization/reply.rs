//! Reading structured replies: models asked for JSON sometimes wrap it in prose or code fences.

use serde_json::{Map, Value};

/// The JSON object in `text`: the whole text, or from its first `{` to its last `}`.
pub fn json_object(text: &str) -> Option<Map<String, Value>> {
    let text = text.trim();
    let parse = |s: &str| match serde_json::from_str(s) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    parse(text).or_else(|| {
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        (start < end).then(|| parse(&text[start..=end]))?
    })
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

    #[test]
    fn finds_wrapped_objects() {
        let plain = json_object(r#"{"answer": "yes"}"#).expect("plain");
        assert_eq!(text_field(&plain, "answer").as_deref(), Some("yes"));
        let fenced = json_object("```json\n{\"answer\": 42}\n```").expect("fenced");
        assert_eq!(text_field(&fenced, "answer").as_deref(), Some("42"));
        assert!(json_object("no json here").is_none());
        assert!(json_object("[1, 2]").is_none());
        assert!(json_object("} {").is_none());
    }
}
