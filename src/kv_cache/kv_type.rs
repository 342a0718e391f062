//! The element type of the cached keys and values, chosen when a context is created.

use crate::quant::formats::q8_0;
use crate::quant::GgmlType;
use crate::{Error, Result};
use half::f16;

/// How keys and values are stored. Values are rounded to this type when written and widened
/// to f32 when attention reads them, the same way on every backend (so the GPU's decode still
/// reproduces the CPU's bits). The ids are ggml's type ids, as `-ctk` / `-ctv` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// 4 bytes an element: exactly what the projections computed.
    F32,
    /// 2 bytes an element, round-to-nearest-even (llama.cpp's default cache type).
    #[default]
    F16,
    /// Each row of kv_dim elements as kv_dim / 32 blocks of (f16 scale d, 32 x i8): 34 bytes
    /// per 32 elements, quantized as llama.cpp's CPU writes its q8_0 cache (see
    /// [`KvType::encode_row`]); a value reads back as `f32(d) * q`, which f32 holds exactly.
    /// Only for heads whose size is a multiple of 32 ([`KvType::check_head_dim`]).
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    /// The tensor type whose layout a cached row has.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvType::F32 => GgmlType::F32,
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// Bytes of one stored row of `n` elements (a token's keys, or values, in one layer), or
    /// `None` when `n` is not a whole number of the type's blocks (or overflows).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let b = self.ggml_type().row_bytes(n as u64)?;
        usize::try_from(b).ok()
    }

    /// The stable id (ggml's type id) used by the C API and the state format.
    pub fn id(self) -> u32 {
        self.ggml_type().id()
    }

    pub fn from_id(id: u32) -> Option<KvType> {
        KvType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The name llama.cpp's `--cache-type-k` uses ("f32", "f16", "q8_0").
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Whether a model whose heads have `head_dim` elements can cache them in this type: a
    /// block type's blocks must not straddle two heads, since attention widens one head's row
    /// at a time (llama.cpp has the same rule for its quantized caches).
    pub fn check_head_dim(self, head_dim: usize) -> Result<()> {
        let block = self.ggml_type().block_elems();
        if head_dim == 0 || !head_dim.is_multiple_of(block) {
            return Err(Error::Unsupported(format!(
                "a {self} KV cache needs a head size that is a multiple of {block}; this \
                 model's heads have {head_dim} elements (use f16 or f32)"
            )));
        }
        Ok(())
    }

    /// Rounds `values` into this type's bytes (little-endian, as a cache row holds them):
    /// f16 by round-to-nearest-even; q8_0 per block of 32 as llama.cpp's CPU writes its q8_0
    /// cache (ggml-cpu's `quantize_row_q8_0`: `d = amax / 127` stored as f16, `q =
    /// round_half_even(x * (127 / amax))`), through the fastest quantizer of this CPU, all of
    /// them bit-identical to [`q8_0::quantize_activations`]. Quantizing the widened values of
    /// a q8_0 row again gives back the same values (the block's largest |q| is 127, so the new
    /// `d` is the stored one; see the tests), which is why a copy or a state round trip through
    /// f32 is exact. `out.len()` must be `self.row_bytes(values.len())`.
    pub fn encode_row(self, values: &[f32], out: &mut [u8]) {
        debug_assert_eq!(Some(out.len()), self.row_bytes(values.len()));
        match self {
            KvType::F32 => (out.chunks_exact_mut(4).zip(values))
                .for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
            KvType::F16 => (out.chunks_exact_mut(2).zip(values))
                .for_each(|(o, &x)| o.copy_from_slice(&f16::from_f32(x).to_le_bytes())),
            KvType::Q8_0 => {
                let blocks = (values.len() / 32).min(out.len() / 34);
                crate::quant::activation::q8_0_quantizer()(
                    &values[..blocks * 32],
                    &mut out[..blocks * 34],
                );
            }
        }
    }

    /// Widens a row of this type's bytes into `out` (exactly: every value of the type is an
    /// f32). `bytes.len()` must be `self.row_bytes(out.len())`.
    pub fn decode_row(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(Some(bytes.len()), self.row_bytes(out.len()));
        match self {
            KvType::F32 => (out.iter_mut().zip(bytes.chunks_exact(4)))
                .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            KvType::F16 => (out.iter_mut().zip(bytes.chunks_exact(2)))
                .for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32()),
            KvType::Q8_0 => q8_0::dequantize(bytes, out),
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = Error;

    fn from_str(s: &str) -> Result<KvType> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown KV cache type {s:?} (expected one of: f32, f16, q8_0)"
                ))
            })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip_and_unknown_ones_are_refused() {
        for t in KvType::ALL {
            assert_eq!(t.name().parse::<KvType>().unwrap(), t);
            assert_eq!(KvType::from_id(t.id()), Some(t));
        }
        assert_eq!(KvType::default(), KvType::F16);
        assert_eq!(KvType::Q8_0.id(), 8, "ggml's id, as -ctk q8_0");
        assert_eq!(KvType::from_id(7), None);
        let e = "q4_0".parse::<KvType>().unwrap_err().to_string();
        assert!(
            e.contains("q4_0") && e.contains("f16") && e.contains("q8_0"),
            "{e}"
        );
    }

    #[test]
    fn row_sizes_count_34_bytes_per_32_elements_and_head_sizes_are_checked() {
        assert_eq!(KvType::F32.row_bytes(192), Some(768));
        assert_eq!(KvType::F16.row_bytes(192), Some(384));
        assert_eq!(KvType::Q8_0.row_bytes(192), Some(6 * 34));
        assert_eq!(KvType::Q8_0.row_bytes(40), None);
        for head_dim in [32, 64, 128, 256] {
            KvType::Q8_0.check_head_dim(head_dim).unwrap();
        }
        let e = KvType::Q8_0.check_head_dim(80).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(
            e.to_string().contains("80") && e.to_string().contains("q8_0"),
            "{e}"
        );
        KvType::F16.check_head_dim(80).unwrap();
    }

    /// Pseudo-random floats in (-scale, scale) (the kv_cache tests' data).
    pub(in crate::kv_cache) fn floats(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
            })
            .collect()
    }

    /// The q8_0 rows follow ggml-cpu's x86 quantizer (the one llama.cpp's CPU writes its cache
    /// with), written out here from its definition: `id = 127 / amax`, ties to even. The weight
    /// quantizer's rule (`1 / d`, ties away from zero) differs on some elements of these rows,
    /// so a cache written with it fails here.
    #[test]
    fn q8_0_rows_follow_llama_cpp_s_cpu_quantizer_and_read_back_as_d_times_q() {
        let mut differs_from_weight_rule = false;
        for (seed, scale) in [(1, 1.0), (2, 30.0), (3, 1e-4), (4, 1e-9)] {
            let mut x = floats(seed, 256, scale);
            x[40..72].fill(0.0); // an all-zero block (and a block straddling it)
                                 // A block of amax 127 (d = 1): 2.5, -0.5 and 1.5 are exact ties, which llama.cpp's
                                 // CPU rounds to even (2, 0, 2) and the weight rule away from zero (3, -1, 2).
            x[224..].fill(0.0);
            x[224..228].copy_from_slice(&[127.0, 2.5, -0.5, 1.5]);
            let mut got = vec![0u8; 8 * 34];
            KvType::Q8_0.encode_row(&x, &mut got);
            let mut want = Vec::new();
            for b in x.chunks_exact(32) {
                let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                want.extend(f16::from_f32(amax / 127.0).to_le_bytes());
                want.extend(b.iter().map(|v| (v * id).round_ties_even() as i8 as u8));
            }
            assert_eq!(got, want, "scale {scale}");
            let mut weight_rule = vec![0u8; got.len()];
            q8_0::quantize(&x, &mut weight_rule);
            differs_from_weight_rule |= weight_rule != got;
            let mut back = vec![0f32; 256];
            KvType::Q8_0.decode_row(&got, &mut back);
            for (k, &v) in back.iter().enumerate() {
                let blk = &got[k / 32 * 34..][..34];
                let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                assert_eq!(v, d * blk[2 + k % 32] as i8 as f32);
            }
            assert_eq!(&got[7 * 34 + 2..][..4], &[127, 2, 0, 2]);
        }
        assert!(
            differs_from_weight_rule,
            "the ties tell the two rules apart"
        );
    }

    /// A copy or a state save goes through f32: quantizing a widened q8_0 row again must give
    /// back its values (and bytes, unless the scale underflowed to 0 and all values are 0).
    #[test]
    fn requantizing_a_widened_q8_0_row_gives_back_its_values() {
        for (seed, scale) in [
            (5, 1.0),
            (6, 1e3),
            (7, 3e-6),
            (8, 1e-8),
            (9, 1e-12),
            (10, 6e6),
        ] {
            let x = floats(seed, 512, scale);
            let mut bytes = vec![0u8; 16 * 34];
            KvType::Q8_0.encode_row(&x, &mut bytes);
            let mut widened = vec![0f32; 512];
            KvType::Q8_0.decode_row(&bytes, &mut widened);
            let mut again = vec![0u8; bytes.len()];
            KvType::Q8_0.encode_row(&widened, &mut again);
            let mut rewidened = vec![0f32; 512];
            KvType::Q8_0.decode_row(&again, &mut rewidened);
            assert_eq!(rewidened, widened, "scale {scale}");
            for (a, b) in bytes.chunks_exact(34).zip(again.chunks_exact(34)) {
                if a[..2] != [0, 0] {
                    assert_eq!(a, b, "scale {scale}");
                }
            }
        }
        for t in [KvType::F32, KvType::F16] {
            let x = floats(11, 64, 2.0);
            let mut bytes = vec![0u8; t.row_bytes(64).unwrap()];
            t.encode_row(&x, &mut bytes);
            let mut back = vec![0f32; 64];
            t.decode_row(&bytes, &mut back);
            let mut again = vec![0u8; bytes.len()];
            t.encode_row(&back, &mut again);
            assert_eq!(again, bytes, "{t}");
        }
    }
}
