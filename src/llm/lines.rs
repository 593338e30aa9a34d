//! Splits a byte stream into lines, whatever the read boundaries: a read may end inside a line or
//! inside a multi-byte character, so lines are cut on bytes and decoded only once whole.

use super::LlmError;

/// No backend line (one NDJSON chunk, one SSE field) comes near this; a longer one means the
/// stream is not what we expect, and buffering it without bound would let it eat memory.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// Appends `bytes` and hands every completed line (without `\n` or `\r\n`) to `line`.
    pub(crate) fn push(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), LlmError>,
    ) -> Result<(), LlmError> {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(at);
            rest = &tail[1..];
            if self.buf.is_empty() {
                check_len(head.len())?;
                line(trim_cr(head))?;
            } else {
                check_len(self.buf.len() + head.len())?;
                self.buf.extend_from_slice(head);
                let whole = std::mem::take(&mut self.buf);
                line(trim_cr(&whole))?;
            }
        }
        check_len(self.buf.len() + rest.len())?;
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    /// At end of stream: the last line, if it had no newline.
    pub(crate) fn finish(
        &mut self,
        line: impl FnOnce(&[u8]) -> Result<(), LlmError>,
    ) -> Result<(), LlmError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let whole = std::mem::take(&mut self.buf);
        line(trim_cr(&whole))
    }
}

fn check_len(len: usize) -> Result<(), LlmError> {
    if len > MAX_LINE_BYTES {
        return Err(LlmError::Protocol(format!(
            "a line longer than {MAX_LINE_BYTES} bytes; is the URL a chat API of the configured kind?"
        )));
    }
    Ok(())
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reads: &[&[u8]]) -> Vec<String> {
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        for r in reads {
            buf.push(r, |l| {
                out.push(String::from_utf8(l.to_vec()).expect("whole lines are UTF-8"));
                Ok(())
            })
            .expect("within bounds");
        }
        buf.finish(|l| {
            out.push(String::from_utf8_lossy(l).into_owned());
            Ok(())
        })
        .expect("within bounds");
        out
    }

    #[test]
    fn lines_and_characters_split_across_reads_come_out_whole() {
        let text = "é—x\r\nsecond\nthird";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(split(&[a, b]), ["é—x", "second", "third"], "cut at {cut}");
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut buf = LineBuffer::default();
        let piece = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_LINE_BYTES / piece.len() + 2) {
            if buf.push(&piece, |_| Ok(())).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(buf.buf.len() <= MAX_LINE_BYTES);
    }
}
