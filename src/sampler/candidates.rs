//! The candidate array that sampling stages narrow down in place.
//!
//! One buffer lives in the chain and is refilled from the logits for every token, so after the
//! first token no allocation happens. Stages never sort the whole vocabulary unless they must:
//! the array remembers how long its sorted prefix is, and a stage that needs the best `n`
//! candidates extends that prefix by partial selection (`select_nth_unstable_by`) plus a sort of
//! only the selected part.

use std::cmp::Ordering;

use crate::error::{Error, Result};

/// One vocabulary entry under consideration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenData {
    /// Token id (index into the logits row).
    pub id: u32,
    /// Raw score, modified by stages (penalties, temperature).
    pub logit: f32,
    /// Probability from the last softmax a stage computed over the live candidates; 0 before.
    pub p: f32,
}

/// Ranking used everywhere: higher logit first, and on equal logits the lower id first.
///
/// `total_cmp` makes this a total order even if a NaN slipped in (the sort functions may panic
/// on inconsistent orders); note it ranks `-0.0` below `+0.0`.
pub(crate) fn rank(a: &TokenData, b: &TokenData) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Live candidates, shrinking as stages run.
#[derive(Debug, Default)]
pub struct Candidates {
    /// (n_live,) — starts as the whole vocabulary, truncated by filtering stages.
    data: Vec<TokenData>,
    /// `data[..sorted_len]` holds the best `sorted_len` candidates in [`rank`] order.
    sorted_len: usize,
    /// `data[i].id == i` for every i: nothing has been moved or dropped since the fill, so a
    /// token's entry can be found by indexing (used by the penalty stage).
    id_indexed: bool,
}

impl Candidates {
    /// Refills from one row of logits (shape (n_vocab,)). NaN logits are dropped: no stage can
    /// rank them. Errors if the row is empty, too long for u32 ids, or has no logit above -inf.
    pub fn fill(&mut self, logits: &[f32]) -> Result<()> {
        self.data.clear();
        self.sorted_len = 0;
        if logits.is_empty() {
            return Err(Error::InvalidArgument(
                "cannot sample from empty logits".into(),
            ));
        }
        if u32::try_from(logits.len()).is_err() {
            return Err(Error::InvalidArgument(format!(
                "logits row of {} entries exceeds the u32 token id range",
                logits.len()
            )));
        }
        self.data
            .extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.is_nan())
                    .map(|(i, &logit)| TokenData {
                        id: i as u32,
                        logit,
                        p: 0.0,
                    }),
            );
        self.id_indexed = self.data.len() == logits.len();
        if !self.data.iter().any(|t| t.logit > f32::NEG_INFINITY) {
            self.data.clear();
            return Err(Error::InvalidArgument(
                "every logit is NaN or -inf; there is nothing to sample".into(),
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_slice(&self) -> &[TokenData] {
        &self.data
    }

    /// Mutable access for stages that change logits without reordering (temperature).
    /// Changing the ranking through this slice requires [`Self::mark_unsorted`].
    pub fn as_mut_slice(&mut self) -> &mut [TokenData] {
        &mut self.data
    }

    pub fn is_id_indexed(&self) -> bool {
        self.id_indexed
    }

    pub fn sorted_len(&self) -> usize {
        self.sorted_len
    }

    /// Forgets the sorted prefix after logits changed in a rank-altering way.
    pub fn mark_unsorted(&mut self) {
        self.sorted_len = 0;
    }

    /// Keeps the first `n` candidates (no-op if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        if n < self.data.len() {
            self.data.truncate(n);
            self.id_indexed = false;
            self.sorted_len = self.sorted_len.min(n);
        }
    }

    /// Makes `data[..n]` the best `n` candidates in rank order (n clamped to the length),
    /// extending the existing sorted prefix rather than redoing it.
    pub fn sort_prefix(&mut self, n: usize) {
        let n = n.min(self.data.len());
        if n <= self.sorted_len {
            return;
        }
        // Everything after the sorted prefix ranks below it, so the next best candidates can be
        // selected from the tail alone.
        let rest = &mut self.data[self.sorted_len..];
        let need = n - self.sorted_len;
        if need < rest.len() {
            rest.select_nth_unstable_by(need - 1, rank);
        }
        rest[..need].sort_unstable_by(rank);
        self.sorted_len = n;
        self.id_indexed = false;
    }

    /// Index of the best candidate (highest logit, lowest id on ties). None if empty.
    pub fn argmax(&self) -> Option<usize> {
        if self.sorted_len > 0 {
            return Some(0);
        }
        let mut best: Option<usize> = None;
        for (i, t) in self.data.iter().enumerate() {
            match best {
                Some(b) if rank(t, &self.data[b]) != Ordering::Less => {}
                _ => best = Some(i),
            }
        }
        best
    }

    /// Keeps only the best candidate, moved to the front.
    pub fn keep_only_argmax(&mut self) {
        if let Some(i) = self.argmax() {
            self.data.swap(0, i);
            self.data.truncate(1);
            self.sorted_len = 1;
            self.id_indexed = self.data[0].id == 0;
        }
    }

    /// Keeps the candidates with `logit >= threshold`, in their current order.
    /// Returns how many remain.
    pub fn retain_logit_at_least(&mut self, threshold: f32) -> usize {
        let before = self.data.len();
        self.data.retain(|t| t.logit >= threshold);
        if self.data.len() != before {
            self.id_indexed = false;
        }
        // Order is preserved, and a sorted prefix loses only its tail (see min-p), so the
        // surviving part of the prefix is still the best, sorted.
        self.sorted_len = self.sorted_len.min(self.data.len());
        self.data.len()
    }

    /// Number of candidates with `logit >= threshold`.
    pub fn count_logit_at_least(&self, threshold: f32) -> usize {
        self.data.iter().filter(|t| t.logit >= threshold).count()
    }

    /// Highest logit among the live candidates (-inf if none).
    pub fn max_logit(&self) -> f32 {
        if self.sorted_len > 0 {
            return self.data[0].logit;
        }
        self.data
            .iter()
            .map(|t| t.logit)
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// Sets every `p` to the softmax of the logits over the live candidates. Robust to infinities: candidates whose logit equals the maximum get
    /// weight 1 (so a +inf logit takes all the mass instead of producing NaN).
    pub fn softmax(&mut self) {
        let max = self.max_logit();
        let mut sum = 0.0f64;
        for t in &mut self.data {
            let w = if t.logit == max {
                1.0
            } else {
                (t.logit - max).exp()
            };
            t.p = w;
            sum += f64::from(w);
        }
        // sum >= 1 whenever there is a candidate, since the maximum contributes weight 1.
        let inv = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
        for t in &mut self.data {
            t.p *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &Candidates) -> Vec<u32> {
        c.as_slice().iter().map(|t| t.id).collect()
    }

    #[test]
    fn fill_rejects_empty_all_nan_and_all_neg_inf() {
        let mut c = Candidates::default();
        for bad in [vec![], vec![f32::NAN; 3], vec![f32::NEG_INFINITY, f32::NAN]] {
            assert!(
                matches!(c.fill(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fill_drops_nan_and_keeps_ids() {
        let mut c = Candidates::default();
        c.fill(&[1.0, f32::NAN, 3.0]).unwrap();
        assert_eq!(ids(&c), vec![0, 2]);
        assert!(!c.is_id_indexed());
        c.fill(&[1.0, 2.0]).unwrap();
        assert!(c.is_id_indexed());
    }

    #[test]
    fn fill_reuses_the_buffer() {
        let mut c = Candidates::default();
        let logits = vec![0.5f32; 1000];
        c.fill(&logits).unwrap();
        c.truncate(3);
        let ptr = c.as_slice().as_ptr();
        c.fill(&logits).unwrap();
        assert_eq!(c.as_slice().as_ptr(), ptr, "refill must not reallocate");
        assert_eq!(c.len(), 1000);
    }

    #[test]
    fn sort_prefix_extends_incrementally_and_matches_full_sort() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 7919) % 503) as f32 * 0.01).collect();
        let mut full: Vec<TokenData> = logits
            .iter()
            .enumerate()
            .map(|(i, &logit)| TokenData {
                id: i as u32,
                logit,
                p: 0.0,
            })
            .collect();
        full.sort_by(rank);

        let mut c = Candidates::default();
        c.fill(&logits).unwrap();
        for n in [1, 5, 40, 41, 300, 10_000] {
            c.sort_prefix(n);
            let k = n.min(500);
            assert_eq!(c.sorted_len(), k);
            assert_eq!(&c.as_slice()[..k], &full[..k], "prefix {n}");
        }
    }

    #[test]
    fn argmax_prefers_lowest_id_on_ties() {
        let mut c = Candidates::default();
        c.fill(&[1.0, 3.0, 2.0, 3.0]).unwrap();
        assert_eq!(c.argmax(), Some(1));
        c.keep_only_argmax();
        assert_eq!(ids(&c), vec![1]);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_infinities() {
        let mut c = Candidates::default();
        c.fill(&[0.0, (2.0f32).ln(), f32::NEG_INFINITY]).unwrap();
        c.softmax();
        let p: Vec<f32> = c.as_slice().iter().map(|t| t.p).collect();
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!((p[1] - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(p[2], 0.0);

        c.fill(&[1.0, f32::INFINITY, 5.0]).unwrap();
        c.softmax();
        let p: Vec<f32> = c.as_slice().iter().map(|t| t.p).collect();
        assert_eq!(p, vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn retain_keeps_order_and_sorted_prefix() {
        let mut c = Candidates::default();
        c.fill(&[0.0, 5.0, 1.0, 4.0, 2.0]).unwrap();
        c.sort_prefix(3); // 1, 3, 4
        assert_eq!(c.retain_logit_at_least(3.0), 2);
        assert_eq!(ids(&c), vec![1, 3]);
        assert_eq!(c.sorted_len(), 2);
    }
}
