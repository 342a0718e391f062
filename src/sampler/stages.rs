//! The sampling stages: what a caller can put in a chain ([`Stage`]) and the live form that
//! carries state and does the work ([`ActiveStage`]).

use super::candidates::Candidates;
use super::penalties::Penalties;
use super::rng::{resolve_seed, Xoshiro256StarStar};
use crate::error::{Error, Result};

/// One step of a sampler chain, as configured by the caller.
///
/// Filtering stages narrow or reshape the candidates; the two terminal stages, [`Stage::Greedy`]
/// and [`Stage::Dist`], pick the token and must come last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Penalises tokens seen among the last `last_n` accepted tokens (0 = off).
    /// `repeat` (1.0 = off, must be > 0) divides positive logits and multiplies negative ones;
    /// `frequency` is subtracted per occurrence, `presence` once per distinct token.
    Penalties {
        last_n: usize,
        repeat: f32,
        frequency: f32,
        presence: f32,
    },
    /// Keeps the `k` highest logits; `k <= 0` = off.
    TopK(i32),
    /// Keeps the smallest set of best tokens whose probability mass is >= `p` (and at least
    /// `min_keep` tokens); `p >= 1` = off.
    TopP { p: f32, min_keep: usize },
    /// Keeps tokens whose probability is >= `p` times the best token's (at least `min_keep`
    /// tokens, and always the best one); `p <= 0` = off.
    MinP { p: f32, min_keep: usize },
    /// Divides logits by `t`. `t <= 0` keeps only the best token (greedy behaviour).
    Temperature(f32),
    /// Terminal: picks the highest logit; ties go to the lowest token id.
    Greedy,
    /// Terminal: draws from the softmax of the remaining logits with a seeded generator.
    /// `seed` = [`super::RANDOM_SEED`] picks a random seed (see [`super::SamplerChain::seed`]).
    Dist { seed: u64 },
}

fn require_finite(what: &str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "sampler {what} must be finite, got {v}"
        )))
    }
}

impl Stage {
    /// Whether this stage selects the token (and so must be the chain's last).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Stage::Greedy | Stage::Dist { .. })
    }

    /// Rejects parameters no stage can work with (NaN, infinities, a non-positive repeat
    /// penalty); values meaning "off" are accepted.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Stage::Penalties {
                repeat,
                frequency,
                presence,
                ..
            } => {
                require_finite("repeat penalty", repeat)?;
                require_finite("frequency penalty", frequency)?;
                require_finite("presence penalty", presence)?;
                if repeat <= 0.0 {
                    return Err(Error::InvalidArgument(format!(
                        "sampler repeat penalty must be > 0 (1.0 = off), got {repeat}"
                    )));
                }
                Ok(())
            }
            Stage::TopP { p, .. } => require_finite("top-p", p),
            Stage::MinP { p, .. } => require_finite("min-p", p),
            Stage::Temperature(t) => require_finite("temperature", t),
            Stage::TopK(_) | Stage::Greedy | Stage::Dist { .. } => Ok(()),
        }
    }
}

/// The seeded generator of a [`Stage::Dist`] and the seeds needed to restart it.
#[derive(Debug, Clone)]
pub struct Dist {
    /// The seed actually in use (the requested one, or the random one drawn for the sentinel).
    seed: u64,
    rng: Xoshiro256StarStar,
}

impl Dist {
    fn new(requested: u64) -> Self {
        let seed = resolve_seed(requested);
        Self {
            seed,
            rng: Xoshiro256StarStar::from_seed(seed),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Draws an index with probability proportional to softmax(logit). Zero-probability
    /// candidates are never chosen.
    fn select(&mut self, cands: &mut Candidates) -> Option<usize> {
        if cands.len() <= 1 {
            return if cands.is_empty() { None } else { Some(0) };
        }
        cands.softmax();
        let data = cands.as_slice();
        let total: f64 = data.iter().map(|t| f64::from(t.p)).sum();
        let target = self.rng.next_f64() * total;
        let mut cum = 0.0f64;
        let mut last_possible = None;
        for (i, t) in data.iter().enumerate() {
            if t.p > 0.0 {
                cum += f64::from(t.p);
                last_possible = Some(i);
                if cum > target {
                    return Some(i);
                }
            }
        }
        // Only reachable when rounding puts target at the very top of the range.
        last_possible.or(Some(0))
    }
}

/// A stage with its runtime state.
#[derive(Debug, Clone)]
pub enum ActiveStage {
    Penalties(Penalties),
    TopK(i32),
    TopP { p: f32, min_keep: usize },
    MinP { p: f32, min_keep: usize },
    Temperature(f32),
    Greedy,
    Dist(Dist),
}

impl From<Stage> for ActiveStage {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Penalties {
                last_n,
                repeat,
                frequency,
                presence,
            } => ActiveStage::Penalties(Penalties::new(last_n, repeat, frequency, presence)),
            Stage::TopK(k) => ActiveStage::TopK(k),
            Stage::TopP { p, min_keep } => ActiveStage::TopP { p, min_keep },
            Stage::MinP { p, min_keep } => ActiveStage::MinP { p, min_keep },
            Stage::Temperature(t) => ActiveStage::Temperature(t),
            Stage::Greedy => ActiveStage::Greedy,
            Stage::Dist { seed } => ActiveStage::Dist(Dist::new(seed)),
        }
    }
}

impl ActiveStage {
    /// Runs the stage on the candidates. Terminal stages return the chosen index.
    pub fn apply(&mut self, cands: &mut Candidates) -> Option<usize> {
        match self {
            ActiveStage::Penalties(pen) => pen.apply(cands),
            ActiveStage::TopK(k) => top_k(cands, *k),
            ActiveStage::TopP { p, min_keep } => top_p(cands, *p, *min_keep),
            ActiveStage::MinP { p, min_keep } => min_p(cands, *p, *min_keep),
            ActiveStage::Temperature(t) => temperature(cands, *t),
            ActiveStage::Greedy => return cands.argmax(),
            ActiveStage::Dist(dist) => return dist.select(cands),
        }
        None
    }

    pub fn accept(&mut self, token: u32) {
        if let ActiveStage::Penalties(pen) = self {
            pen.accept(token);
        }
    }

    /// Clears history and restarts the generator from its seed.
    pub fn reset(&mut self) {
        match self {
            ActiveStage::Penalties(pen) => pen.reset(),
            ActiveStage::Dist(dist) => dist.rng = Xoshiro256StarStar::from_seed(dist.seed),
            _ => {}
        }
    }
}

fn top_k(cands: &mut Candidates, k: i32) {
    let Ok(k) = usize::try_from(k) else { return };
    if k == 0 || k >= cands.len() {
        return;
    }
    cands.sort_prefix(k);
    cands.truncate(k);
}

/// Width of the first sorted prefix top-p looks at; typical nucleus sets are far smaller than
/// the vocabulary, so selecting this many is much cheaper than a full sort.
const TOP_P_FIRST_PREFIX: usize = 256;

fn top_p(cands: &mut Candidates, p: f32, min_keep: usize) {
    if p >= 1.0 || cands.len() <= 1 {
        return;
    }
    cands.softmax();
    let p = f64::from(p);
    let mut cum = 0.0f64;
    let mut i = 0;
    while i < cands.len() {
        if i == cands.sorted_len() {
            // Extend the sorted prefix geometrically: amortised O(n) even if the nucleus is
            // the whole vocabulary.
            let want = (2 * i).max(TOP_P_FIRST_PREFIX).max(min_keep);
            cands.sort_prefix(want);
        }
        cum += f64::from(cands.as_slice()[i].p);
        i += 1;
        if cum >= p && i >= min_keep {
            cands.truncate(i);
            return;
        }
    }
}

fn min_p(cands: &mut Candidates, p: f32, min_keep: usize) {
    if p <= 0.0 || cands.len() <= 1 {
        return;
    }
    // p_i >= p * p_max  <=>  logit_i >= logit_max + ln(p): no softmax needed.
    let threshold = cands.max_logit() + p.ln();
    let keep_at_least = min_keep.max(1);
    if cands.count_logit_at_least(threshold) >= keep_at_least {
        cands.retain_logit_at_least(threshold);
    } else {
        cands.sort_prefix(keep_at_least);
        cands.truncate(keep_at_least);
    }
}

fn temperature(cands: &mut Candidates, t: f32) {
    if t <= 0.0 {
        cands.keep_only_argmax();
        return;
    }
    // A tiny positive temperature (below ~1e-38 for ordinary logits) would scale logits past
    // f32's range, and a softmax over infinities is NaN: random tokens. The distribution's limit
    // as t -> 0 is the argmax, so that is what such a temperature gives.
    let peak = cands
        .as_mut_slice()
        .iter()
        .filter(|c| c.logit.is_finite())
        .fold(0.0f32, |m, c| m.max(c.logit.abs()));
    if (peak / t).is_infinite() {
        cands.keep_only_argmax();
        return;
    }
    // Dividing by a positive number keeps the ranking, so the sorted prefix stays valid.
    for c in cands.as_mut_slice() {
        c.logit /= t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stage: Stage, logits: &[f32]) -> Vec<u32> {
        let mut c = Candidates::default();
        c.fill(logits).unwrap();
        let mut s = ActiveStage::from(stage);
        s.apply(&mut c);
        let mut ids: Vec<u32> = c.as_slice().iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Logits whose softmax is exactly the given probabilities.
    fn logits_of(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn validate_rejects_non_finite_and_bad_repeat() {
        let bad = [
            Stage::Temperature(f32::NAN),
            Stage::TopP {
                p: f32::INFINITY,
                min_keep: 0,
            },
            Stage::MinP {
                p: f32::NAN,
                min_keep: 0,
            },
            Stage::Penalties {
                last_n: 4,
                repeat: 0.0,
                frequency: 0.0,
                presence: 0.0,
            },
            Stage::Penalties {
                last_n: 4,
                repeat: 1.0,
                frequency: f32::NAN,
                presence: 0.0,
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        for s in [
            Stage::TopK(-1),
            Stage::Temperature(0.0),
            Stage::TopP {
                p: 2.0,
                min_keep: 0,
            },
        ] {
            assert!(s.validate().is_ok(), "{s:?}");
        }
    }

    #[test]
    fn top_k_table() {
        let logits = [0.1, 0.9, 0.5, 0.7, 0.3];
        let cases: &[(i32, &[u32])] = &[
            (0, &[0, 1, 2, 3, 4]),
            (-3, &[0, 1, 2, 3, 4]),
            (1, &[1]),
            (2, &[1, 3]),
            (3, &[1, 2, 3]),
            (99, &[0, 1, 2, 3, 4]),
        ];
        for &(k, want) in cases {
            assert_eq!(run(Stage::TopK(k), &logits), want, "k={k}");
        }
    }

    #[test]
    fn top_k_breaks_ties_by_lowest_id() {
        assert_eq!(run(Stage::TopK(2), &[1.0, 2.0, 2.0, 2.0]), vec![1, 2]);
    }

    #[test]
    fn top_p_keeps_smallest_prefix_reaching_mass() {
        let logits = logits_of(&[0.1, 0.4, 0.2, 0.3]); // ranked: 1 (.4), 3 (.3), 2 (.2), 0 (.1)
        let cases: &[(f32, usize, &[u32])] = &[
            (0.0, 0, &[1]),
            (0.35, 0, &[1]),
            (0.45, 0, &[1, 3]),
            (0.65, 0, &[1, 3]),
            (0.75, 0, &[1, 2, 3]),
            (0.95, 0, &[0, 1, 2, 3]),
            (1.0, 0, &[0, 1, 2, 3]),
            (0.35, 3, &[1, 2, 3]), // min_keep wins over a reached mass
        ];
        for &(p, min_keep, want) in cases {
            assert_eq!(
                run(Stage::TopP { p, min_keep }, &logits),
                want,
                "p={p} keep={min_keep}"
            );
        }
    }

    #[test]
    fn top_p_on_large_vocab_extends_prefix_beyond_first_chunk() {
        // 1000 equal logits: reaching 0.9 needs 900 tokens, past the first 256-wide prefix.
        let logits = vec![0.0f32; 1000];
        let kept = run(
            Stage::TopP {
                p: 0.9,
                min_keep: 0,
            },
            &logits,
        );
        assert!((899..=901).contains(&kept.len()), "kept {}", kept.len());
        // Equal logits rank by id, so the lowest ids are the ones kept.
        assert_eq!(kept[0], 0);
        assert_eq!(*kept.last().unwrap() as usize, kept.len() - 1);
    }

    #[test]
    fn min_p_threshold_is_relative_to_best_probability() {
        let logits = logits_of(&[0.5, 0.2, 0.05, 0.25]);
        let cases: &[(f32, usize, &[u32])] = &[
            (0.0, 0, &[0, 1, 2, 3]),
            (0.09, 0, &[0, 1, 2, 3]), // 0.05 >= 0.09 * 0.5
            (0.11, 0, &[0, 1, 3]),    // 0.05 <  0.11 * 0.5
            (0.45, 0, &[0, 3]),       // 0.25 >= 0.225, 0.2 < 0.225
            (0.6, 0, &[0]),
            (5.0, 0, &[0]), // beyond 1: still keeps the best
            (0.6, 3, &[0, 1, 3]),
        ];
        for &(p, min_keep, want) in cases {
            assert_eq!(
                run(Stage::MinP { p, min_keep }, &logits),
                want,
                "p={p} keep={min_keep}"
            );
        }
    }

    #[test]
    fn a_temperature_too_small_to_scale_by_is_greedy() {
        for t in [1e-39f32, 1e-45, f32::from_bits(1)] {
            let mut c = Candidates::default();
            c.fill(&[1.0, -30.0, 2.5, 2.4, f32::NEG_INFINITY]).unwrap();
            temperature(&mut c, t);
            assert_eq!(c.as_slice().len(), 1, "t = {t:e}");
            assert_eq!(c.as_slice()[0].id, 2, "t = {t:e}");
        }
    }

    #[test]
    fn temperature_scales_logits_or_goes_greedy() {
        let mut c = Candidates::default();
        c.fill(&[1.0, -2.0, 4.0]).unwrap();
        ActiveStage::from(Stage::Temperature(0.5)).apply(&mut c);
        let l: Vec<f32> = c.as_slice().iter().map(|t| t.logit).collect();
        assert_eq!(l, vec![2.0, -4.0, 8.0]);

        // Masked (-inf) candidates do not make an ordinary temperature greedy.
        let mut c = Candidates::default();
        c.fill(&[1.0, f32::NEG_INFINITY, 4.0]).unwrap();
        ActiveStage::from(Stage::Temperature(0.5)).apply(&mut c);
        assert_eq!(c.len(), 3);

        for t in [0.0, -1.0] {
            assert_eq!(
                run(Stage::Temperature(t), &[1.0, 4.0, 4.0, 2.0]),
                vec![1],
                "t={t}"
            );
        }
    }

    #[test]
    fn greedy_picks_argmax_lowest_id_on_ties() {
        let cases: &[(&[f32], u32)] = &[
            (&[0.0, 1.0, 0.5], 1),
            (&[3.0, 1.0, 3.0], 0),
            (&[-5.0, -1.0, -1.0, -9.0], 1),
            (&[f32::NAN, 2.0, f32::NAN, 7.0], 3),
            (&[f32::NEG_INFINITY, -1e30], 1),
        ];
        for &(logits, want) in cases {
            let mut c = Candidates::default();
            c.fill(logits).unwrap();
            let i = ActiveStage::Greedy.apply(&mut c).unwrap();
            assert_eq!(c.as_slice()[i].id, want, "{logits:?}");
        }
    }
}
