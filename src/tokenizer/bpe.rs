//! Byte-level BPE: merge a pre-tokenized, byte-encoded word by merge rank.
//!
//! The word starts as one symbol per character; the adjacent pair with the lowest merge rank
//! (leftmost on ties) is merged until no ranked pair is left. A min-heap holds candidate pairs;
//! entries made stale by an earlier merge are recognised by the symbols' lengths and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::unicode::byte_to_char;
use super::vocab::Vocab;

const NONE: usize = usize::MAX;

/// A run of the word's text: `word[start..start + len]`; `len == 0` once merged into its left
/// neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// A candidate merge. Ordered by rank, then left position (the heap pops the smallest).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

/// Maps each byte of `word` to its printable stand-in character (GPT-2 byte encoding).
pub(crate) fn byte_encode(word: &str) -> String {
    word.bytes().map(byte_to_char).collect()
}

/// Appends the ids of one byte-encoded word to `out`.
pub(crate) fn encode_word(vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if vocab.ignore_merges {
        if let Some(id) = vocab.text_to_id(word) {
            out.push(id);
            return;
        }
    }
    let mut symbols: Vec<Symbol> = word
        .char_indices()
        .map(|(start, c)| Symbol {
            start,
            len: c.len_utf8(),
            prev: NONE,
            next: NONE,
        })
        .collect();
    let n = symbols.len();
    for (i, s) in symbols.iter_mut().enumerate() {
        s.prev = if i == 0 { NONE } else { i - 1 };
        s.next = if i + 1 == n { NONE } else { i + 1 };
    }

    let text = |s: &Symbol| &word[s.start..s.start + s.len];
    let mut heap = BinaryHeap::new();
    let push_pair =
        |heap: &mut BinaryHeap<Reverse<Pair>>, symbols: &[Symbol], left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (l, r) = (&symbols[left], &symbols[right]);
            if let Some(rank) = vocab.merges.rank(text(l), text(r)) {
                heap.push(Reverse(Pair {
                    rank,
                    left,
                    right,
                    left_len: l.len,
                    right_len: r.len,
                }));
            }
        };
    for i in 1..n {
        push_pair(&mut heap, &symbols, i - 1, i);
    }
    while let Some(Reverse(pair)) = heap.pop() {
        let (l, r) = (symbols[pair.left], symbols[pair.right]);
        if l.len == 0 || r.len == 0 || l.len != pair.left_len || r.len != pair.right_len {
            continue; // stale: one side changed since this pair was queued
        }
        symbols[pair.left].len += r.len;
        symbols[pair.right].len = 0;
        symbols[pair.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = pair.left;
        }
        push_pair(&mut heap, &symbols, l.prev, pair.left);
        push_pair(&mut heap, &symbols, pair.left, r.next);
    }

    let mut i = 0;
    while i != NONE {
        let s = &symbols[i];
        let piece = text(s);
        match vocab.text_to_id(piece) {
            Some(id) => out.push(id),
            None => {
                // llama.cpp falls back to single-byte tokens of the encoded text; only ASCII
                // bytes can form a token on their own.
                for b in piece.bytes().filter(u8::is_ascii) {
                    let mut buf = [0u8; 4];
                    if let Some(id) = vocab.text_to_id(char::from(b).encode_utf8(&mut buf)) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
