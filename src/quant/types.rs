//! The GGML tensor type table: ids as stored in GGUF, block geometry, names.
//!
//! This is the one place that maps GGUF type ids to layouts. The GGUF reader uses it to size
//! tensors (every known type, so a file with a K-quant parses and is rejected later with a clear
//! "unsupported tensor type" error). What the engine can do with a type (decode it, dot it on
//! the CPU, multiply by it on the GPU) is its row of the format registry
//! ([`crate::quant::registry`]), reached through [`GgmlType::format`].

use super::registry::{self, Format};

/// A GGML tensor element type, numbered as in GGUF files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    Iq2Xxs = 16,
    Iq2Xs = 17,
    Iq3Xxs = 18,
    Iq1S = 19,
    Iq4Nl = 20,
    Iq3S = 21,
    Iq2S = 22,
    Iq4Xs = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    Iq1M = 29,
    Bf16 = 30,
    Tq1_0 = 34,
    Tq2_0 = 35,
    Mxfp4 = 39,
}

/// (type, name, elements per block, bytes per block)
const TABLE: &[(GgmlType, &str, usize, usize)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2K, "Q2_K", 256, 84),
    (GgmlType::Q3K, "Q3_K", 256, 110),
    (GgmlType::Q4K, "Q4_K", 256, 144),
    (GgmlType::Q5K, "Q5_K", 256, 176),
    (GgmlType::Q6K, "Q6_K", 256, 210),
    (GgmlType::Q8K, "Q8_K", 256, 292),
    (GgmlType::Iq2Xxs, "IQ2_XXS", 256, 66),
    (GgmlType::Iq2Xs, "IQ2_XS", 256, 74),
    (GgmlType::Iq3Xxs, "IQ3_XXS", 256, 98),
    (GgmlType::Iq1S, "IQ1_S", 256, 50),
    (GgmlType::Iq4Nl, "IQ4_NL", 32, 18),
    (GgmlType::Iq3S, "IQ3_S", 256, 110),
    (GgmlType::Iq2S, "IQ2_S", 256, 82),
    (GgmlType::Iq4Xs, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::Iq1M, "IQ1_M", 256, 56),
    (GgmlType::Bf16, "BF16", 1, 2),
    (GgmlType::Tq1_0, "TQ1_0", 256, 54),
    (GgmlType::Tq2_0, "TQ2_0", 256, 66),
    (GgmlType::Mxfp4, "MXFP4", 32, 17),
];

impl GgmlType {
    /// Looks up a GGUF type id; `None` for ids no GGML version has defined.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|e| e.0 as u32 == id).map(|e| e.0)
    }

    /// `const` so that block structs can assert their size against the table at compile time.
    const fn entry(self) -> &'static (GgmlType, &'static str, usize, usize) {
        let mut i = 0;
        while i < TABLE.len() {
            if TABLE[i].0 as u32 == self as u32 {
                return &TABLE[i];
            }
            i += 1;
        }
        panic!("every GgmlType variant has a table row")
    }

    pub const fn id(self) -> u32 {
        self as u32
    }

    pub const fn name(self) -> &'static str {
        self.entry().1
    }

    /// Elements per block (1 for plain types).
    pub const fn block_elems(self) -> usize {
        self.entry().2
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        self.entry().3
    }

    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks or
    /// the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(self.block_bytes() as u64)
    }

    /// This type's row of the format registry; `None` for types the engine cannot decode.
    pub fn format(self) -> Option<&'static Format> {
        registry::format(self)
    }

    /// Whether the CPU backend can multiply by a weight of this type (it has dot kernels):
    /// the load-time check of every matrix.
    pub fn is_computable(self) -> bool {
        self.format().is_some_and(|f| f.cpu_dot.is_some())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for e in TABLE {
            assert_eq!(GgmlType::from_id(e.0.id()), Some(e.0));
        }
        assert_eq!(GgmlType::from_id(4), None); // removed Q4_2
        assert_eq!(GgmlType::from_id(1000), None);
    }

    #[test]
    fn row_bytes_checks_block_multiples() {
        assert_eq!(GgmlType::Q4_1.row_bytes(64), Some(40));
        assert_eq!(GgmlType::Q8_0.row_bytes(33), None);
        assert_eq!(GgmlType::F16.row_bytes(3), Some(6));
    }
}
