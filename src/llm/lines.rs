//! Splits a byte stream into lines, whatever the read boundaries: a read may end inside a line or
//! inside a multi-byte character, so lines are cut on bytes (by `LinesCodec`) and decoded only
//! once whole.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use super::LlmError;

/// No backend line (one NDJSON chunk, one SSE field) comes near this; a longer one means the
/// stream is not what we expect, and buffering it without bound would let it eat memory.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub(crate) struct LineBuffer {
    codec: LinesCodec,
    buf: BytesMut,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self {
            codec: LinesCodec::new_with_max_length(MAX_LINE_BYTES),
            buf: BytesMut::new(),
        }
    }
}

impl LineBuffer {
    /// Appends `bytes` and hands every completed line (without `\n` or `\r\n`) to `line`.
    pub(crate) fn push(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), LlmError>,
    ) -> Result<(), LlmError> {
        self.buf.extend_from_slice(bytes);
        while let Some(whole) = self.codec.decode(&mut self.buf).map_err(protocol)? {
            line(whole.as_bytes())?;
        }
        Ok(())
    }

    /// At end of stream: the last line, if it had no newline.
    pub(crate) fn finish(
        &mut self,
        mut line: impl FnMut(&[u8]) -> Result<(), LlmError>,
    ) -> Result<(), LlmError> {
        while let Some(whole) = self.codec.decode_eof(&mut self.buf).map_err(protocol)? {
            line(whole.as_bytes())?;
        }
        Ok(())
    }
}

fn protocol(e: LinesCodecError) -> LlmError {
    LlmError::Protocol(match e {
        LinesCodecError::MaxLineLengthExceeded => format!(
            "a line longer than {MAX_LINE_BYTES} bytes; is the URL a chat API of the configured kind?"
        ),
        LinesCodecError::Io(e) => format!("a line that is not UTF-8 text: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reads: &[&[u8]]) -> Vec<String> {
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        let mut keep = |l: &[u8]| {
            out.push(String::from_utf8(l.to_vec()).expect("whole lines are UTF-8"));
            Ok(())
        };
        for r in reads {
            buf.push(r, &mut keep).expect("within bounds");
        }
        buf.finish(&mut keep).expect("within bounds");
        out
    }

    #[test]
    fn lines_and_characters_split_across_reads_come_out_whole() {
        let text = "é—x\r\nsecond\n\nthird";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                split(&[a, b]),
                ["é—x", "second", "", "third"],
                "cut at {cut}"
            );
        }
        assert_eq!(split(&[b"last\r\n"]), ["last"]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut buf = LineBuffer::default();
        let piece = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_LINE_BYTES / piece.len() + 2) {
            if let Err(e) = buf.push(&piece, |_| Ok(())) {
                assert!(matches!(e, LlmError::Protocol(_)), "{e}");
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(buf.buf.len() <= MAX_LINE_BYTES + piece.len());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_protocol_error() {
        let mut buf = LineBuffer::default();
        let err = buf.push(b"\xff\xfe\n", |_| Ok(())).unwrap_err();
        assert!(matches!(err, LlmError::Protocol(_)), "{err}");
    }
}
