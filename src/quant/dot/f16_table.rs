//! f16 -> f32 by table lookup, for block scales in the hot loops.
//!
//! Converting a scale with F16C costs a `vcvtph2ps` (two uops, one on the shuffle port) plus
//! a broadcast; reading it from a table costs one load, which can also be a broadcast load
//! straight into a vector register. Scales of one tensor span a few binades, so the entries
//! actually touched stay in L1/L2. The table is 256 KiB, built once on first use.

use half::f16;
use std::sync::OnceLock;

/// `TABLE[bits] == f16::from_bits(bits).to_f32()` for every bit pattern.
pub(crate) fn f16_table() -> &'static [f32; 65536] {
    static TABLE: OnceLock<Box<[f32; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0f32; 65536]);
        for (bits, v) in t.iter_mut().enumerate() {
            *v = f16::from_bits(bits as u16).to_f32();
        }
        t
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_matches_half_for_every_pattern() {
        let t = super::f16_table();
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            assert!(
                t[bits as usize].to_bits() == want.to_bits()
                    || want.is_nan() && t[bits as usize].is_nan()
            );
        }
    }
}
