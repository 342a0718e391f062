//! Row dot-product kernels: packed weight rows against activation rows in the weight type's
//! activation format (see [`super::activation_type`]). Three shapes per type:
//! - `one`: 1 weight row x 1 activation row;
//! - `four`: 1 weight row x 4 activation rows (prefill: the weight block is unpacked once);
//! - `rows4`: 4 weight rows x 1 activation row (decode mat-vec: the activation block and its
//!   scales are loaded once). On Sapphire Rapids `one` runs at about llama.cpp's own
//!   `vec_dot` speed and `rows4`/`four` 1.4-1.8x faster per row (benches/quant_dot.rs), so
//!   the mat-vec loops should prefer them.
//!
//! Prompt steps (4 tokens or more) use the tiled kernels of [`gemm`] instead where the type has
//! one: a panel of 16 (AVX-512) or 8 weight rows against many tokens, in the same canonical
//! order, so a product's bits never depend on which kernel computed it.
//!
//! Each ISA module offers a table of [`DotKernels`]; [`kernels_for`] picks, once per process,
//! the fastest one this CPU can run (order measured on Sapphire Rapids, see
//! benches/quant_dot.rs). [`available_kernels`] lists every runnable variant so tests and the
//! benchmark can force each one.
//!
//! The scalar kernels of each weight type live in its format file (`formats/*.rs`) and are
//! named by its registry row ([`crate::quant::registry::Format::cpu_dot`]): a type has CPU dot
//! products exactly when its row has them. The ISA modules here add faster sets.
//!
//! Summation order: every quantized kernel (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and the
//! super-block types Q2_K .. Q6_K, IQ4_XS; SIMD sets in canon256.rs, kquant256.rs, neon.rs), on
//! every ISA and tile shape,
//! returns exactly the bits of the canonical order defined in scalar.rs, which is also the
//! order of the GPU mat-vec (32 lane accumulators, block b into lane b % 32, fused
//! multiply-adds, butterfly at the end); the scalar kernels of the registry are that order
//! ([`scalar_kernels_for`]), so GPU tests compare against them bit for bit. The float kernels
//! (F32/F16/BF16) have no pinned order.
//!
//! Contract for every kernel: `n` is a multiple of the weight's block size (32 for the
//! quantized types, any `n` for F32/F16/BF16), `w` holds at least `weight.row_bytes(n)` bytes
//! and each activation row at least `act.row_bytes(n)`. The kernels check this once per call
//! and panic otherwise (a caller bug: the engine validates tensor shapes at load time); the
//! inner loops then read with unchecked unaligned SIMD loads.

/// Defines `$name` as a [`DotRows4Fn`] made of four calls of the `DotFn` `$one`, for kernel
/// sets without a dedicated 4-row kernel.
#[allow(unused_macros)] // unused on targets without SIMD kernels
macro_rules! rows4_from_one {
    ($name:ident, $one:ident) => {
        fn $name(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]) {
            for (o, w) in out.iter_mut().zip(w) {
                *o = $one(n, w, a);
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use rows4_from_one;

/// A [`DotKernels`] for weight type `$weight` made of one scalar kernel `$one`: `four` and
/// `rows4` call it four times, so they return exactly its bits.
macro_rules! scalar_kernels {
    ($one:ident, $name:literal, $weight:ident) => {{
        fn four(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            for (o, a) in out.iter_mut().zip(a) {
                *o = $one(n, w, a);
            }
        }
        $crate::quant::dot::rows4_from_one!(rows4, $one);
        $crate::quant::dot::DotKernels {
            one: $one,
            four,
            rows4,
            name: $name,
            weight: $crate::quant::GgmlType::$weight,
        }
    }};
}
pub(crate) use scalar_kernels;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod canon256;
#[cfg(any(target_arch = "x86_64", test))]
mod f16_table;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod kquant256;
#[cfg(target_arch = "aarch64")]
mod neon;
pub(crate) mod scalar;

use super::registry::FORMATS;
use super::GgmlType;
use std::sync::OnceLock;

/// One weight row (packed blocks, n elements) dotted with one activation row of
/// activation_type(weight).
pub type DotFn = fn(n: usize, w: &[u8], a: &[u8]) -> f32;
/// One weight row against 4 activation rows at once (weights unpacked once, reused):
/// out[i] = dot(w, a[i]).
pub type Dot4Fn = fn(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]);
/// Four weight rows against one activation row (activation loaded once, reused):
/// out[i] = dot(w[i], a). The mat-vec (decode) shape: it reads fewer bytes per weight block
/// than four `one` calls, since the activation's quants and scales are shared.
pub type DotRows4Fn = fn(n: usize, w: [&[u8]; 4], a: &[u8], out: &mut [f32; 4]);

/// The kernels for one weight type on one ISA.
pub struct DotKernels {
    pub one: DotFn,
    pub four: Dot4Fn,
    pub rows4: DotRows4Fn,
    /// e.g. "q4_1*q8_1 avxvnni"
    pub name: &'static str,
    pub weight: GgmlType,
}

/// Every kernel set for `weight` this CPU can run, fastest first; the scalar reference last.
pub fn available_kernels(weight: GgmlType) -> Vec<&'static DotKernels> {
    kernels_on(weight, |_| true)
}

/// The runnable kernel sets for `weight` from the ISA tables `allow` accepts, fastest first,
/// then the scalar reference.
fn kernels_on(weight: GgmlType, allow: impl Fn(Isa) -> bool) -> Vec<&'static DotKernels> {
    let mut tables: Vec<&'static [DotKernels]> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        // Quantized types: the AVX-VNNI and AVX-512 VNNI tables run the same canonical
        // 256-bit code (canon256.rs; a 32-element block is exactly one ymm register), VEX or
        // EVEX encoded, at the same speed on Sapphire Rapids; AVX-VNNI stays first.
        for_each_preference(weight, |isa| {
            if allow(isa) && isa.runnable() {
                tables.push(match isa {
                    Isa::AvxVnni => avx2::VNNI_KERNELS,
                    Isa::Avx512 => avx512::KERNELS,
                    _ => avx2::KERNELS,
                });
            }
        });
    }
    #[cfg(target_arch = "aarch64")]
    if allow(Isa::Neon) && Isa::Neon.runnable() {
        tables.push(neon::KERNELS);
    }
    tables
        .iter()
        .flat_map(|t| t.iter())
        .filter(|k| k.weight == weight)
        .chain(scalar_kernels_for(weight))
        .collect()
}

/// The CPU instruction-set tables of the kernels (dot products, activation quantizers,
/// attention). Every table returns the same bits for the quantized types; they differ only
/// in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The reference kernels, on every CPU.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-VNNI (256-bit `vpdpbusd`, VEX): the quantized types; floats from AVX2.
    AvxVnni,
    /// AVX-512 F/BW/VL/VNNI.
    Avx512,
    /// AArch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Every table, in the spelling of `ROCMFORGE_CPU_ISA`.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU has every feature the table needs.
    pub fn runnable(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::detected(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => is_x86_feature_detected!("avxvnni") && avx2::detected(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::detected(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)] // the arms above depend on the target
            _ => false,
        }
    }
}

/// Which ISA tables the engine may use: all that run here (the default), or the one named by
/// the environment variable `ROCMFORGE_CPU_ISA` (`scalar`, `avx2`, `avxvnni`, `avx512`,
/// `neon`; `auto` = the default), so one machine can measure each table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaChoice {
    Auto,
    Forced(Isa),
}

impl IsaChoice {
    /// Parses a `ROCMFORGE_CPU_ISA` value; an ISA this CPU cannot run is an error that names
    /// the runnable ones.
    pub fn parse(value: &str) -> std::result::Result<IsaChoice, String> {
        let value = value.trim().to_ascii_lowercase();
        if value.is_empty() || value == "auto" {
            return Ok(IsaChoice::Auto);
        }
        let runnable: Vec<&str> = Isa::ALL
            .iter()
            .filter(|i| i.runnable())
            .map(|i| i.name())
            .collect();
        match Isa::ALL.iter().find(|i| i.name() == value) {
            Some(&isa) if isa.runnable() => Ok(IsaChoice::Forced(isa)),
            found => Err(format!(
                "ROCMFORGE_CPU_ISA={value}: {}; this CPU runs: auto, {}",
                if found.is_some() {
                    "this CPU lacks its features"
                } else {
                    "unknown table"
                },
                runnable.join(", ")
            )),
        }
    }

    /// The choice of this process: `ROCMFORGE_CPU_ISA`, read once. An invalid value is kept as
    /// an error (CPU contexts refuse to start with it, see [`check_isa_choice`]); the kernels
    /// then fall back to `Auto`.
    pub fn current() -> &'static std::result::Result<IsaChoice, String> {
        static CHOICE: OnceLock<std::result::Result<IsaChoice, String>> = OnceLock::new();
        CHOICE.get_or_init(|| match std::env::var("ROCMFORGE_CPU_ISA") {
            Ok(v) => IsaChoice::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(IsaChoice::Auto),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err("ROCMFORGE_CPU_ISA is not valid UTF-8".to_string())
            }
        })
    }

    /// Whether kernels of table `isa` may run under this choice (the scalar reference always
    /// may: it backs types a table lacks). A forced AVX-VNNI also allows AVX2, which holds
    /// the float kernels VNNI has no use for.
    pub fn allows(self, isa: Isa) -> bool {
        match self {
            IsaChoice::Auto => true,
            IsaChoice::Forced(f) => {
                isa == f || isa == Isa::Scalar || (f == Isa::AvxVnni && isa == Isa::Avx2)
            }
        }
    }

    /// `isa` is allowed and this CPU runs it.
    pub fn enables(self, isa: Isa) -> bool {
        self.allows(isa) && isa.runnable()
    }
}

/// The ISA choice in effect (`Auto` when `ROCMFORGE_CPU_ISA` is invalid).
pub fn isa_choice() -> IsaChoice {
    *IsaChoice::current().as_ref().unwrap_or(&IsaChoice::Auto)
}

/// Refuses an invalid `ROCMFORGE_CPU_ISA` with its message (for the CPU backend's start).
pub fn check_isa_choice() -> crate::Result<()> {
    IsaChoice::current()
        .as_ref()
        .map(|_| ())
        .map_err(|e| crate::Error::InvalidArgument(e.clone()))
}

/// ISA preference per weight type, from benches/quant_dot.rs on Sapphire Rapids and Zen 5.
#[cfg(target_arch = "x86_64")]
fn for_each_preference(weight: GgmlType, mut f: impl FnMut(Isa)) {
    let order: &[Isa] = match weight {
        GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => &[Isa::Avx512, Isa::AvxVnni, Isa::Avx2],
        // Q4_K's and Q6_K's AVX-512 kernels work in zmm (the others' are the 256-bit code
        // EVEX-encoded): 1.4x and 1.5-1.9x the AVX-VNNI ones' speed on Zen 5 (decode tiles of
        // 4096, hot).
        // Q5_0's and Q5_1's unpack their fifth bits with one masked add there (1.2x).
        GgmlType::Q4K | GgmlType::Q6K | GgmlType::Q5_0 | GgmlType::Q5_1 => {
            &[Isa::Avx512, Isa::AvxVnni, Isa::Avx2]
        }
        _ => &[Isa::AvxVnni, Isa::Avx512, Isa::Avx2],
    };
    order.iter().for_each(|&i| f(i));
}

/// The fastest kernels for `weight` on this CPU that the ISA choice allows; `None` for weight
/// types without kernels.
pub fn kernels_for(weight: GgmlType) -> Option<&'static DotKernels> {
    static BEST: OnceLock<Vec<&'static DotKernels>> = OnceLock::new();
    let best = BEST.get_or_init(|| {
        let choice = isa_choice();
        FORMATS
            .iter()
            .filter_map(|f| kernels_on(f.ty, |isa| choice.allows(isa)).first().copied())
            .collect()
    });
    best.iter().find(|k| k.weight == weight).copied()
}

/// The scalar kernels for `weight`, from its registry row (the canonical order for the
/// quantized types, the f64 reference for the float types).
pub fn scalar_kernels_for(weight: GgmlType) -> Option<&'static DotKernels> {
    weight.format()?.cpu_dot
}

/// How far ahead of a decode tile (4 consecutive rows of one matrix, `stride` bytes apart)
/// the row kernels prefetch: the same block, about this many bytes of rows on, in whole
/// tiles. Rows are read side by side, which the hardware prefetchers follow poorly, and the
/// distance must cover the memory latency at full bandwidth. One tile ahead (2.4 KiB for
/// SmolLM2's Q8_0 rows of 576) was too short on Zen 5 (one core streams 40 GB/s): Q8_0 rows
/// of 576 swept 25.7 GB/s one tile ahead, 35.7 at 8 KiB, 42.5 at 16 KiB (benches/quant_dot.rs,
/// `stream`), and one-thread decode of SmolLM2 went from 143-164 to 181-229 tok/s (Q8_0) and
/// 142-163 to 185-219 (Q4_1), 8, 16 and 32 KiB alike within the machine's noise.
///
/// The kernels prefetch into L2 (`prefetcht1`), not L1: on Zen 4 (32 KiB of L1 data cache
/// against Zen 5's and Sapphire Rapids' 48) prefetching into L1 left the 4-row tiles at half
/// the bandwidth of one sequential row. Zen 4 VM, tiles streamed from a 64 MiB matrix, ns per
/// row, L1 / L2: Q8_0 rows of 576 67 / 29, of 1536 142 / 67; Q4_1 of 1536 94 / 61; Q4_K of
/// 1536 81 / 46; and 4 or 8 KiB ahead into L1 did no better. One-thread decode of SmolLM2
/// went from 57 to 126-136 tok/s (Q8_0) and 84-92 to 136-157 (Q4_1). A row prefetched into L2
/// comes into L1 through the demand loads and the L1 prefetchers at a few cycles' cost.
pub(crate) const PREFETCH_AHEAD_BYTES: isize = 16 << 10;

/// The byte offset from a decode tile's rows to the rows the kernels prefetch (see
/// [`PREFETCH_AHEAD_BYTES`]): at least the next tile.
#[inline(always)]
#[allow(dead_code)] // unused on targets without SIMD kernels
pub(crate) fn prefetch_offset(stride: isize) -> isize {
    let stride = stride.max(1);
    let tiles = (PREFETCH_AHEAD_BYTES / (4 * stride)).max(1);
    4 * tiles * stride
}

/// Panics unless `w` and `a` hold `n` elements of their types (the kernels' one check).
#[inline(always)]
#[allow(dead_code)] // unused on targets without SIMD kernels
pub(crate) fn check_lengths(n: usize, w: &[u8], a: &[u8], blk: usize, wb: usize, ab: usize) {
    assert!(
        n.is_multiple_of(blk) && w.len() >= n / blk * wb && a.len() >= n / blk * ab,
        "dot kernel: bad row lengths (n={n}, w={}, a={})",
        w.len(),
        a.len()
    );
}

#[cfg(test)]
mod tests;
