//! The repetition guard: a small model at a low temperature can fall into repeating one sentence
//! until its token cap. The check runs on the answer buffer the streamer keeps anyway, every few
//! deltas, and allocates nothing.

/// The longest repeated span looked for, in bytes (a long sentence or two).
const MAX_PERIOD: usize = 400;
/// A span must repeat this often in a row...
const MIN_REPEATS: usize = 4;
/// ...and the repeats must cover this many bytes, so that `----` or `| - | - |` is not a loop.
const MIN_LOOP_BYTES: usize = 240;
/// Bytes of new answer between two checks.
pub const CHECK_EVERY: usize = 64;

/// Whether `text` ends in one span repeated back to back, at least `MIN_REPEATS` times and
/// `MIN_LOOP_BYTES` in all.
pub fn ends_in_loop(text: &[u8]) -> bool {
    (1..=MAX_PERIOD).any(|period| {
        let repeats = MIN_REPEATS.max(MIN_LOOP_BYTES.div_ceil(period));
        let span = period * repeats;
        span <= text.len() && {
            let tail = &text[text.len() - span..];
            // Periodic with `period`: every byte equals the one a period earlier.
            tail[period..] == tail[..span - period]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_sentence_is_a_loop() {
        let mut text = String::from("Article 1 is about cats. ");
        for _ in 0..3 {
            text.push_str("The article says that cats are nice. ");
        }
        assert!(
            !ends_in_loop(text.as_bytes()),
            "three repeats are not yet a loop"
        );
        for _ in 0..4 {
            text.push_str("The article says that cats are nice. ");
        }
        assert!(ends_in_loop(text.as_bytes()));
        // Cut mid-sentence, it still loops.
        text.push_str("The article");
        assert!(ends_in_loop(text.as_bytes()));
    }

    #[test]
    fn ordinary_text_and_short_runs_are_not() {
        let prose = "Privacy matters because data about people can be misused. Bias creeps in \
                     through the data a model learns from. Transparency lets users see why a \
                     decision was made, and lets regulators check that it was fair.";
        assert!(!ends_in_loop(prose.as_bytes()));
        assert!(!ends_in_loop("| --- | --- | --- |".as_bytes()));
        assert!(!ends_in_loop("=".repeat(100).as_bytes()));
        assert!(ends_in_loop("=".repeat(300).as_bytes()));
        assert!(!ends_in_loop(b""));
    }
}
