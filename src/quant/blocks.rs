//! Binary layouts of the 32-element quantization blocks, exactly as GGUF stores them.
//!
//! Blocks sit back to back in a row with no padding (18, 20, 34 or 36 bytes each), so a block
//! in a memory-mapped file is generally unaligned. The structs are `#[repr(C)]` with only
//! alignment-2 fields and no padding; they are read with [`read_block`], never by reference
//! into the byte slice.

use half::f16;
use std::mem::size_of;

/// Elements per block of every type in this file.
pub const QK: usize = 32;

/// 4-bit symmetric: value = (q - 8) * d. Element j < 16 is the low nibble of `qs[j]`,
/// element j + 16 its high nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// 4-bit with offset: value = q * d + m. Nibble order as [`BlockQ4_0`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// 8-bit symmetric: value = q * d.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// 8-bit symmetric with the block sum: value = q * d, and `s` = d * sum(qs) (used by the
/// Q4_1 dot product to fold in the weight offset `m`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// A block type that may be read from any byte position.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, `Copy`, without padding, and valid for every bit
/// pattern (true of `f16`, `u8`, `i8` fields).
pub unsafe trait Block: Copy {
    const BYTES: usize;
}

// SAFETY: all four are repr(C) structs of f16/u8/i8 fields with no padding (sizes asserted
// above equal the sums of their fields), and every bit pattern is a valid value.
unsafe impl Block for BlockQ4_0 {
    const BYTES: usize = 18;
}
// SAFETY: see above.
unsafe impl Block for BlockQ4_1 {
    const BYTES: usize = 20;
}
// SAFETY: see above.
unsafe impl Block for BlockQ8_0 {
    const BYTES: usize = 34;
}
// SAFETY: see above.
unsafe impl Block for BlockQ8_1 {
    const BYTES: usize = 36;
}

/// Reads block `i` of a packed row; `None` if the row is too short.
#[inline]
pub fn read_block<B: Block>(row: &[u8], i: usize) -> Option<B> {
    let start = i.checked_mul(B::BYTES)?;
    let bytes = row.get(start..start.checked_add(B::BYTES)?)?;
    // SAFETY: `bytes` holds exactly size_of::<B>() == B::BYTES readable bytes; B is valid for
    // any bit pattern (trait contract) and read_unaligned has no alignment requirement.
    Some(unsafe { bytes.as_ptr().cast::<B>().read_unaligned() })
}

/// Writes block `i` of a packed row; `false` (nothing written) if the row is too short.
#[inline]
pub fn write_block<B: Block>(row: &mut [u8], i: usize, block: &B) -> bool {
    let Some(start) = i.checked_mul(B::BYTES) else {
        return false;
    };
    let Some(end) = start.checked_add(B::BYTES) else {
        return false;
    };
    let Some(bytes) = row.get_mut(start..end) else {
        return false;
    };
    // SAFETY: `bytes` is exactly B::BYTES writable bytes; B has no padding, so every byte
    // written is initialized; write_unaligned has no alignment requirement.
    unsafe { bytes.as_mut_ptr().cast::<B>().write_unaligned(*block) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn block_sizes_match_the_type_table() {
        assert_eq!(GgmlType::Q4_0.block_bytes(), BlockQ4_0::BYTES);
        assert_eq!(GgmlType::Q4_1.block_bytes(), BlockQ4_1::BYTES);
        assert_eq!(GgmlType::Q8_0.block_bytes(), BlockQ8_0::BYTES);
        assert_eq!(GgmlType::Q8_1.block_bytes(), BlockQ8_1::BYTES);
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q8_1,
        ] {
            assert_eq!(t.block_elems(), QK);
        }
    }

    #[test]
    fn blocks_read_from_odd_offsets_in_file_byte_order() {
        // One leading byte makes every block unaligned.
        let mut bytes = vec![0xAAu8];
        bytes.extend_from_slice(&[0x00, 0x3C, 0x00, 0xC0]); // d = 1.0, m = -2.0 (LE f16)
        bytes.extend((0u8..16).map(|j| j | 0xF0));
        let b: BlockQ4_1 = read_block(&bytes[1..], 0).unwrap();
        assert_eq!(b.d.to_f32(), 1.0);
        assert_eq!(b.m.to_f32(), -2.0);
        assert_eq!(b.qs[5], 0xF5);
        assert!(read_block::<BlockQ4_1>(&bytes[2..], 0).is_none());

        let mut out = [0u8; 41];
        assert!(write_block(&mut out[1..], 1, &b));
        assert_eq!(&out[21..], &bytes[1..]);
        assert!(!write_block(&mut out[2..], 1, &b));
    }
}
