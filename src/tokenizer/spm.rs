//! SentencePiece (llama.cpp's "SPM"): score-driven merges of adjacent pieces.
//!
//! The text (spaces already escaped to U+2581) starts as one symbol per character; the adjacent
//! pair whose concatenation is a vocabulary token with the highest score (leftmost on ties) is
//! merged until none is left. A final symbol that is not a token is emitted as `<0xXX>` byte
//! tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

const NONE: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text when queued; a mismatch later means the entry is stale.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the smaller left index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Appends the ids for `text` (whitespace already escaped) to `out`.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .map(|(start, c)| Symbol {
            start,
            len: c.len_utf8(),
            prev: NONE,
            next: NONE,
        })
        .collect();
    let n = symbols.len();
    if n == 0 {
        return;
    }
    for (i, s) in symbols.iter_mut().enumerate() {
        s.prev = if i == 0 { NONE } else { i - 1 };
        s.next = if i + 1 == n { NONE } else { i + 1 };
    }

    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (&symbols[left], &symbols[right]);
        let merged = &text[l.start..r.start + r.len];
        if let Some(token) = vocab.text_to_id(merged).and_then(|id| vocab.token(id)) {
            heap.push(Bigram {
                score: token.score,
                left,
                right,
                size: merged.len(),
            });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &symbols, i - 1, i);
    }
    while let Some(bigram) = heap.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = bigram.left;
        }
        try_add(&mut heap, &symbols, l.prev, bigram.left);
        try_add(&mut heap, &symbols, bigram.left, r.next);
    }

    let mut i = 0;
    while i != NONE {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match vocab.text_to_id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b))),
        }
        i = s.next;
    }
}

/// The token for a raw byte: `<0xXX>`, else the byte itself as a one-character token, else the
/// unknown token (llama.cpp aborts there; a vocabulary without byte tokens is unusual).
fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab
        .text_to_id(&format!("<0x{b:02X}>"))
        .or_else(|| {
            let mut buf = [0u8; 4];
            b.is_ascii()
                .then(|| vocab.text_to_id(char::from(b).encode_utf8(&mut buf)))
                .flatten()
        })
        .or(vocab.unk)
}
