//! A batch of tokens to evaluate: each with its position, sequence and whether its logits are
//! wanted. Several sequences may share one batch.

use crate::kv_cache::Cells;
use crate::{Error, Result};

pub use crate::kv_cache::MAX_POSITION;

#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Position of each token in its sequence.
    pub pos: Vec<i32>,
    /// Sequence of each token.
    pub seq: Vec<u32>,
    /// Whether the logits after each token are wanted.
    pub logits: Vec<bool>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Consecutive tokens of one sequence starting at `start_pos`; logits only for the last.
    pub fn for_sequence(tokens: &[u32], start_pos: i32, seq: u32) -> Batch {
        let mut b = Batch::new();
        for (i, &t) in tokens.iter().enumerate() {
            b.push(t, start_pos + i as i32, seq, i + 1 == tokens.len());
        }
        b
    }

    pub fn push(&mut self, token: u32, pos: i32, seq: u32, want_logits: bool) {
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq.push(seq);
        self.logits.push(want_logits);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq.clear();
        self.logits.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks the parallel arrays agree and every value is in range.
    pub fn validate(&self, n_vocab: usize, n_seq_max: usize) -> Result<()> {
        let n = self.tokens.len();
        if self.pos.len() != n || self.seq.len() != n || self.logits.len() != n {
            return Err(Error::InvalidArgument(
                "batch arrays differ in length".into(),
            ));
        }
        if n == 0 {
            return Err(Error::InvalidArgument("empty batch".into()));
        }
        for i in 0..n {
            if self.tokens[i] as usize >= n_vocab {
                return Err(Error::InvalidArgument(format!(
                    "token id {} at batch index {i} is outside the vocabulary (size {n_vocab})",
                    self.tokens[i]
                )));
            }
            if self.seq[i] as usize >= n_seq_max {
                return Err(Error::InvalidArgument(format!(
                    "sequence id {} at batch index {i} is out of range (context has {n_seq_max})",
                    self.seq[i]
                )));
            }
            if !(0..=MAX_POSITION).contains(&self.pos[i]) {
                return Err(Error::InvalidArgument(format!(
                    "position {} at batch index {i} is outside 0..={MAX_POSITION}",
                    self.pos[i]
                )));
            }
        }
        Ok(())
    }

    /// New tokens of a sequence must come after what `kv` already holds for it (and after the
    /// batch's earlier tokens of that sequence), so every (sequence, position) names one cell.
    /// Call after [`Self::validate`] (sequence ids in range).
    pub fn check_positions(&self, kv: &Cells) -> Result<()> {
        let mut seen: Vec<Option<i32>> = vec![None; kv.n_seq_max()];
        for (i, (&pos, &seq)) in self.pos.iter().zip(&self.seq).enumerate() {
            let last = seen[seq as usize].or_else(|| kv.seq_pos_max(seq));
            if let Some(last) = last {
                if pos <= last {
                    return Err(Error::InvalidArgument(format!(
                        "batch index {i}: position {pos} of sequence {seq} is not after its \
                         last position {last}"
                    )));
                }
            }
            seen[seq as usize] = Some(pos);
        }
        Ok(())
    }
}
