//! Sizes for map-reduce: a conservative token estimate, the part of the context a prompt may use,
//! long documents split on natural boundaries, summaries grouped for collapsing, and truncation
//! for when nothing else fits.

use std::ops::Range;

/// A system and a user message.
pub type Prompt = (String, String);

/// Bytes per token assumed: generous for English (about 4 characters a token) and about right for
/// CJK scripts (3 bytes, about one token, a character).
const BYTES_PER_TOKEN: usize = 3;
/// Chat-template tokens around each message.
pub const MESSAGE_OVERHEAD: usize = 16;
/// A chunk is never smaller than this, whatever the prompt around it takes.
pub const MIN_CHUNK_TOKENS: usize = 64;

pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(BYTES_PER_TOKEN)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens a prompt may take.
    prompt_tokens: usize,
    num_ctx: u32,
}

impl Budget {
    /// The context minus room for the reply: `max_tokens` when set, else a quarter of it, and never
    /// more than half.
    pub fn new(num_ctx: u32, max_tokens: Option<u32>) -> Self {
        let context = num_ctx as usize;
        let reply = max_tokens
            .map_or(context / 4, |m| m as usize)
            .min(context / 2);
        Self {
            prompt_tokens: context - reply,
            num_ctx,
        }
    }

    /// The same budget less `tokens` taken by something every prompt carries (the history).
    pub fn less(self, tokens: usize) -> Self {
        Self {
            prompt_tokens: self.prompt_tokens.saturating_sub(tokens),
            ..self
        }
    }

    /// Tokens a prompt may take.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    pub fn prompt_size(prompt: &Prompt) -> usize {
        estimate_tokens(&prompt.0) + estimate_tokens(&prompt.1) + 2 * MESSAGE_OVERHEAD
    }

    pub fn fits(&self, prompt: &Prompt) -> bool {
        Self::prompt_size(prompt) <= self.prompt_tokens
    }

    /// Tokens left beside `prompt`: what it may still grow by and fit.
    pub fn left_beside(&self, prompt: &Prompt) -> usize {
        self.prompt_tokens.saturating_sub(Self::prompt_size(prompt))
    }

    /// Tokens left for the material of a prompt that is `empty` without it.
    pub fn room_beside(&self, empty: &Prompt) -> usize {
        self.left_beside(empty).max(MIN_CHUNK_TOKENS)
    }

    /// Ok when `prompt` leaves `spare` tokens free, else why not, naming `what` (the part the user
    /// wrote) as what to shorten.
    pub fn check(&self, prompt: &Prompt, spare: usize, what: &str) -> Result<(), String> {
        let size = Self::prompt_size(prompt) + spare;
        if size <= self.prompt_tokens {
            return Ok(());
        }
        Err(format!(
            "{what} is too long for this room's model: its prompt needs about {size} tokens where \
             {} fit (num_ctx {} less room for the answer); shorten it",
            self.prompt_tokens, self.num_ctx
        ))
    }
}

/// Splits `text` into consecutive chunks of at most `max_tokens`, cutting between paragraphs where
/// it can, else between lines, sentences, words, and only as a last resort inside a word.
pub fn split_to_fit(text: &str, max_tokens: usize) -> Vec<&str> {
    let max_bytes = max_tokens.max(1) * BYTES_PER_TOKEN;
    let mut pieces = Vec::new();
    split_pieces(text, max_bytes, 0, &mut pieces);
    let mut chunks = Vec::new();
    let (mut start, mut end) = (0, 0);
    for piece in pieces {
        if end > start && end - start + piece.len() > max_bytes {
            chunks.push(&text[start..end]);
            start = end;
        }
        end += piece.len();
    }
    if end > start {
        chunks.push(&text[start..end]);
    }
    chunks.retain(|c| !c.trim().is_empty());
    chunks
}

/// Consecutive slices of `text`, each at most `max` bytes, that together are all of it.
fn split_pieces<'a>(text: &'a str, max: usize, level: usize, out: &mut Vec<&'a str>) {
    if text.len() <= max {
        out.push(text);
        return;
    }
    let parts: Vec<&str> = match level {
        0 => text.split_inclusive("\n\n").collect(),
        1 => text.split_inclusive('\n').collect(),
        2 => text
            .split_inclusive(['.', '!', '?', '。', '！', '？'])
            .collect(),
        3 => text.split_inclusive(char::is_whitespace).collect(),
        _ => {
            let mut rest = text;
            while !rest.is_empty() {
                let cut = floor_boundary(rest, max.min(rest.len())).max(first_char_len(rest));
                out.push(&rest[..cut]);
                rest = &rest[cut..];
            }
            return;
        }
    };
    for part in parts {
        split_pieces(part, max, level + 1, out);
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn first_char_len(text: &str) -> usize {
    text.chars().next().map_or(0, char::len_utf8)
}

/// Groups consecutive items of the given token sizes so that each group's total is at most
/// `max_tokens`; an item larger than that is a group of its own.
pub fn pack(sizes: &[usize], max_tokens: usize) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && total + size > max_tokens {
            groups.push(start..i);
            start = i;
            total = 0;
        }
        total += size;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// The start of `text` within `max_tokens`, cut after a word where one ends in the second half.
pub fn truncate(text: &str, max_tokens: usize) -> &str {
    let max = max_tokens * BYTES_PER_TOKEN;
    if text.len() <= max {
        return text;
    }
    let cut = floor_boundary(text, max);
    let head = &text[..cut];
    match head.rfind(char::is_whitespace) {
        Some(space) if space > cut / 2 => head[..space].trim_end(),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_conservative() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_tokens("日本語"), 3);
        let b = Budget::new(8192, None);
        assert_eq!(b.prompt_tokens, 6144);
        assert_eq!(Budget::new(8192, Some(100)).prompt_tokens, 8092);
        assert_eq!(Budget::new(1000, Some(900)).prompt_tokens, 500);
        let huge = ("s".to_owned(), "x".repeat(100_000));
        assert!(!b.fits(&huge));
        assert_eq!(b.room_beside(&huge), MIN_CHUNK_TOKENS);
    }

    #[test]
    fn splits_on_paragraphs_first() {
        let para = |c: char| format!("{}\n\n", c.to_string().repeat(50));
        let text: String = "abcd".chars().map(para).collect();
        // 52 bytes a paragraph; 40 tokens = 120 bytes hold two.
        let chunks = split_to_fit(&text, 40);
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].starts_with('a') && chunks[0].ends_with("b\n\n"));
        assert_eq!(chunks.concat(), text);
    }

    #[test]
    fn splits_sentences_words_and_characters_when_it_must() {
        let text = "One sentence here. Another one there. ".repeat(20);
        let chunks = split_to_fit(&text, 10);
        assert!(chunks.iter().all(|c| c.len() <= 30), "{chunks:?}");
        assert!(chunks.iter().all(|c| c.trim_end().ends_with('.')));
        assert_eq!(chunks.concat(), text);

        let word = "語".repeat(100);
        let chunks = split_to_fit(&word, 5);
        assert!(chunks.iter().all(|c| c.len() <= 15));
        assert_eq!(chunks.concat(), word);
    }

    #[test]
    fn short_text_is_one_chunk_and_blank_text_none() {
        assert_eq!(split_to_fit("short", 100), vec!["short"]);
        assert!(split_to_fit("  \n\n ", 1).is_empty());
    }

    #[test]
    fn packs_consecutive_groups() {
        assert_eq!(pack(&[3, 3, 3, 3], 6), vec![0..2, 2..4]);
        assert_eq!(pack(&[10, 1, 1], 6), vec![0..1, 1..3]);
        assert_eq!(pack(&[], 6), Vec::<Range<usize>>::new());
    }

    #[test]
    fn truncates_at_a_word() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("alpha beta gamma delta", 4), "alpha beta");
        assert_eq!(truncate("日本語日本語", 1), "日");
    }
}
