//! The arithmetic of the AMD-only instructions our kernels use, checked on the CPU, since no
//! machine of ours has the GPUs that run them (issue: the wave-64 and AMD-only paths).
//!
//! `rf_dp4a` (kernels/arch.h) is the one such instruction today: the 4-way int8 dot product
//! with accumulate of the quantized mat-vec. Each AMD target gets its own instruction, which
//! scripts/gpu/check-amd-paths.sh finds in the code objects: `v_dot4c_i32_i8` on gfx90a, gfx942
//! and gfx1030 (`__builtin_amdgcn_sdot4`, clamp off), `v_dot4_i32_iu8` with both operands
//! marked signed on gfx1100 (`__builtin_amdgcn_sudot4`); NVIDIA runs `__dp4a`. Below, each
//! instruction as the ISA manuals define it, and the group sums of kernels/matvec.hip built from
//! it word by word as the kernel does, against the definition the CPU computes (the exact
//! integer sum Σ q·x of a block). Integer sums have no order: equal here means the GPU's group
//! sums are the CPU's, which is what keeps decode bit-identical on those targets.

/// The four bytes of a 32-bit register as the ISA numbers them (byte 0 lowest).
fn bytes(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// V_DOT4_I32_I8 / V_DOT4C_I32_I8 (CDNA2/3 and RDNA2 ISA): D = S2 + Σ_k sext(S0.b[k]) ·
/// sext(S1.b[k]); with the clamp bit off the 32-bit addition wraps.
fn v_dot4_i32_i8(a: u32, b: u32, c: i32) -> i32 {
    let (a, b) = (bytes(a), bytes(b));
    (0..4).fold(c, |acc, k| {
        acc.wrapping_add(i32::from(a[k] as i8) * i32::from(b[k] as i8))
    })
}

/// V_DOT4_I32_IU8 (RDNA3 ISA): each source's bytes are signed when its NEG modifier bit is set
/// (the builtin's bool operands), unsigned otherwise; clamp off wraps.
fn v_dot4_i32_iu8(a_signed: bool, a: u32, b_signed: bool, b: u32, c: i32) -> i32 {
    let ext = |v: u8, signed: bool| {
        if signed {
            i32::from(v as i8)
        } else {
            i32::from(v)
        }
    };
    let (a, b) = (bytes(a), bytes(b));
    (0..4).fold(c, |acc, k| {
        acc.wrapping_add(ext(a[k], a_signed) * ext(b[k], b_signed))
    })
}

/// The instruction each target's rf_dp4a compiles to.
#[derive(Clone, Copy, Debug)]
enum Dot4 {
    Cdna2Rdna2,
    Rdna3,
}

impl Dot4 {
    fn run(self, a: u32, b: u32, c: i32) -> i32 {
        match self {
            Dot4::Cdna2Rdna2 => v_dot4_i32_i8(a, b, c),
            Dot4::Rdna3 => v_dot4_i32_iu8(true, a, true, b, c),
        }
    }
}

const TARGETS: [Dot4; 2] = [Dot4::Cdna2Rdna2, Dot4::Rdna3];

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Activation bytes of one group: random, or every byte at an extreme.
fn activations(rng: &mut Rng, case: usize) -> [i8; 32] {
    std::array::from_fn(|_| match case {
        0 => -128,
        1 => 127,
        _ => rng.byte() as i8,
    })
}

#[test]
fn the_dot_instructions_are_the_signed_byte_dot_product() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let extremes = [0u32, 0x8080_8080, 0x7f7f_7f7f, 0xffff_ffff, 0x0180_7f81];
    for t in TARGETS {
        for i in 0..20_000 {
            let (a, b) = if i < 25 {
                (extremes[i % 5], extremes[i / 5])
            } else {
                (rng.next() as u32, rng.next() as u32)
            };
            let c = rng.next() as i32 >> 8; // far from overflow
            let (ab, bb) = (bytes(a), bytes(b));
            let plain: i32 = c
                + (0..4)
                    .map(|k| i32::from(ab[k] as i8) * i32::from(bb[k] as i8))
                    .sum::<i32>();
            assert_eq!(t.run(a, b, c), plain, "{t:?} a={a:#x} b={b:#x} c={c}");
        }
        // Clamp off: the accumulate wraps as C's (two's complement) addition does.
        assert_eq!(t.run(0x8080_8080, 0x8080_8080, i32::MAX), i32::MIN + 65535);
    }
    // The iu8 form with unsigned operands is a different product: the signed flags matter.
    assert_ne!(
        v_dot4_i32_iu8(false, 0xff, false, 0xff, 0),
        v_dot4_i32_iu8(true, 0xff, true, 0xff, 0)
    );
}

/// Q4_0's group sum as matvec.hip's `QGroup<RF_Q4_0>::acc` builds it: the 16 quant bytes as
/// four words, low nibbles (elements 0..16) against activation words 0..4 and high nibbles
/// (elements 16..32) against words 4..8, then − 8 Σx.
fn q4_0_group_on_gpu(t: Dot4, qs: &[u8; 16], x: &[i8; 32]) -> i32 {
    let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
    let xw: Vec<u32> = xb.chunks(4).map(word).collect();
    let sum_x: i32 = x.iter().map(|&v| i32::from(v)).sum();
    let mut s = 0;
    for i in 0..4 {
        let v = word(&qs[4 * i..]);
        s = t.run(v & 0x0F0F_0F0F, xw[i], s);
        s = t.run((v >> 4) & 0x0F0F_0F0F, xw[4 + i], s);
    }
    s - 8 * sum_x
}

/// Q8_0's group sum as `QGroup<RF_Q8_0>::acc`: eight words against eight words.
fn q8_0_group_on_gpu(t: Dot4, q: &[i8; 32], x: &[i8; 32]) -> i32 {
    let qb: Vec<u8> = q.iter().map(|&v| v as u8).collect();
    let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
    (0..8).fold(0, |s, i| t.run(word(&qb[4 * i..]), word(&xb[4 * i..]), s))
}

#[test]
fn matvec_group_sums_are_the_cpus_exact_integer_sums() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for t in TARGETS {
        for case in 0..3000 {
            let x = activations(&mut rng, case);
            // Q4_0 (GGUF layout): element j is the low nibble of byte j, element j + 16 its
            // high nibble; the value is nibble − 8.
            let qs: [u8; 16] = std::array::from_fn(|_| match case % 7 {
                0 => 0x00,
                1 => 0xff,
                _ => rng.byte(),
            });
            let q4 = |j: usize| {
                let b = qs[j % 16];
                i32::from(if j < 16 { b & 0x0f } else { b >> 4 }) - 8
            };
            let exact: i32 = (0..32).map(|j| q4(j) * i32::from(x[j])).sum();
            assert_eq!(
                q4_0_group_on_gpu(t, &qs, &x),
                exact,
                "{t:?} Q4_0 case {case}"
            );

            let q8 = activations(&mut rng, (case + 1) % 5);
            let exact: i32 = (0..32).map(|j| i32::from(q8[j]) * i32::from(x[j])).sum();
            assert_eq!(
                q8_0_group_on_gpu(t, &q8, &x),
                exact,
                "{t:?} Q8_0 case {case}"
            );
        }
    }
}
