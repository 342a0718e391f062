//! Blocks as GGUF stores them, and the row loops every format's codec shares.
//!
//! A tensor row is blocks back to back with no padding (18 to 36 bytes for the 32-element
//! formats, 144 to 292 for the 256-element K-quants; one value for the float types), so a
//! block in a memory-mapped file is generally unaligned. Each format's block struct (in its
//! file under `formats/`) is `#[repr(C)]` without padding, its size asserted against the type
//! table at compile time; blocks are read with [`read_block`] (an unaligned copy), never by
//! reference into the byte slice.

use super::GgmlType;

/// Elements per block of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1).
pub const QK: usize = 32;

/// Elements per super-block of the K-quants (Q2_K ... Q6_K and their activation format Q8_K).
pub const QK_K: usize = 256;

/// A block type that may be read from any byte position.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or a primitive), `Copy`, without padding, and valid for
/// every bit pattern (true of `f32`, `f16`, `bf16`, `u8`, `i8` fields); `BYTES` must be their
/// size (the default).
pub unsafe trait Block: Copy {
    /// The tensor type whose blocks these are.
    const TYPE: GgmlType;
    const BYTES: usize = std::mem::size_of::<Self>();
    /// Elements per block, from the type table.
    const ELEMS: usize = Self::TYPE.block_elems();
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

/// Decodes the blocks of `src` into `dst`, `N` (= `B::ELEMS`) values each. Stops at the end
/// of the shorter of the two: callers check the lengths first (see
/// [`super::dequantize_row`]).
#[inline]
pub(crate) fn decode_blocks<B: Block, const N: usize>(
    src: &[u8],
    dst: &mut [f32],
    decode: impl Fn(&B, &mut [f32; N]),
) {
    debug_assert_eq!(N, B::ELEMS);
    for (i, out) in dst.chunks_exact_mut(N).enumerate() {
        let (Some(b), Ok(out)) = (read_block::<B>(src, i), <&mut [f32; N]>::try_from(out)) else {
            return;
        };
        decode(&b, out);
    }
}

/// Encodes `x`, `N` (= `B::ELEMS`) values at a time, into consecutive blocks of `out`. Stops
/// at the end of the shorter of the two: callers check the lengths first. Always inlined, so
/// a caller compiled for a wider ISA compiles `encode` for it too (see q8_k.rs).
#[inline(always)]
pub(crate) fn encode_blocks<B: Block, const N: usize>(
    x: &[f32],
    out: &mut [u8],
    encode: impl Fn(&[f32; N]) -> B,
) {
    debug_assert_eq!(N, B::ELEMS);
    for (i, xb) in x.chunks_exact(N).enumerate() {
        let Ok(xb) = <&[f32; N]>::try_from(xb) else {
            return;
        };
        if !write_block(out, i, &encode(xb)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::formats::q4_1::BlockQ4_1;

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
