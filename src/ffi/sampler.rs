//! The sampler handle: a chain of stages (penalties, top-k, top-p, min-p, temperature) ending in
//! greedy or seeded random selection, applied to a context's logits.

use super::context::{logits_of, rocmforge_context, with_context};
use super::guard::{call, call_on, free_handle, into_handle, out_ptr, write_out, Poisonable};
use super::status::{rocmforge_status, FfiError, FfiResult};
use crate::sampler::{SamplerChain, Stage};
use parking_lot::Mutex;
use rocmforge_status::*;
use std::sync::atomic::AtomicBool;

/// Seed value asking rocmforge_sampler_add_dist for a seed from OS entropy.
pub const ROCMFORGE_SEED_RANDOM: u64 = u64::MAX;

#[allow(non_camel_case_types)]
pub struct rocmforge_sampler {
    /// try_lock only: a sampler is used by one thread at a time (else ROCMFORGE_ERR_BUSY).
    chain: Mutex<SamplerChain>,
    poisoned: AtomicBool,
}

impl Poisonable for rocmforge_sampler {
    fn poison_flag(&self) -> &AtomicBool {
        &self.poisoned
    }
}

fn with_sampler(
    s: *const rocmforge_sampler,
    f: impl FnOnce(&mut SamplerChain) -> FfiResult,
) -> rocmforge_status {
    call_on(s, "sampler", |h| {
        let mut chain = h.chain.try_lock().ok_or_else(|| {
            FfiError::new(
                ROCMFORGE_ERR_BUSY,
                "the sampler is in use by another thread",
            )
        })?;
        f(&mut chain)
    })
}

/// Creates an empty sampler chain. Add stages in the order they should run and finish with
/// rocmforge_sampler_add_greedy or rocmforge_sampler_add_dist (nothing can follow those).
///
/// Ownership: the caller owns `*out`; free with rocmforge_sampler_free. Thread-safety: a
/// sampler is used by one thread at a time (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_create(
    out: *mut *mut rocmforge_sampler,
) -> rocmforge_status {
    call(|| {
        let out = out_ptr(out, "out")?;
        let s = rocmforge_sampler {
            chain: Mutex::new(SamplerChain::new()),
            poisoned: AtomicBool::new(false),
        };
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, into_handle(s)) };
        Ok(())
    })
}

/// Frees a sampler; NULL is ignored.
/// Thread-safety: must not overlap any other use of this handle.
///
/// # Safety
/// `sampler` NULL or from rocmforge_sampler_create, not freed before, unused by other threads.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_free(sampler: *mut rocmforge_sampler) {
    // SAFETY: forwarded contract.
    unsafe { free_handle(sampler) }
}

fn push(sampler: *mut rocmforge_sampler, stage: Stage) -> rocmforge_status {
    with_sampler(sampler, |c| {
        c.push(stage)?;
        Ok(())
    })
}

/// Terminal stage: the most likely token (ties: lowest id).
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_greedy(
    sampler: *mut rocmforge_sampler,
) -> rocmforge_status {
    push(sampler, Stage::Greedy)
}

/// Terminal stage: draws from the remaining distribution with a generator seeded by `seed`
/// (ROCMFORGE_SEED_RANDOM: from OS entropy). The same seed gives the same tokens everywhere.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_dist(
    sampler: *mut rocmforge_sampler,
    seed: u64,
) -> rocmforge_status {
    push(sampler, Stage::Dist { seed })
}

/// Divides logits by `temperature` (finite; <= 0 keeps only the best token).
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_temperature(
    sampler: *mut rocmforge_sampler,
    temperature: f32,
) -> rocmforge_status {
    push(sampler, Stage::Temperature(temperature))
}

/// Keeps the `k` most likely tokens (k <= 0: off).
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_top_k(
    sampler: *mut rocmforge_sampler,
    k: i32,
) -> rocmforge_status {
    push(sampler, Stage::TopK(k))
}

/// Keeps the smallest set of most likely tokens whose probability reaches `p` (and at least
/// `min_keep`); p >= 1: off.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_top_p(
    sampler: *mut rocmforge_sampler,
    p: f32,
    min_keep: u32,
) -> rocmforge_status {
    push(
        sampler,
        Stage::TopP {
            p,
            min_keep: min_keep as usize,
        },
    )
}

/// Keeps tokens at least `p` times as likely as the best one (and at least `min_keep`);
/// p <= 0: off.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_min_p(
    sampler: *mut rocmforge_sampler,
    p: f32,
    min_keep: u32,
) -> rocmforge_status {
    push(
        sampler,
        Stage::MinP {
            p,
            min_keep: min_keep as usize,
        },
    )
}

/// Penalises tokens among the last `last_n` accepted ones: `repeat` (> 0, 1 = off) divides
/// positive logits and multiplies negative ones; `frequency` is subtracted per occurrence,
/// `presence` once per distinct token.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_add_penalties(
    sampler: *mut rocmforge_sampler,
    last_n: u32,
    repeat: f32,
    frequency: f32,
    presence: f32,
) -> rocmforge_status {
    push(
        sampler,
        Stage::Penalties {
            last_n: last_n as usize,
            repeat,
            frequency,
            presence,
        },
    )
}

/// Picks a token from the logits of token `index` of the context's last batch (-1 = the last
/// that asked for logits) and writes it to `*out`. Does not accept it (call
/// rocmforge_sampler_accept with the token you keep).
///
/// Errors: ROCMFORGE_ERR_INVALID_ARGUMENT (chain without a terminal stage, bad index),
/// _NOT_FOUND (no logits there), _BUSY (the context or sampler is in use elsewhere).
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler`, `ctx` NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_sample(
    sampler: *mut rocmforge_sampler,
    ctx: *mut rocmforge_context,
    index: i32,
    out: *mut i32,
) -> rocmforge_status {
    with_sampler(sampler, |chain| {
        let out = out_ptr(out, "out")?;
        let mut token = None;
        let status = with_context(ctx, |_, inner| {
            token = Some(chain.sample(logits_of(inner, index)?)?);
            Ok(())
        });
        match token {
            Some(t) => {
                // SAFETY: out checked non-NULL.
                unsafe { write_out(out, t as i32) };
                Ok(())
            }
            None => Err(FfiError::new(status, super::status::last_error_string())),
        }
    })
}

/// Records a token appended to the sequence (updates the penalty window). Negative ids:
/// ROCMFORGE_ERR_INVALID_TOKEN.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_accept(
    sampler: *mut rocmforge_sampler,
    token: i32,
) -> rocmforge_status {
    with_sampler(sampler, |chain| {
        if token < 0 {
            return Err(FfiError::new(
                ROCMFORGE_ERR_INVALID_TOKEN,
                format!("token id {token} is negative"),
            ));
        }
        chain.accept(token as u32);
        Ok(())
    })
}

/// Forgets accepted tokens and restarts the random generator from its seed.
/// Thread-safety: one thread at a time per sampler (others: ROCMFORGE_ERR_BUSY).
///
/// # Safety
/// `sampler` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_sampler_reset(
    sampler: *mut rocmforge_sampler,
) -> rocmforge_status {
    with_sampler(sampler, |chain| {
        chain.reset();
        Ok(())
    })
}
