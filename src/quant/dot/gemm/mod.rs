//! Tiled matrix-matrix kernels for prompt processing: a panel of consecutive weight rows (16
//! with AVX-512, 8 with 256-bit vectors) against many tokens, in the canonical order of
//! scalar.rs, so every output has exactly the bits of the one-row, one-token kernel.
//!
//! # Why a different data layout, and why it keeps the bits
//! The row kernels (`four`, `rows4`) spend most of their time reducing each cell's 8 i32
//! partial sums of a block to one: the canonical order needs each block's exact integer sum
//! before its float steps. Here vector lane `r` is weight row `r` of the panel instead:
//! - the panel's weight blocks are unpacked once per token tile into [`Panel`] scratch,
//!   transposed so that register `W[b][k]` holds the 4 quant bytes of group `k` (elements
//!   `4k..4k + 4`) of block `b` of every row, as unsigned bytes;
//! - for a token, `vpdpbusd(s, W[b][k], broadcast(a's group k))` over the 8 groups leaves
//!   in lane `r` the exact integer sum of block `b` of row `r`: no horizontal reduction;
//! - the signed formats are made unsigned by an offset (Q4_0: q = w + 8, Q5_0: w + 16, Q8_0:
//!   w + 128, IQ4_NL: its table value + 128, looked up once per panel), whose contribution `offset * sum(a)` is an exact integer per activation block
//!   ([`ActMeta::sum`]), subtracted as the dot's starting value;
//! - then, per block, exactly the canonical float steps, lane-wise: `dd = d_w * d_a`,
//!   `acc[b % 32] = fma(isum as f32, dd, acc[b % 32])` (and Q4_1 / Q5_1's
//!   `fma(m_w, s_a, acc)`), and the butterfly of the 32 lane accumulators at the end.
//!
//! The K-quants Q4_K, Q5_K, Q6_K and IQ4_XS (kquant.rs) take the same scheme per sub-block,
//! with each sub-block's sum multiplied by its row's scale lane-wise and the Q8_K activations'
//! terms in [`KMeta`].
//!
//! Integer sums are exact in any grouping, so only the float steps matter, and they are the
//! scalar definition's, one lane per output. Lanes of the 32 accumulators that no block
//! reaches (rows of fewer than 32 blocks) are +0.0 in the definition; the butterfly here skips
//! adding them, which is the same: `x + 0.0 == x` for every x but -0.0, and an accumulator is
//! never -0.0 (it starts at +0.0; a product of an integer and two f16 scales is 0 or at least
//! 2^-48 in magnitude, so a fused multiply-add onto it rounds to -0.0 only from an exact
//! -0.0 + +0.0, which is +0.0).

#[cfg(target_arch = "x86_64")]
mod kquant;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::{isa_choice, Isa};
use crate::quant::GgmlType;
use std::sync::OnceLock;

/// Per activation block, what the tiled kernels read besides the quants: the scales as f32
/// and the exact sum of the block's quants. Built by [`act_meta`] once per activation row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct ActMeta {
    /// `f32(a.d)`.
    pub d: f32,
    /// `f32(a.s)` for Q8_1 activations, 0 for Q8_0.
    pub s: f32,
    /// Sum of the block's 32 quants.
    pub sum: i32,
}

/// Per Q8_K super-block of an activation row, what the tiled K-quant kernels read besides the
/// quants (built by [`act_meta_k`] once per activation row): integer terms of the canonical
/// `isum` / `msum` that depend only on the activation, laid out for broadcast loads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct KMeta {
    /// `a.d`.
    pub d: f32,
    /// `-32 * bsums[g]` per group of 16: the start of Q6_K's group sums, which then take the
    /// quants unsigned (q + 32) and still sum exactly `Σ (q - 32) a`.
    pub q6_start: [i32; 16],
    /// The 32-element sub-block sums `B_j = bsums[2j] + bsums[2j + 1]` as i16 pairs
    /// `B_2p | B_2p+1 << 16` (|B_j| <= 32 * 127 fits i16): the multiplicands of the Q4_K / Q5_K
    /// `msum = Σ m_j B_j` and of IQ4_XS's offset term `128 Σ sc_j B_j`.
    pub pairs: [i32; 4],
}

/// Fills `meta` (one entry per 256-element super-block) for a Q8_K activation row; returns
/// false for other activation types. Panics if the row is shorter than `meta` implies.
pub fn act_meta_k(act: GgmlType, row: &[u8], meta: &mut [KMeta]) -> bool {
    if act != GgmlType::Q8K {
        return false;
    }
    assert!(row.len() / 292 >= meta.len(), "act_meta_k: row too short");
    for (m, block) in meta.iter_mut().zip(row.chunks_exact(292)) {
        let bsum = |g: usize| i16::from_le_bytes([block[260 + 2 * g], block[261 + 2 * g]]) as i32;
        let sub = |j: usize| (bsum(2 * j) + bsum(2 * j + 1)) & 0xFFFF;
        *m = KMeta {
            d: f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            q6_start: std::array::from_fn(|g| -32 * bsum(g)),
            pairs: std::array::from_fn(|p| sub(2 * p) | (sub(2 * p + 1) << 16)),
        };
    }
    true
}

/// The activation formats the tiled kernels take (block bytes, offset of the quants).
fn act_layout(act: GgmlType) -> Option<(usize, usize)> {
    match act {
        GgmlType::Q8_0 => Some((34, 2)),
        GgmlType::Q8_1 => Some((36, 4)),
        _ => None,
    }
}

/// Whether the tiled kernels take activations of type `act` (so [`act_meta`] fills them).
pub fn takes_activations(act: GgmlType) -> bool {
    act_layout(act).is_some()
}

/// Whether the tiled K-quant kernels take activations of type `act` (so [`act_meta_k`] fills
/// them).
pub fn takes_activations_k(act: GgmlType) -> bool {
    act == GgmlType::Q8K
}

/// Fills `meta` (one entry per 32-element block) for an activation row of type `act`;
/// returns false (and leaves `meta` alone) for activation types without tiled kernels.
/// Panics if the row is shorter than `meta` implies.
pub fn act_meta(act: GgmlType, row: &[u8], meta: &mut [ActMeta]) -> bool {
    let Some((ab, aq)) = act_layout(act) else {
        return false;
    };
    let f16 = |p: &[u8]| half::f16::from_le_bytes([p[0], p[1]]).to_f32();
    for (m, block) in meta.iter_mut().zip(row.chunks_exact(ab)) {
        *m = ActMeta {
            d: f16(&block[0..2]),
            s: if aq == 4 { f16(&block[2..4]) } else { 0.0 },
            sum: block[aq..aq + 32].iter().map(|&q| q as i8 as i32).sum(),
        };
    }
    assert!(row.len() / ab >= meta.len(), "act_meta: row too short");
    true
}

/// One tiled product: weight rows `w[r * row_bytes..]` for `r < rows` (`rows` <= the
/// kernel's panel height, each `n` elements) against `n_tokens` activation rows
/// `acts[t * act_row_bytes..]` with their [`ActMeta`] `meta[t * n / 32..]` (32-element
/// formats) or their [`KMeta`] `kmeta[t * n / 256..]` (the K-quants; the other one empty).
pub struct GemmArgs<'a> {
    pub n: usize,
    pub w: &'a [u8],
    pub row_bytes: usize,
    pub rows: usize,
    pub acts: &'a [u8],
    pub act_row_bytes: usize,
    pub meta: &'a [ActMeta],
    pub kmeta: &'a [KMeta],
    pub n_tokens: usize,
}

/// Writes `out[t * panel + r] = dot(row r, token t)` for `t < n_tokens`, `r < rows` (other
/// lanes of `out` get unspecified values). `scratch` holds the unpacked panel between calls.
/// Panics if a slice is shorter than the arguments imply.
pub type GemmFn = fn(args: &GemmArgs<'_>, out: &mut [f32], scratch: &mut Vec<u8>);

/// The tiled kernel of one weight type on one ISA table.
pub struct GemmKernels {
    pub run: GemmFn,
    /// Weight rows per call (the vector's lanes).
    pub panel: usize,
    /// e.g. "q8_0*q8_0 gemm16 avx512"
    pub name: &'static str,
    pub weight: GgmlType,
    pub isa: Isa,
}

/// Every tiled kernel for `weight` this CPU can run, fastest first (none on other targets,
/// and none for types without one: their products use the row kernels).
pub fn available_gemm_kernels(weight: GgmlType) -> Vec<&'static GemmKernels> {
    gemm_kernels_on(weight, |_| true)
}

fn gemm_kernels_on(weight: GgmlType, allow: impl Fn(Isa) -> bool) -> Vec<&'static GemmKernels> {
    #[cfg(target_arch = "x86_64")]
    let all = x86::KERNELS.iter().chain(kquant::KERNELS);
    #[cfg(not(target_arch = "x86_64"))]
    let all = std::iter::empty::<&'static GemmKernels>();
    all.filter(|k| k.weight == weight && allow(k.isa) && k.isa.runnable())
        .collect()
}

/// The fastest tiled kernel for `weight` that this CPU runs and the ISA choice
/// (`ROCMFORGE_CPU_ISA`) allows.
pub fn gemm_kernels_for(weight: GgmlType) -> Option<&'static GemmKernels> {
    static BEST: OnceLock<Vec<&'static GemmKernels>> = OnceLock::new();
    let best = BEST.get_or_init(|| {
        let choice = isa_choice();
        crate::quant::registry::FORMATS
            .iter()
            .filter_map(|f| {
                gemm_kernels_on(f.ty, |isa| choice.allows(isa))
                    .first()
                    .copied()
            })
            .collect()
    });
    best.iter().find(|k| k.weight == weight).copied()
}

#[cfg(test)]
mod tests;
