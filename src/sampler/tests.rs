//! Chain-level behaviour: seeded, table-driven, no network.

use super::*;
use crate::error::Error;

fn chain(stages: &[Stage]) -> SamplerChain {
    let mut c = SamplerChain::new();
    for &s in stages {
        c.push(s).unwrap();
    }
    c
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| x / sum).collect()
}

/// Frequencies of each token over `n` draws (the chain accepts nothing, so draws are i.i.d.).
fn frequencies(chain: &mut SamplerChain, logits: &[f32], n: usize) -> Vec<f64> {
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..n {
        counts[chain.sample(logits).unwrap() as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Deterministic pseudo-random logits in [-8, 8).
fn test_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0
        })
        .collect()
}

fn draw(chain: &mut SamplerChain, logits: &[f32], n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| chain.sample_and_accept(logits).unwrap())
        .collect()
}

#[test]
fn greedy_picks_argmax_with_lowest_id_on_ties() {
    let cases: &[(&[f32], u32)] = &[
        (&[0.1, 0.7, 0.2], 1),
        (&[5.0, 5.0, 1.0], 0),
        (&[1.0, 9.0, 3.0, 9.0, 9.0], 1),
        (&[-3.0, -1.0, -2.0], 1),
        (&[f32::NAN, 0.0, f32::NAN], 1),
    ];
    for &(logits, want) in cases {
        let mut c = chain(&[Stage::Greedy]);
        assert_eq!(c.sample(logits).unwrap(), want, "{logits:?}");
    }
}

#[test]
fn top_k_one_then_dist_equals_greedy() {
    let mut greedy = chain(&[Stage::Greedy]);
    let mut topk1 = chain(&[Stage::TopK(1), Stage::Dist { seed: 3 }]);
    for round in 0..50 {
        let logits = test_logits(1000, round);
        assert_eq!(
            topk1.sample(&logits).unwrap(),
            greedy.sample(&logits).unwrap()
        );
    }
}

#[test]
fn temperature_zero_then_dist_equals_greedy() {
    let mut greedy = chain(&[Stage::Greedy]);
    let mut t0 = chain(&[Stage::Temperature(0.0), Stage::Dist { seed: 11 }]);
    for round in 0..50 {
        let logits = test_logits(500, round + 100);
        assert_eq!(t0.sample(&logits).unwrap(), greedy.sample(&logits).unwrap());
    }
}

#[test]
fn same_seed_same_sequence_different_seed_different_sequence() {
    let logits = test_logits(64, 5)
        .iter()
        .map(|l| l * 0.2)
        .collect::<Vec<_>>();
    let params = |seed| SamplerParams {
        seed,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    };
    let a = draw(
        &mut SamplerChain::from_params(&params(1)).unwrap(),
        &logits,
        64,
    );
    let b = draw(
        &mut SamplerChain::from_params(&params(1)).unwrap(),
        &logits,
        64,
    );
    let c = draw(
        &mut SamplerChain::from_params(&params(2)).unwrap(),
        &logits,
        64,
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn reset_replays_the_sequence_and_clears_penalties() {
    let logits = test_logits(32, 9)
        .iter()
        .map(|l| l * 0.1)
        .collect::<Vec<_>>();
    let mut c = chain(&[
        Stage::Penalties {
            last_n: 8,
            repeat: 1.3,
            frequency: 0.2,
            presence: 0.1,
        },
        Stage::TopP {
            p: 0.9,
            min_keep: 1,
        },
        Stage::Temperature(0.9),
        Stage::Dist { seed: 1234 },
    ]);
    let first = draw(&mut c, &logits, 40);
    c.reset();
    let second = draw(&mut c, &logits, 40);
    assert_eq!(first, second);
}

#[test]
fn random_seed_is_reported_and_replayable() {
    let logits = test_logits(32, 2);
    let mut random = chain(&[Stage::Dist { seed: RANDOM_SEED }]);
    let seed = random.seed().unwrap();
    assert_ne!(seed, RANDOM_SEED);
    let a = draw(&mut random, &logits, 30);
    let b = draw(&mut chain(&[Stage::Dist { seed }]), &logits, 30);
    assert_eq!(a, b);
    // reset keeps the drawn seed rather than drawing a new one
    random.reset();
    assert_eq!(random.seed(), Some(seed));
    assert_eq!(draw(&mut random, &logits, 30), a);
}

#[test]
fn dist_frequencies_match_softmax() {
    let logits = [1.0, 2.0, 0.5, -1.0, 1.5];
    let want = softmax(&logits);
    let mut c = chain(&[Stage::Dist { seed: 2024 }]);
    let got = frequencies(&mut c, &logits, 10_000);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 0.02, "token {i}: freq {g:.4} vs p {w:.4}");
    }
}

#[test]
fn temperature_rescales_the_distribution() {
    let logits = [1.0, 2.0, 0.0, 1.5];
    for t in [0.5f32, 1.0, 2.0] {
        let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
        let want = softmax(&scaled);
        let mut c = chain(&[Stage::Temperature(t), Stage::Dist { seed: 77 }]);
        let got = frequencies(&mut c, &logits, 10_000);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 0.02,
                "t={t} token {i}: freq {g:.4} vs p {w:.4}"
            );
        }
    }
    // Lower temperature concentrates mass on the best token.
    let top = |t: f32| {
        let mut c = chain(&[Stage::Temperature(t), Stage::Dist { seed: 5 }]);
        frequencies(&mut c, &logits, 5_000)[1]
    };
    assert!(top(0.3) > top(1.0) && top(1.0) > top(3.0));
}

#[test]
fn filters_never_yield_removed_tokens() {
    // top-k 2 leaves tokens 1 and 3; their renormalised probabilities are softmax([2, 1.5]).
    let logits = [1.0, 2.0, 0.0, 1.5];
    let mut c = chain(&[Stage::TopK(2), Stage::Dist { seed: 8 }]);
    let got = frequencies(&mut c, &logits, 10_000);
    let want = softmax(&[2.0, 1.5]);
    assert_eq!(got[0] + got[2], 0.0);
    assert!((got[1] - want[0]).abs() < 0.02);
    assert!((got[3] - want[1]).abs() < 0.02);
}

#[test]
fn repetition_penalty_steers_greedy_and_is_forgotten_outside_window() {
    let logits = [3.0, 2.5, 0.0];
    let mut c = chain(&[
        Stage::Penalties {
            last_n: 2,
            repeat: 2.0,
            frequency: 0.0,
            presence: 0.0,
        },
        Stage::Greedy,
    ]);
    assert_eq!(c.sample(&logits).unwrap(), 0);
    c.accept(0); // 3.0 / 2 = 1.5 < 2.5
    assert_eq!(c.sample(&logits).unwrap(), 1);
    c.accept(2);
    assert_eq!(
        c.sample(&logits).unwrap(),
        1,
        "0 is still in the window [0, 2]"
    );
    c.accept(2); // window [2, 2]: 0 forgotten
    assert_eq!(c.sample(&logits).unwrap(), 0);
}

#[test]
fn frequency_penalty_counts_only_the_window() {
    // Token 0 leads by 1.0; each occurrence in the window costs 0.4.
    let logits = [1.0, 0.0];
    let mut c = chain(&[
        Stage::Penalties {
            last_n: 3,
            repeat: 1.0,
            frequency: 0.4,
            presence: 0.0,
        },
        Stage::Greedy,
    ]);
    let cases: &[(u32, u32)] = &[
        // (token accepted, expected greedy pick afterwards)
        (0, 0), // window [0]: 1.0 - 0.4 = 0.6 > 0
        (0, 0), // [0, 0]: 0.2 > 0
        (0, 1), // [0, 0, 0]: -0.2 < 0
        (1, 0), // [0, 0, 1]: 0.2 vs 0 - 0.4
        (1, 0), // [0, 1, 1]
        (1, 0), // [1, 1, 1]: 1.0 vs -1.2
    ];
    for (step, &(accept, want)) in cases.iter().enumerate() {
        c.accept(accept);
        assert_eq!(c.sample(&logits).unwrap(), want, "step {step}");
    }
}

#[test]
fn presence_penalty_is_flat_in_count() {
    let logits = [1.0, 0.0];
    let mut c = chain(&[
        Stage::Penalties {
            last_n: 10,
            repeat: 1.0,
            frequency: 0.0,
            presence: 0.6,
        },
        Stage::Greedy,
    ]);
    for _ in 0..5 {
        c.accept(0);
        assert_eq!(c.sample(&logits).unwrap(), 0, "1.0 - 0.6 stays above 0");
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut c = chain(&[Stage::TopK(5), Stage::Dist { seed: 1 }]);
    for logits in [vec![], vec![f32::NAN; 4], vec![f32::NEG_INFINITY; 2]] {
        assert!(
            matches!(c.sample(&logits), Err(Error::InvalidArgument(_))),
            "{logits:?}"
        );
    }
    // The chain still works afterwards.
    assert_eq!(c.sample(&[0.0, f32::NAN, 50.0]).unwrap(), 2);
}

#[test]
fn chain_shape_errors() {
    let mut empty = SamplerChain::new();
    assert!(empty.sample(&[1.0]).is_err(), "no terminal stage");
    let mut open = chain(&[Stage::TopK(3)]);
    assert!(open.sample(&[1.0]).is_err(), "no terminal stage");

    let mut c = chain(&[Stage::Greedy]);
    assert!(c.push(Stage::TopK(1)).is_err(), "stage after terminal");
    assert!(c.push(Stage::Dist { seed: 0 }).is_err(), "second terminal");
    assert!(SamplerChain::new()
        .push(Stage::Temperature(f32::NAN))
        .is_err());
    assert_eq!(c.len(), 1);
}

#[test]
fn from_params_builds_conventional_order() {
    let p = SamplerParams {
        seed: 42,
        penalty_repeat: 1.1,
        ..SamplerParams::default()
    };
    let c = SamplerChain::from_params(&p).unwrap();
    assert_eq!(
        c.stages(),
        &[
            Stage::Penalties {
                last_n: 64,
                repeat: 1.1,
                frequency: 0.0,
                presence: 0.0
            },
            Stage::TopK(40),
            Stage::TopP {
                p: 0.95,
                min_keep: 0
            },
            Stage::MinP {
                p: 0.05,
                min_keep: 0
            },
            Stage::Temperature(0.8),
            Stage::Dist { seed: 42 },
        ]
    );
    assert_eq!(c.seed(), Some(42));

    // Defaults: penalties neutral, so left out.
    let c = SamplerChain::from_params(&SamplerParams::default()).unwrap();
    assert_eq!(c.len(), 5);

    // Greedy when temperature <= 0, everything else irrelevant except penalties.
    let c = SamplerChain::from_params(&SamplerParams {
        temperature: 0.0,
        ..SamplerParams::default()
    })
    .unwrap();
    assert_eq!(c.stages(), &[Stage::Greedy]);

    // Off values leave stages out.
    let c = SamplerChain::from_params(&SamplerParams {
        seed: 1,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    })
    .unwrap();
    assert_eq!(c.stages(), &[Stage::Dist { seed: 1 }]);

    // Invalid values are errors.
    for bad in [
        SamplerParams {
            temperature: f32::NAN,
            ..SamplerParams::default()
        },
        SamplerParams {
            top_p: f32::NAN,
            ..SamplerParams::default()
        },
        SamplerParams {
            penalty_repeat: 0.0,
            ..SamplerParams::default()
        },
    ] {
        assert!(SamplerChain::from_params(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn large_vocab_default_chain_matches_brute_force_filtering() {
    // Default chain on a 50k vocabulary: the chosen token must be inside the set a plain
    // full-sort implementation of top-k/top-p/min-p would keep.
    let logits = test_logits(50_000, 77);
    let params = SamplerParams {
        seed: 9,
        ..SamplerParams::default()
    };
    let mut c = SamplerChain::from_params(&params).unwrap();

    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(40);
    let top: Vec<f32> = order.iter().map(|&i| logits[i]).collect();
    let probs = softmax(&top);
    let mut cum = 0.0;
    let mut n = 0;
    while n < probs.len() {
        cum += probs[n];
        n += 1;
        if cum >= 0.95 {
            break;
        }
    }
    let allowed: Vec<usize> = order[..n]
        .iter()
        .copied()
        .filter(|&i| f64::from(logits[i] - top[0]).exp() >= 0.05)
        .collect();

    for _ in 0..200 {
        let t = c.sample(&logits).unwrap() as usize;
        assert!(allowed.contains(&t), "token {t} outside {allowed:?}");
    }
}
