//! Ids back to bytes: per-token pieces, whole-sequence detokenization, and a streaming decoder
//! that releases only complete UTF-8 characters.

use super::unicode::char_to_byte;
use super::vocab::{attr, Vocab, VocabKind};

const ESCAPED_SPACE: &str = "\u{2581}";

/// The bytes a token stands for. Control and unknown tokens render as their text only when
/// `special`; unused, undefined and out-of-range ids render as nothing.
pub(crate) fn token_to_piece(vocab: &Vocab, id: u32, special: bool) -> Vec<u8> {
    let Some(token) = vocab.token(id) else {
        return Vec::new();
    };
    let a = token.attr;
    if a & (attr::UNKNOWN | attr::CONTROL) != 0 && !special {
        return Vec::new();
    }
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return token.text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match vocab.kind {
            VocabKind::Spm => token.text.replace(ESCAPED_SPACE, " ").into_bytes(),
            VocabKind::Bpe => byte_decode(&token.text),
        };
    }
    if a & attr::BYTE != 0 {
        // "<0xXX>"
        return token
            .text
            .get(3..5)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map(|b| vec![b])
            .unwrap_or_default();
    }
    Vec::new()
}

/// Undoes the GPT-2 byte encoding. A character outside the table is spelled out the way
/// llama.cpp does: `[UNK_BYTE_0x<utf8 hex><token text>]`.
fn byte_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `llama_detokenize(.., remove_special = false, unparse_special = special)`:
/// the pieces concatenated, the leading space of the first piece dropped when the vocabulary
/// adds a space prefix, then the vocabulary's space clean-up.
pub(crate) fn detokenize(vocab: &Vocab, ids: &[u32], special: bool) -> Vec<u8> {
    let mut text = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let piece = token_to_piece(vocab, id, special);
        let piece = match piece.split_first() {
            Some((b' ', rest)) if i == 0 && vocab.add_space_prefix => rest,
            _ => &piece[..],
        };
        text.extend_from_slice(piece);
    }
    if vocab.clean_spaces {
        clean_up_spaces(&mut text);
    }
    text
}

/// Hugging Face's `clean_up_tokenization_spaces`, in llama.cpp's three in-place passes:
/// " ?", " !", " .", " ," lose their space; " ' " becomes "'"; " 's", " 'm", " 're", " 've"
/// lose their space. Each pass reads the buffer as the previous writes left it.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // Pass 1: space before ?!.,
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // Pass 2: a lone apostrophe between spaces.
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1; // drop the space before
            i += 1;
            text[i] = 0; // and skip the space after (llama.cpp overwrites it with NUL)
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // Pass 3: contractions.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if !matches!(x1, b't' | b'd') && i + 2 < n {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Accumulates token pieces and releases text only up to the last complete UTF-8 character, so
/// a character split across tokens is never torn. Bytes that can never form a valid character
/// are released as U+FFFD as soon as that is certain, and at [`StreamDecoder::finish`].
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds a piece; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by the error's contract.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: keep it for the next piece.
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let consumed = self.pending.len() - keep;
        self.pending.drain(..consumed);
        out
    }

    /// Number of bytes held back waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Releases whatever is left; an unfinished character becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
