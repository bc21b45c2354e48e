//! The inner dot products of the ternary, int8 and int4 matmuls: one or two weight rows
//! against `N` tokens at once, so each weight load serves every token of a tile.

use super::lanes::{hsum_i32, load_at, loop_constants};
#[cfg(target_feature = "relaxed-simd")]
use super::DotSums;
use crate::formats::dense::{i4_value, I4_BLOCK};
use crate::formats::i2s;
use core::arch::wasm32::*;

/// Σ code·q for one or two rows (`row1` empty for one) and `N` tokens over I2_S-layout
/// codes (relaxed build): `[row][token]`, summed as `sums` says (the same numbers).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub(super) fn code_dot_tile<const N: usize>(
    sums: DotSums,
    row0: &[u8],
    row1: &[u8],
    q: [&[i8]; N],
) -> [[i32; N]; 2] {
    match sums {
        DotSums::Lanes16 => code_dot_tile_16(row0, row1, q),
        DotSums::Lanes32 => code_dot_tile_32(row0, row1, q),
    }
}

/// [`code_dot_tile`] summing in 16-bit lanes.
///
/// Byte `j` of a 32-byte block holds the codes of columns `j` (bits 6-7), `32 + j`,
/// `64 + j` and `96 + j` (bits 0-1). Three of the four fields are only masked, not
/// shifted, so they come out multiplied by 1, 4 and 16; their products are shifted
/// back before they are added (exact: every term is a multiple of
/// the factor). Codes × 16 ≤ 32 fit the 7-bit operand of
/// `i16x8.relaxed_dot_i8x16_i7x16`, so every platform gives the same sums.
///
/// The products are summed in 16-bit lanes and widened once per [`WIDEN_BLOCKS`] blocks:
/// on x86 without AVX-VNNI (AVX-512 VNNI does not count for V8) the 32-bit relaxed dot
/// product is five instructions (`pmaddubsw`, a constant, `pmaddwd`, an add), the 16-bit
/// one is `pmaddubsw` alone. A lane of one field's products is a pair sum of at most
/// 2·128·32 = 8192 (bits 4-5, which come out × 16), 512 once shifted back; the four fields
/// of a half block sum to at most 2048, and [`WIDEN_BLOCKS`] blocks (two halves each)
/// stay below 2^15.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn code_dot_tile_16<const N: usize>(row0: &[u8], row1: &[u8], q: [&[i8]; N]) -> [[i32; N]; 2] {
    let two = !row1.is_empty();
    let mut acc = [[i32x4_splat(0); N]; 2];
    let [m1, m4, m16, ones] = loop_constants([
        u8x16_splat(0x03),
        u8x16_splat(0x0c),
        u8x16_splat(0x30),
        i16x8_splat(1),
    ]);
    let blocks = row0.len() / i2s::BLOCK_BYTES;
    for first in (0..blocks).step_by(WIDEN_BLOCKS) {
        let mut sum16 = [[i16x8_splat(0); N]; 2];
        for b in first..(first + WIDEN_BLOCKS).min(blocks) {
            for h in 0..2 {
                let at = b * 128 + 16 * h;
                let qv = block_acts(q, at);
                for (r, codes) in [row0, row1].into_iter().enumerate() {
                    if r == 1 && !two {
                        break;
                    }
                    let w = load_at(codes, b * i2s::BLOCK_BYTES + 16 * h);
                    let [g0, g1, g2, g3] = code_fields(w, [m1, m4, m16]);
                    for t in 0..N {
                        let x = &qv[t];
                        let d0 = i16x8_relaxed_dot_i8x16_i7x16(x[0], g0);
                        let d16 = i16x8_relaxed_dot_i8x16_i7x16(x[1], g1);
                        let d4 = i16x8_relaxed_dot_i8x16_i7x16(x[2], g2);
                        let d1 = i16x8_relaxed_dot_i8x16_i7x16(x[3], g3);
                        let half = i16x8_add(
                            i16x8_add(d0, d1),
                            i16x8_add(i16x8_shr(d4, 2), i16x8_shr(d16, 4)),
                        );
                        sum16[r][t] = i16x8_add(sum16[r][t], half);
                    }
                }
            }
        }
        for (acc, sum) in acc.iter_mut().zip(&sum16) {
            for (a, &s) in acc.iter_mut().zip(sum) {
                *a = i32x4_add(*a, i32x4_dot_i16x8(s, ones));
            }
        }
    }
    acc.map(|row| row.map(hsum_i32))
}

/// Σ code·q for one row and `N` tokens of a prompt, summed in 16-bit lanes (relaxed
/// build; the same numbers as [`code_dot_tile`]). Unlike [`code_dot_tile_16`] it shifts
/// every field down to bits 0-1 once per 16 bytes (three shifts, four masks) instead of
/// shifting two of the four products back for every token: with four tokens that is 7
/// operations on the weights and 8 (four dot products, four adds) per token, against 5
/// and 10. A lane's four fields of a half block sum to at most 4·2·128·2 = 2048, the same
/// bound as there, so [`WIDEN_BLOCKS`] holds.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub(super) fn code_dot_tokens_16<const N: usize>(row: &[u8], q: [&[i8]; N]) -> [i32; N] {
    let mut acc = [i32x4_splat(0); N];
    let [m1, ones] = loop_constants([u8x16_splat(0x03), i16x8_splat(1)]);
    let blocks = row.len() / i2s::BLOCK_BYTES;
    for first in (0..blocks).step_by(WIDEN_BLOCKS) {
        let mut sum16 = [i16x8_splat(0); N];
        for b in first..(first + WIDEN_BLOCKS).min(blocks) {
            for h in 0..2 {
                let w = load_at(row, b * i2s::BLOCK_BYTES + 16 * h);
                // Bits 6-7 meet columns `16h..16h + 16` of the block, bits 0-1
                // `16h + 96..16h + 112`.
                let g = [6, 4, 2, 0].map(|s| v128_and(u16x8_shr(w, s), m1));
                for (sum, qt) in sum16.iter_mut().zip(q) {
                    let d: [v128; 4] = core::array::from_fn(|k| {
                        i16x8_relaxed_dot_i8x16_i7x16(load_at(qt, b * 128 + 16 * h + 32 * k), g[k])
                    });
                    *sum = i16x8_add(
                        *sum,
                        i16x8_add(i16x8_add(d[0], d[1]), i16x8_add(d[2], d[3])),
                    );
                }
            }
        }
        for (a, s) in acc.iter_mut().zip(sum16) {
            *a = i32x4_add(*a, i32x4_dot_i16x8(s, ones));
        }
    }
    acc.map(hsum_i32)
}

/// The four code fields of 16 bytes of a block, for the activations [`block_acts`]
/// loads: bits 6-7 shifted down (× 1), bits 4-5, 2-3 and 0-1 masked in place (× 16,
/// × 4, × 1). `masks`: 0x03, 0x0c, 0x30 in every byte.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn code_fields(w: v128, [m1, m4, m16]: [v128; 3]) -> [v128; 4] {
    [
        v128_and(u16x8_shr(w, 6), m1),
        v128_and(w, m16),
        v128_and(w, m4),
        v128_and(w, m1),
    ]
}

/// Each token's activations that meet the codes of 16 bytes at block column `at`: the four
/// runs of 16 that the byte's four fields cover.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn block_acts<const N: usize>(q: [&[i8]; N], at: usize) -> [[v128; 4]; N] {
    core::array::from_fn(|t| core::array::from_fn(|g| load_at(q[t], at + 32 * g)))
}

/// Blocks whose 16-bit sums [`code_dot_tile_16`] adds up before widening them (see there).
#[cfg(target_feature = "relaxed-simd")]
const WIDEN_BLOCKS: usize = 7;

/// [`code_dot_tile`] summing in 32-bit lanes: one `i32x4.relaxed_dot_i8x16_i7x16_add` per
/// 16 products, one VNNI `vpdpbusd` where V8 uses it (x86 with AVX-VNNI).
///
/// Byte `j` of a 32-byte block holds the codes of columns `j` (bits 6-7), `32 + j`,
/// `64 + j` and `96 + j` (bits 0-1). Three of the four fields are only masked, not
/// shifted, so they come out multiplied by 1, 4 and 16; they have their own
/// accumulators, shifted back at the end (exact: every term is a multiple of the
/// scale). Codes × 16 ≤ 32 still fit the 7-bit operand of
/// `i32x4.relaxed_dot_i8x16_i7x16_add` (`vpdpbusd` where the CPU has VNNI), so every
/// platform gives the same sums. Four accumulators per dot product keep each
/// dependency chain to two multiply-adds per block.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn code_dot_tile_32<const N: usize>(row0: &[u8], row1: &[u8], q: [&[i8]; N]) -> [[i32; N]; 2] {
    let two = !row1.is_empty();
    let mut acc = [[[i32x4_splat(0); 4]; N]; 2];
    let [m1, m4, m16] = loop_constants([u8x16_splat(0x03), u8x16_splat(0x0c), u8x16_splat(0x30)]);
    for b in 0..row0.len() / i2s::BLOCK_BYTES {
        for h in 0..2 {
            let at = b * 128 + 16 * h;
            let qv = block_acts(q, at);
            for (r, codes) in [row0, row1].into_iter().enumerate() {
                if r == 1 && !two {
                    break;
                }
                let w = load_at(codes, b * i2s::BLOCK_BYTES + 16 * h);
                let [g0, g1, g2, g3] = code_fields(w, [m1, m4, m16]);
                for t in 0..N {
                    let (a, x) = (&mut acc[r][t], &qv[t]);
                    a[0] = i32x4_relaxed_dot_i8x16_i7x16_add(x[0], g0, a[0]);
                    a[1] = i32x4_relaxed_dot_i8x16_i7x16_add(x[1], g1, a[1]);
                    a[2] = i32x4_relaxed_dot_i8x16_i7x16_add(x[2], g2, a[2]);
                    a[3] = i32x4_relaxed_dot_i8x16_i7x16_add(x[3], g3, a[3]);
                }
            }
        }
    }
    acc.map(|row| {
        row.map(|[a0, a16, a4, a1]| {
            let a = i32x4_add(
                i32x4_add(a0, a1),
                i32x4_add(i32x4_shr(a4, 2), i32x4_shr(a16, 4)),
            );
            hsum_i32(a)
        })
    })
}

/// The activations of one token as i16, in the order [`code_dot_tile`] reads them:
/// per 128-column block, per 16-byte half `h`, per shift `s` of the lane and per
/// mask `m`, the eight columns whose codes land in bits `m` after shifting by `s`.
#[cfg(not(target_feature = "relaxed-simd"))]
pub(super) fn permute_i16(q: &[i8], out: &mut Vec<i16>) {
    out.clear();
    for qb in q.chunks_exact(128) {
        for h in 0..2 {
            for s in [0, 4, 8, 12] {
                for m in [0, 2] {
                    // Bit b of the lane: byte b / 8; bits 6-7 of a byte are group 0
                    // (columns 0..32), bits 0-1 group 3.
                    let b = s + m;
                    let (odd, g) = (b / 8, 3 - (b % 8) / 2);
                    out.extend((0..8).map(|i| qb[32 * g + 16 * h + 2 * i + odd] as i16));
                }
            }
        }
    }
}

/// Σ code·q for one or two rows (`row1` empty for one) and `N` tokens over I2_S-layout
/// codes (plain SIMD128): `[row][token]`.
///
/// A 16-bit lane holds eight codes. Shifting it by 0, 4, 8 and 12 bits and masking
/// bits 0-1 and 2-3 cuts out all eight with three shifts and eight ANDs; the codes
/// under the second mask come out multiplied by 4, so they have their own
/// accumulator, shifted back at the end (exact: every term is a multiple of 4).
/// `i32x4.dot_i16x8` (`pmaddwd`) multiplies with the activations, widened and
/// permuted to match by [`permute_i16`]. (Four masks and one shift, tried too, are
/// slower: V8 then runs out of registers and spills.)
#[cfg(not(target_feature = "relaxed-simd"))]
#[inline(always)]
pub(super) fn code_dot_tile<const N: usize>(
    _sums: super::DotSums,
    row0: &[u8],
    row1: &[u8],
    q16: [&[i16]; N],
) -> [[i32; N]; 2] {
    let two = !row1.is_empty();
    let mut acc = [[[i32x4_splat(0); 2]; N]; 2];
    let [m1, m4] = loop_constants([u16x8_splat(0x3), u16x8_splat(0xc)]);
    for b in 0..row0.len() / i2s::BLOCK_BYTES {
        for h in 0..2 {
            for j in 0..4 {
                let at = b * 128 + 64 * h + 16 * j;
                let qv: [[v128; 2]; N] =
                    core::array::from_fn(|t| [load_at(q16[t], at), load_at(q16[t], at + 8)]);
                for (r, codes) in [row0, row1].into_iter().enumerate() {
                    if r == 1 && !two {
                        break;
                    }
                    let w = u16x8_shr(load_at(codes, b * i2s::BLOCK_BYTES + 16 * h), 4 * j as u32);
                    let (c1, c4) = (v128_and(w, m1), v128_and(w, m4));
                    for t in 0..N {
                        let a = &mut acc[r][t];
                        a[0] = i32x4_add(a[0], i32x4_dot_i16x8(c1, qv[t][0]));
                        a[1] = i32x4_add(a[1], i32x4_dot_i16x8(c4, qv[t][1]));
                    }
                }
            }
        }
    }
    acc.map(|row| row.map(|[a1, a4]| hsum_i32(i32x4_add(a1, i32x4_shr(a4, 2)))))
}

/// One token's int8 activations, prepared for [`int8_dot_tile`].
pub(super) struct Int8Acts<'a> {
    q: &'a [i8],
    /// Σq, which the int4 head's unsigned nibbles need taken back out.
    sum: i32,
    /// Plain build: widened to i16 for `i32x4.dot_i16x8`.
    #[cfg(not(target_feature = "relaxed-simd"))]
    wide: Vec<i16>,
    /// Relaxed build: max(q, 0) and max(−q, 0), both 7-bit, so a signed weight can
    /// take the other operand of `i32x4.relaxed_dot_i8x16_i7x16_add` (q ≥ −127).
    #[cfg(target_feature = "relaxed-simd")]
    pos: Vec<i8>,
    #[cfg(target_feature = "relaxed-simd")]
    neg: Vec<i8>,
}

impl<'a> Int8Acts<'a> {
    pub(super) fn new(q: &'a [i8]) -> Self {
        Int8Acts {
            q,
            sum: q.iter().map(|&v| v as i32).sum(),
            #[cfg(not(target_feature = "relaxed-simd"))]
            wide: q.iter().map(|&v| v as i16).collect(),
            #[cfg(target_feature = "relaxed-simd")]
            pos: q.iter().map(|&v| v.max(0)).collect(),
            #[cfg(target_feature = "relaxed-simd")]
            neg: q.iter().map(|&v| v.saturating_neg().max(0)).collect(),
        }
    }
}

/// Σ w·q for one or two rows of int8 weights (`row1` empty for one) and `N` tokens:
/// `[row][token]`. Plain build: weights sign-extended as they load
/// (`i16x8.load8x8_s`), `i32x4.dot_i16x8` against the widened activations. Relaxed
/// build: two dot products per 16 weights, against the positive and the negative part
/// of q, in two interleaved sets of accumulators so that no dependency chain waits on
/// the one before. With 16-bit sums the two 16-bit dot products are subtracted before
/// they are widened: q is one part or the other, so their difference is a pair of
/// w·q, at most 2·128·127 = 32512.
#[inline(always)]
pub(super) fn int8_dot_tile<const N: usize>(
    sums: super::DotSums,
    row0: &[u8],
    row1: &[u8],
    x: [&Int8Acts; N],
) -> [[i32; N]; 2] {
    let cols = row0.len();
    let two = !row1.is_empty();
    let rows = [row0, row1];
    let mut acc = [[[i32x4_splat(0); 4]; N]; 2];
    #[cfg(target_feature = "relaxed-simd")]
    let [ones] = loop_constants([i16x8_splat(1)]);
    #[cfg(not(target_feature = "relaxed-simd"))]
    let _ = sums;
    let mut chunk = |j: usize, set: usize| {
        #[cfg(target_feature = "relaxed-simd")]
        let xv: [[v128; 2]; N] =
            core::array::from_fn(|t| [load_at(&x[t].pos, j), load_at(&x[t].neg, j)]);
        #[cfg(not(target_feature = "relaxed-simd"))]
        let xv: [[v128; 2]; N] =
            core::array::from_fn(|t| [load_at(&x[t].wide, j), load_at(&x[t].wide, j + 8)]);
        for r in 0..2 {
            if r == 1 && !two {
                break;
            }
            #[cfg(target_feature = "relaxed-simd")]
            {
                let wv = load_at(rows[r], j);
                for t in 0..N {
                    let a = &mut acc[r][t];
                    if sums == super::DotSums::Lanes16 {
                        let d = i16x8_sub(
                            i16x8_relaxed_dot_i8x16_i7x16(wv, xv[t][0]),
                            i16x8_relaxed_dot_i8x16_i7x16(wv, xv[t][1]),
                        );
                        a[set] = i32x4_add(a[set], i32x4_dot_i16x8(d, ones));
                    } else {
                        a[set] = i32x4_relaxed_dot_i8x16_i7x16_add(wv, xv[t][0], a[set]);
                        a[set + 1] = i32x4_relaxed_dot_i8x16_i7x16_add(wv, xv[t][1], a[set + 1]);
                    }
                }
            }
            #[cfg(not(target_feature = "relaxed-simd"))]
            {
                // SAFETY: j + 16 <= cols = the row's length.
                let (w_lo, w_hi) = unsafe {
                    let p = rows[r].as_ptr().add(j);
                    (
                        i16x8_load_extend_i8x8(p.cast()),
                        i16x8_load_extend_i8x8(p.add(8).cast()),
                    )
                };
                for t in 0..N {
                    let a = &mut acc[r][t];
                    a[set] = i32x4_add(a[set], i32x4_dot_i16x8(w_lo, xv[t][0]));
                    a[set + 1] = i32x4_add(a[set + 1], i32x4_dot_i16x8(w_hi, xv[t][1]));
                }
            }
        }
    };
    let mut j = 0;
    while j + 32 <= cols {
        chunk(j, 0);
        chunk(j + 16, 2);
        j += 32;
    }
    if j + 16 <= cols {
        chunk(j, 0);
        j += 16;
    }
    tile_dots(&acc, two, |r, t| {
        (j..cols)
            .map(|c| rows[r][c] as i8 as i32 * x[t].q[c] as i32)
            .sum()
    })
}

/// The dot products of an int8 tile: its four accumulators per row and token (relaxed
/// build: two against q's positive part, two against its negative part), plus
/// `tail(row, token)`, the columns the vectors did not cover.
#[inline(always)]
fn tile_dots<const N: usize>(
    acc: &[[[v128; 4]; N]; 2],
    two: bool,
    tail: impl Fn(usize, usize) -> i32,
) -> [[i32; N]; 2] {
    let mut dots = [[0i32; N]; 2];
    for (r, row) in dots.iter_mut().enumerate().take(if two { 2 } else { 1 }) {
        for (t, dot) in row.iter_mut().enumerate() {
            let [a0, a1, a2, a3] = acc[r][t];
            #[cfg(target_feature = "relaxed-simd")]
            let v = i32x4_sub(i32x4_add(a0, a2), i32x4_add(a1, a3));
            #[cfg(not(target_feature = "relaxed-simd"))]
            let v = i32x4_add(i32x4_add(a0, a1), i32x4_add(a2, a3));
            *dot = hsum_i32(v) + tail(r, t);
        }
    }
    dots
}

/// Σ w·q for one or two rows of int4 weights ([`DenseType::I4`]'s layout; `row1` empty
/// for one) and `N` tokens: `[row][token]`. The nibbles are q+8, unsigned 0..15, and go
/// into the products as they are, 8·Σq coming out at the end (bitnet.cpp's trick for its
/// codes): in the relaxed build they fit the 7-bit operand of
/// `i32x4.relaxed_dot_i8x16_i7x16_add` against q itself, one dot product per 16 weights
/// (the int8 head needs two); the plain build widens them (unsigned) for
/// `i32x4.dot_i16x8`. Each 16 bytes of a block give 32 weights: the low nibbles meet
/// activations `j..j+16`, the high nibbles (a 16-bit shift, then the mask: no byte
/// shift) `j+64..j+80`; those activations are loaded once for both rows.
///
/// [`DenseType::I4`]: crate::formats::DenseType::I4
#[inline(always)]
pub(super) fn int4_dot_tile<const N: usize>(
    sums: super::DotSums,
    row0: &[u8],
    row1: &[u8],
    x: [&Int8Acts; N],
) -> [[i32; N]; 2] {
    let cols = x[0].q.len();
    let n_rows = if row1.is_empty() { 1 } else { 2 };
    let rows = [row0, row1];
    let [nibble] = loop_constants([u8x16_splat(0x0F)]);
    let mut acc = [[[i32x4_splat(0); 4]; N]; 2];
    let blocks = cols / I4_BLOCK;
    // The blocks left to the 32-bit sums below: none where 16-bit sums took them all.
    #[cfg(target_feature = "relaxed-simd")]
    let wide_blocks = if sums == super::DotSums::Lanes16 {
        int4_blocks_16(rows, n_rows, x, blocks, &mut acc);
        0
    } else {
        blocks
    };
    #[cfg(not(target_feature = "relaxed-simd"))]
    let wide_blocks = {
        let _ = sums;
        blocks
    };
    for b in 0..wide_blocks {
        for k in 0..I4_BLOCK / 32 {
            let (byte, col) = (b * I4_BLOCK / 2 + 16 * k, b * I4_BLOCK + 16 * k);
            let hi_col = col + I4_BLOCK / 2;
            // Accumulator sets alternate between k's, so no chain waits on the one before.
            let set = 2 * (k % 2);
            #[cfg(target_feature = "relaxed-simd")]
            let xv: [[v128; 2]; N] =
                core::array::from_fn(|t| [load_at(x[t].q, col), load_at(x[t].q, hi_col)]);
            #[cfg(not(target_feature = "relaxed-simd"))]
            let xv: [[v128; 4]; N] = core::array::from_fn(|t| {
                let w = &x[t].wide;
                [
                    load_at(w, col),
                    load_at(w, col + 8),
                    load_at(w, hi_col),
                    load_at(w, hi_col + 8),
                ]
            });
            for (r, row) in rows.iter().enumerate().take(n_rows) {
                let v = load_at(row, byte);
                let lo = v128_and(v, nibble);
                let hi = v128_and(u16x8_shr(v, 4), nibble);
                for t in 0..N {
                    let a = &mut acc[r][t];
                    #[cfg(target_feature = "relaxed-simd")]
                    {
                        a[set] = i32x4_relaxed_dot_i8x16_i7x16_add(xv[t][0], lo, a[set]);
                        a[set + 1] = i32x4_relaxed_dot_i8x16_i7x16_add(xv[t][1], hi, a[set + 1]);
                    }
                    #[cfg(not(target_feature = "relaxed-simd"))]
                    {
                        let lo_w = [u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo)];
                        let hi_w = [u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi)];
                        a[set] = i32x4_add(a[set], i32x4_dot_i16x8(lo_w[0], xv[t][0]));
                        a[set] = i32x4_add(a[set], i32x4_dot_i16x8(lo_w[1], xv[t][1]));
                        a[set + 1] = i32x4_add(a[set + 1], i32x4_dot_i16x8(hi_w[0], xv[t][2]));
                        a[set + 1] = i32x4_add(a[set + 1], i32x4_dot_i16x8(hi_w[1], xv[t][3]));
                    }
                }
            }
        }
    }
    let body = blocks * I4_BLOCK;
    let mut dots = [[0i32; N]; 2];
    for (r, row) in dots.iter_mut().enumerate().take(n_rows) {
        for (t, dot) in row.iter_mut().enumerate() {
            let v = acc[r][t]
                .iter()
                .fold(i32x4_splat(0), |s, &a| i32x4_add(s, a));
            let q = x[t].q;
            let tail_sum: i32 = q[body..].iter().map(|&v| v as i32).sum();
            let tail: i32 = (body..cols)
                .map(|c| i4_value(rows[r], c) as i32 * q[c] as i32)
                .sum();
            *dot = hsum_i32(v) - 8 * (x[t].sum - tail_sum) + tail;
        }
    }
    dots
}

/// [`int4_dot_tile`]'s whole blocks with 16-bit sums (relaxed build), into `acc[r][t][0]`:
/// a nibble (≤ 15) times q is a pair sum of at most 2·15·128 = 3840, and a block's eight
/// 16-byte dot products stay below 2^15 before they are widened.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn int4_blocks_16<const N: usize>(
    rows: [&[u8]; 2],
    n_rows: usize,
    x: [&Int8Acts; N],
    blocks: usize,
    acc: &mut [[[v128; 4]; N]; 2],
) {
    let [nibble, ones] = loop_constants([u8x16_splat(0x0F), i16x8_splat(1)]);
    for b in 0..blocks {
        let mut sum16 = [[i16x8_splat(0); N]; 2];
        for k in 0..I4_BLOCK / 32 {
            let (byte, col) = (b * I4_BLOCK / 2 + 16 * k, b * I4_BLOCK + 16 * k);
            let hi_col = col + I4_BLOCK / 2;
            let xv: [[v128; 2]; N] =
                core::array::from_fn(|t| [load_at(x[t].q, col), load_at(x[t].q, hi_col)]);
            for (r, row) in rows.iter().enumerate().take(n_rows) {
                let v = load_at(row, byte);
                let lo = v128_and(v, nibble);
                let hi = v128_and(u16x8_shr(v, 4), nibble);
                for t in 0..N {
                    let d = i16x8_add(
                        i16x8_relaxed_dot_i8x16_i7x16(xv[t][0], lo),
                        i16x8_relaxed_dot_i8x16_i7x16(xv[t][1], hi),
                    );
                    sum16[r][t] = i16x8_add(sum16[r][t], d);
                }
            }
        }
        for r in 0..n_rows {
            for t in 0..N {
                acc[r][t][0] = i32x4_add(acc[r][t][0], i32x4_dot_i16x8(sum16[r][t], ones));
            }
        }
    }
}
