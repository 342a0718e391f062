//! Repetition, frequency and presence penalties over a window of recently accepted tokens.

use std::collections::{HashMap, VecDeque};

use super::candidates::Candidates;

/// The penalty stage: its parameters and the window of the last `last_n` accepted tokens.
#[derive(Debug, Clone)]
pub struct Penalties {
    last_n: usize,
    /// 1.0 = off. A penalised token's positive logit is divided by it, a negative (or zero) one
    /// multiplied, so a penalty > 1 always makes the token less likely.
    repeat: f32,
    /// Subtracted once per occurrence in the window.
    frequency: f32,
    /// Subtracted once if the token occurs at all in the window.
    presence: f32,
    /// (<= last_n,) oldest first. Grows on demand, so a huge `last_n` from a caller costs
    /// nothing until tokens are accepted.
    window: VecDeque<u32>,
    /// Occurrences of each token in `window`; entries with count 0 are removed.
    counts: HashMap<u32, u32>,
}

impl Penalties {
    pub fn new(last_n: usize, repeat: f32, frequency: f32, presence: f32) -> Self {
        Self {
            last_n,
            repeat,
            frequency,
            presence,
            window: VecDeque::new(),
            counts: HashMap::new(),
        }
    }

    /// True when applying would change nothing.
    fn is_neutral(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }

    /// Records an accepted token, forgetting the oldest one once the window is full.
    pub fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        if self.window.len() >= self.last_n {
            if let Some(old) = self.window.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.window.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    pub fn reset(&mut self) {
        self.window.clear();
        self.counts.clear();
    }

    /// How often `token` occurs in the current window.
    #[cfg(test)]
    pub fn count(&self, token: u32) -> u32 {
        self.counts.get(&token).copied().unwrap_or(0)
    }

    fn penalise(&self, logit: f32, count: u32) -> f32 {
        let scaled = if logit <= 0.0 {
            logit * self.repeat
        } else {
            logit / self.repeat
        };
        scaled - count as f32 * self.frequency - self.presence
    }

    pub fn apply(&self, cands: &mut Candidates) {
        if self.is_neutral() || self.counts.is_empty() {
            return;
        }
        if cands.is_id_indexed() {
            // Fresh vocabulary row: visit only the (<= last_n) penalised tokens.
            let data = cands.as_mut_slice();
            for (&token, &count) in &self.counts {
                if let Some(t) = data.get_mut(token as usize) {
                    t.logit = self.penalise(t.logit, count);
                }
            }
        } else {
            for t in cands.as_mut_slice() {
                if let Some(&count) = self.counts.get(&t.id) {
                    t.logit = self.penalise(t.logit, count);
                }
            }
        }
        cands.mark_unsorted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits_after(p: &Penalties, logits: &[f32]) -> Vec<f32> {
        let mut c = Candidates::default();
        c.fill(logits).unwrap();
        p.apply(&mut c);
        let mut out = vec![0.0; logits.len()];
        for t in c.as_slice() {
            out[t.id as usize] = t.logit;
        }
        out
    }

    #[test]
    fn window_forgets_tokens_older_than_last_n() {
        let mut p = Penalties::new(3, 1.0, 1.0, 0.0);
        for t in [5, 5, 6, 7] {
            p.accept(t);
        }
        // Window is now [5, 6, 7]: the first 5 fell out.
        assert_eq!(p.count(5), 1);
        assert_eq!(p.count(6), 1);
        p.accept(8);
        assert_eq!(p.count(5), 0);
        assert!(!p.counts.contains_key(&5), "zero counts are removed");
    }

    #[test]
    fn zero_window_records_nothing() {
        let mut p = Penalties::new(0, 2.0, 1.0, 1.0);
        p.accept(1);
        assert_eq!(p.count(1), 0);
        assert_eq!(logits_after(&p, &[1.0, 1.0]), vec![1.0, 1.0]);
    }

    #[test]
    fn penalties_table() {
        // (repeat, frequency, presence, accepted, logits in, logits out)
        type Case = (f32, f32, f32, &'static [u32], [f32; 4], [f32; 4]);
        let cases: &[Case] = &[
            // repeat divides positive logits and multiplies negative ones; 0 stays 0
            (
                2.0,
                0.0,
                0.0,
                &[0, 1, 2],
                [4.0, -4.0, 0.0, 4.0],
                [2.0, -8.0, 0.0, 4.0],
            ),
            // repeat counts presence only, not multiplicity
            (
                2.0,
                0.0,
                0.0,
                &[0, 0, 0],
                [4.0, 4.0, 4.0, 4.0],
                [2.0, 4.0, 4.0, 4.0],
            ),
            // frequency scales with count, presence is flat
            (
                1.0,
                0.5,
                0.0,
                &[0, 0, 0, 1],
                [1.0; 4],
                [-0.5, 0.5, 1.0, 1.0],
            ),
            (
                1.0,
                0.0,
                0.25,
                &[0, 0, 0, 1],
                [1.0; 4],
                [0.75, 0.75, 1.0, 1.0],
            ),
            // all three combined: (8 / 2) - 2 * 1 - 1 = 1
            (
                2.0,
                1.0,
                1.0,
                &[3, 3],
                [0.0, 0.0, 0.0, 8.0],
                [0.0, 0.0, 0.0, 1.0],
            ),
        ];
        for (i, &(repeat, freq, pres, accepted, input, want)) in cases.iter().enumerate() {
            let mut p = Penalties::new(16, repeat, freq, pres);
            for &t in accepted {
                p.accept(t);
            }
            assert_eq!(logits_after(&p, &input), want.to_vec(), "case {i}");
        }
    }

    #[test]
    fn apply_without_id_index_matches_indexed_path() {
        let mut p = Penalties::new(8, 1.5, 0.1, 0.2);
        for t in [1, 3, 3] {
            p.accept(t);
        }
        let logits = [1.0, 2.0, f32::NAN, 3.0, -1.0];
        let mut c = Candidates::default();
        c.fill(&logits).unwrap();
        assert!(!c.is_id_indexed());
        p.apply(&mut c);
        let got: Vec<(u32, f32)> = c.as_slice().iter().map(|t| (t.id, t.logit)).collect();
        let want = vec![
            (0, 1.0),
            (1, 2.0 / 1.5 - 0.1 - 0.2),
            (3, 3.0 / 1.5 - 0.2 - 0.2),
            (4, -1.0),
        ];
        for ((gi, gl), (wi, wl)) in got.iter().zip(&want) {
            assert_eq!(gi, wi);
            assert!((gl - wl).abs() < 1e-6, "token {gi}: {gl} vs {wl}");
        }
    }
}
