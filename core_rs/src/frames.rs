//! NATS protocol frames (`HPUB`) for the messages of a JetStream fast-ingest batch, written into one buffer so
//! the client hands them to its socket in one call instead of building each message's command itself.
//!
//! A frame is `HPUB <subject> <reply> <header bytes> <total bytes>\r\n<header block><payload>\r\n`, the header
//! block `NATS/1.0\r\n` then `Key: Value\r\n` per header and an empty line. What goes on the wire is checked as
//! nats-py's own `publish` checks it: a subject or reply with white space (space, tab, CR, LF: they could inject
//! protocol commands) or a header key that is not an RFC 7230 token is an error; header keys and values are trimmed as Python trims them and CR/LF in values become spaces.

use std::fmt;
use std::io::Write;

/// Why a message cannot be written as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Subject(String),
    HeaderKey(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subject(subject) => write!(f, "not a subject to publish on: {subject:?}"),
            Self::HeaderKey(key) => write!(f, "not a header name: {key:?}"),
        }
    }
}

/// One message of a batch: where it goes, its headers in order, its payload.
pub struct Frame<'a> {
    pub subject: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The reply subject that makes a message part of a fast-ingest batch (ADR-50): `<prefix><sequence>.<op>.$FI`,
/// where `prefix` is `<inbox>.<flow>.<gap mode>.`, `sequence` counts from 1 and the operation is 0 for the first
/// message (it starts the batch), 2 for the last (it commits it) and 1 for the others.
pub fn fast_ingest_reply(prefix: &str, sequence: usize, total: usize) -> String {
    let operation = if sequence == total {
        2
    } else if sequence == 1 {
        0
    } else {
        1
    };
    format!("{prefix}{sequence}.{operation}.$FI")
}

/// Append `frame` with reply subject `reply` to `out`.
pub fn write_hpub(out: &mut Vec<u8>, frame: &Frame<'_>, reply: &str) -> Result<(), FrameError> {
    check_subject(frame.subject)?;
    check_subject(reply)?;
    let mut block = Vec::with_capacity(64 + frame.headers.len() * 48);
    block.extend_from_slice(b"NATS/1.0\r\n");
    for (key, value) in frame.headers {
        let key = key.trim_matches(is_python_space);
        if key.is_empty() {
            continue; // as nats-py: an empty key is skipped
        }
        if !key.bytes().all(is_token_byte) {
            return Err(FrameError::HeaderKey(key.to_owned()));
        }
        block.extend_from_slice(key.as_bytes());
        block.extend_from_slice(b": ");
        block.extend(value.trim_matches(is_python_space).bytes().map(|byte| {
            if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            }
        }));
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    let total = block.len() + frame.payload.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HPUB {} {} {} {}\r\n", frame.subject, reply, block.len(), total);
    out.extend_from_slice(&block);
    out.extend_from_slice(frame.payload);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The frames of messages `first..first + frames.len()` (1-based) of a fast-ingest batch of `total` messages.
pub fn fast_ingest_frames(
    frames: &[Frame<'_>],
    reply_prefix: &str,
    first: usize,
    total: usize,
) -> Result<Vec<u8>, FrameError> {
    let size: usize = frames.iter().map(|frame| frame.payload.len() + frame.subject.len() + 160).sum();
    let mut out = Vec::with_capacity(size);
    for (offset, frame) in frames.iter().enumerate() {
        write_hpub(&mut out, frame, &fast_ingest_reply(reply_prefix, first + offset, total))?;
    }
    Ok(out)
}

fn check_subject(subject: &str) -> Result<(), FrameError> {
    if subject.is_empty() || subject.bytes().any(|byte| b" \t\r\n".contains(&byte)) {
        return Err(FrameError::Subject(subject.to_owned()));
    }
    Ok(())
}

/// What Python's `str.strip` strips: Unicode white space and the four ASCII separators U+001C–U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// RFC 7230 `tchar`, as nats-py's header key check.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(subject: &'a str, headers: &'a [(&'a str, &'a str)], payload: &'a [u8]) -> Frame<'a> {
        Frame { subject, headers, payload }
    }

    #[test]
    fn an_hpub_frame_counts_its_header_block_and_payload() {
        let mut out = Vec::new();
        write_hpub(&mut out, &frame("a.b", &[("Nats-Msg-Id", "x1")], b"{}"), "_INBOX.r.100.fail.1.0.$FI").unwrap();
        let block = "NATS/1.0\r\nNats-Msg-Id: x1\r\n\r\n";
        let expected =
            format!("HPUB a.b _INBOX.r.100.fail.1.0.$FI {} {}\r\n{block}{{}}\r\n", block.len(), block.len() + 2);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn the_operations_start_append_and_commit_a_batch() {
        assert_eq!(fast_ingest_reply("p.", 1, 3), "p.1.0.$FI");
        assert_eq!(fast_ingest_reply("p.", 2, 3), "p.2.1.$FI");
        assert_eq!(fast_ingest_reply("p.", 3, 3), "p.3.2.$FI");
        assert_eq!(fast_ingest_reply("p.", 1, 1), "p.1.2.$FI"); // a batch of one commits with its only message
    }

    #[test]
    fn header_values_cannot_end_their_line() {
        let mut out = Vec::new();
        write_hpub(&mut out, &frame("a", &[("Reason", " bad\r\nPUB x 1\r\n ")], b""), "r").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Reason: bad  PUB x 1\r\n\r\n"), "{text:?}");
    }

    #[test]
    fn subjects_with_whitespace_and_keys_outside_the_token_set_are_refused() {
        let mut out = Vec::new();
        for subject in ["", "a b", "a\r\nPUB"] {
            assert_eq!(write_hpub(&mut out, &frame(subject, &[], b""), "r"), Err(FrameError::Subject(subject.into())));
        }
        let refused = write_hpub(&mut out, &frame("a", &[("Bad:Key", "v")], b""), "r");
        assert_eq!(refused, Err(FrameError::HeaderKey("Bad:Key".into())));
        assert!(out.is_empty());
    }

    #[test]
    fn a_batch_numbers_its_frames_from_the_first_sequence() {
        let frames = [frame("a", &[], b"1"), frame("b", &[], b"2")];
        let text = String::from_utf8(fast_ingest_frames(&frames, "p.", 5, 6).unwrap()).unwrap();
        assert!(text.starts_with("HPUB a p.5.1.$FI 12 13\r\n"), "{text:?}");
        assert!(text.contains("HPUB b p.6.2.$FI 12 13\r\n"), "{text:?}");
    }
}
