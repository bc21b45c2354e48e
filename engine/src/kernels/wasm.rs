//! WebAssembly SIMD128 kernels (compiled in with `-C target-feature=+simd128`), and
//! the relaxed-SIMD variant (`+relaxed-simd`). Feature detection happens in
//! JavaScript, which picks the matching `.wasm` build.
//!
//! Ternary dot: codes are t+1 ∈ {0,1,2}, so Σ t·q = Σ code·q − Σq. Fields are cut
//! out with 16-bit shifts (x86 has no byte shift: V8 emulates `i8x16.shr` with three
//! instructions). The plain build keeps eight codes per 16-bit lane and multiplies
//! them with `i32x4.dot_i16x8` against activations widened and permuted once per
//! call; the relaxed build uses `i16x8.relaxed_dot_i8x16_i7x16` on bytes (codes fit
//! the 7-bit operand). The f16 LM head converts with a sign extension, a shift and a
//! mask, leaving a 2^-112 factor that is moved onto the activations.

use super::{scalar, Kernels, QuantActs};
use crate::formats::dense::DenseType;
use crate::formats::{i2s, DenseMatrix, TernaryMatrix, TernaryScale};
use core::arch::wasm32::*;
use std::ops::Range;

pub struct Simd128;

impl Kernels for Simd128 {
    fn name(&self) -> &'static str {
        if cfg!(target_feature = "relaxed-simd") {
            "wasm-relaxed-simd"
        } else {
            "wasm-simd128"
        }
    }

    fn quantize_acts(&self, x: &[f32], cols: usize, out: &mut QuantActs) {
        quantize(x, cols, out)
    }

    fn ternary_rows(&self, w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let TernaryScale::PerTensor(scale) = w.scale else {
            return scalar::ternary_rows(w, a, rows, out);
        };
        let n_tok = a.n_tok;
        #[cfg(not(target_feature = "relaxed-simd"))]
        let q16: Vec<Vec<i16>> = (0..n_tok)
            .map(|t| {
                let mut v = Vec::with_capacity(a.cols);
                permute_i16(a.token(t), &mut v);
                v
            })
            .collect();
        for (i, r) in rows.enumerate() {
            let codes = w.row_codes(r);
            for t in 0..n_tok {
                #[cfg(target_feature = "relaxed-simd")]
                let dot = code_dot(codes, a.token(t));
                #[cfg(not(target_feature = "relaxed-simd"))]
                let dot = code_dot16(codes, &q16[t]);
                out[i * n_tok + t] = (dot - a.sum[t]) as f32 * scale * a.inv_scale[t];
            }
        }
    }

    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let (n_tok, cols) = (a.n_tok, a.cols);
        let body = cols / 16 * 16;
        // Activations widened once per call: each row then costs two sign extensions
        // and two `i32x4.dot_i16x8` (`pmaddwd`) per 16 weights.
        let q16: Vec<Vec<i16>> = (0..n_tok)
            .map(|t| a.token(t).iter().map(|&v| v as i16).collect())
            .collect();
        for (i, r) in rows.enumerate() {
            let wr = w.row_bytes(r);
            for t in 0..n_tok {
                let (x, x16) = (a.token(t), &q16[t]);
                let mut acc = [i32x4_splat(0), i32x4_splat(0)];
                for j in (0..body).step_by(16) {
                    let wv = load(wr, j);
                    // SAFETY: j + 16 <= body <= cols = x16.len().
                    let (x0, x1) = unsafe {
                        (
                            v128_load(x16.as_ptr().add(j).cast()),
                            v128_load(x16.as_ptr().add(j + 8).cast()),
                        )
                    };
                    acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(i16x8_extend_low_i8x16(wv), x0));
                    acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(i16x8_extend_high_i8x16(wv), x1));
                }
                let mut dot = hsum_i32(i32x4_add(acc[0], acc[1]));
                for c in body..cols {
                    dot += wr[c] as i8 as i32 * x[c] as i32;
                }
                out[i * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
            }
        }
    }

    fn dense_rows(
        &self,
        w: &DenseMatrix,
        x: &[f32],
        n_tok: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        if w.ty != DenseType::F16 {
            return scalar::dense_rows(w, x, n_tok, rows, out);
        }
        let cols = w.cols;
        // The fast f16 conversion leaves weights 2^-112 too small; scaling the
        // activations up instead of the products keeps every product a normal float.
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scaled: Option<Vec<f32>> =
            (max < 32768.0).then(|| x.iter().map(|v| v * TWO_POW_112).collect());
        for (i, r) in rows.enumerate() {
            let wb = w.row_bytes(r);
            for t in 0..n_tok {
                let xt = &x[t * cols..(t + 1) * cols];
                out[i * n_tok + t] = match &scaled {
                    Some(xs) => dot_f16(wb, &xs[t * cols..(t + 1) * cols], xt),
                    None => dot_f16_exact(wb, xt),
                };
            }
        }
    }
}

#[inline(always)]
fn load(p: &[u8], at: usize) -> v128 {
    // SAFETY: callers pass `at + 16 <= p.len()`; v128_load has no alignment requirement.
    debug_assert!(at + 16 <= p.len());
    unsafe { v128_load(p.as_ptr().add(at).cast()) }
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn load_i8(p: &[i8], at: usize) -> v128 {
    debug_assert!(at + 16 <= p.len());
    // SAFETY: as in `load`.
    unsafe { v128_load(p.as_ptr().add(at).cast()) }
}

/// Σ code·q over a row of I2_S-layout codes (relaxed build).
///
/// Fields come out of each byte with a 16-bit shift and a byte mask (a byte shift
/// does not exist on x86 and costs V8 three instructions); `i16x8.relaxed_dot`
/// (`pmaddubsw`) adds code·q pairs into 16-bit lanes, widened once per block.
#[cfg(target_feature = "relaxed-simd")]
fn code_dot(codes: &[u8], q: &[i8]) -> i32 {
    let mask = u8x16_splat(3);
    let mut acc = i32x4_splat(0);
    for (b, blk) in codes.chunks_exact(i2s::BLOCK_BYTES).enumerate() {
        let qb = &q[b * 128..b * 128 + 128];
        let halves = [load(blk, 0), load(blk, 16)];
        // |lane| ≤ 8 × (2 · 2 · 128) per block: fits i16.
        let mut acc16 = i16x8_splat(0);
        for (g, shift) in [6u32, 4, 2, 0].into_iter().enumerate() {
            for (h, w) in halves.iter().enumerate() {
                let c = v128_and(u16x8_shr(*w, shift), mask);
                let qv = load_i8(qb, 32 * g + 16 * h);
                acc16 = i16x8_add(acc16, i16x8_relaxed_dot_i8x16_i7x16(qv, c));
            }
        }
        acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(acc16));
    }
    hsum_i32(acc)
}

/// The activations of one token as i16, in the order [`code_dot16`] reads them:
/// per 128-column block, per 16-byte half `h` and per shift `s` of a 16-bit lane
/// `k`, the column whose code sits at bits `s..s+2` of that lane.
#[cfg(not(target_feature = "relaxed-simd"))]
fn permute_i16(q: &[i8], out: &mut Vec<i16>) {
    out.clear();
    for qb in q.chunks_exact(128) {
        for h in 0..2 {
            for s in LANE_SHIFTS {
                // Bits 8.. of the lane are the odd byte; within a byte, bits 6-7
                // are group 0 (columns 0..32), bits 0-1 group 3.
                let (odd, g) = (s / 8, 3 - (s % 8) / 2);
                out.extend((0..8).map(|k| qb[32 * g + 16 * h + 2 * k + odd] as i16));
            }
        }
    }
}

#[cfg(not(target_feature = "relaxed-simd"))]
const LANE_SHIFTS: [usize; 8] = [0, 2, 4, 6, 8, 10, 12, 14];

/// Σ code·q over a row of I2_S-layout codes (plain SIMD128): each 16-bit lane holds
/// eight codes, taken out with a shift and a mask and multiplied with
/// `i32x4.dot_i16x8` (`pmaddwd`) against activations permuted to match, so no
/// widening of the codes is needed.
#[cfg(not(target_feature = "relaxed-simd"))]
fn code_dot16(codes: &[u8], q16: &[i16]) -> i32 {
    let mask = u16x8_splat(3);
    let mut acc = [i32x4_splat(0), i32x4_splat(0)];
    for (b, blk) in codes.chunks_exact(i2s::BLOCK_BYTES).enumerate() {
        let qb = &q16[b * 128..b * 128 + 128];
        for h in 0..2 {
            let w = load(blk, 16 * h);
            let ld = |i: usize| {
                debug_assert!(64 * h + 8 * i + 8 <= qb.len());
                // SAFETY: 64h + 8i + 8 <= 128 = qb.len().
                unsafe { v128_load(qb.as_ptr().add(64 * h + 8 * i).cast()) }
            };
            let parts = [
                v128_and(w, mask),
                v128_and(u16x8_shr(w, 2), mask),
                v128_and(u16x8_shr(w, 4), mask),
                v128_and(u16x8_shr(w, 6), mask),
                v128_and(u16x8_shr(w, 8), mask),
                v128_and(u16x8_shr(w, 10), mask),
                v128_and(u16x8_shr(w, 12), mask),
                u16x8_shr(w, 14),
            ];
            for (i, c) in parts.into_iter().enumerate() {
                acc[i & 1] = i32x4_add(acc[i & 1], i32x4_dot_i16x8(c, ld(i)));
            }
        }
    }
    hsum_i32(i32x4_add(acc[0], acc[1]))
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// Eight f16 (as u16 lanes) → two f32x4. Exponent rebias by multiplication handles
/// normals and subnormals; infinities and NaNs are patched back in with a select.
#[inline(always)]
fn f16x8_to_f32(h: v128) -> (v128, v128) {
    let conv = |u: v128| {
        let sign = i32x4_shl(v128_and(u, u32x4_splat(0x8000)), 16);
        let mag = v128_and(u, u32x4_splat(0x7fff));
        let scaled = f32x4_mul(i32x4_shl(mag, 13), f32x4_splat(TWO_POW_112));
        let special = u32x4_ge(mag, u32x4_splat(0x7c00));
        let inf_nan = v128_or(i32x4_shl(mag, 13), u32x4_splat(0x7f80_0000));
        v128_or(sign, v128_bitselect(inf_nan, scaled, special))
    };
    (
        conv(u32x4_extend_low_u16x8(h)),
        conv(u32x4_extend_high_u16x8(h)),
    )
}

const TWO_POW_112: f32 = f32::from_bits(0x7780_0000);

/// Eight finite f16 → two f32x4, each off by 2^-112 (the caller scales `x` up):
/// sign-extending the 16 bits puts the sign in bit 31, and a shift puts exponent and
/// mantissa where f32 keeps them; the exponent is then 112 short, which for
/// subnormals too is exactly a factor 2^-112. Infinities and NaNs come out wrong,
/// so callers check for them separately.
#[inline(always)]
fn f16x8_to_f32_scaled(h: v128) -> (v128, v128) {
    let keep = u32x4_splat(0x8fff_e000);
    (
        v128_and(i32x4_shl(i32x4_extend_low_i16x8(h), 13), keep),
        v128_and(i32x4_shl(i32x4_extend_high_i16x8(h), 13), keep),
    )
}

#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}

/// A row of f16 weights · x, given `xs` = x · 2^112. The fast conversion runs first;
/// a row holding an infinity or NaN (seen by a running max of the magnitudes) is
/// redone exactly.
fn dot_f16(w: &[u8], xs: &[f32], x: &[f32]) -> f32 {
    let n = x.len();
    let body = n / 16 * 16;
    let mut acc = [f32x4_splat(0.0); 4];
    let mut mag_max = u16x8_splat(0);
    let abs = u16x8_splat(0x7fff);
    for i in (0..body).step_by(16) {
        for k in 0..2 {
            let h = load(w, (i + 8 * k) * 2);
            mag_max = u16x8_max(mag_max, v128_and(h, abs));
            let (lo, hi) = f16x8_to_f32_scaled(h);
            // SAFETY: i + 8k + 8 <= body <= n = xs.len().
            let (x0, x1) = unsafe {
                (
                    v128_load(xs.as_ptr().add(i + 8 * k).cast()),
                    v128_load(xs.as_ptr().add(i + 8 * k + 4).cast()),
                )
            };
            acc[2 * k] = madd(lo, x0, acc[2 * k]);
            acc[2 * k + 1] = madd(hi, x1, acc[2 * k + 1]);
        }
    }
    if u16x8_all_true(u16x8_lt(mag_max, u16x8_splat(0x7c00))) {
        let s = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
        let mut sum = f32x4_extract_lane::<0>(s)
            + f32x4_extract_lane::<1>(s)
            + f32x4_extract_lane::<2>(s)
            + f32x4_extract_lane::<3>(s);
        for i in body..n {
            sum += half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32() * x[i];
        }
        return sum;
    }
    dot_f16_exact(w, x)
}

fn dot_f16_exact(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let mut acc = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for k in 0..2 {
            let (lo, hi) = f16x8_to_f32(load(w, (i + 8 * k) * 2));
            // SAFETY: i + 8k + 8 <= n.
            let (x0, x1) = unsafe {
                (
                    v128_load(x.as_ptr().add(i + 8 * k).cast()),
                    v128_load(x.as_ptr().add(i + 8 * k + 4).cast()),
                )
            };
            acc[2 * k] = f32x4_add(acc[2 * k], f32x4_mul(lo, x0));
            acc[2 * k + 1] = f32x4_add(acc[2 * k + 1], f32x4_mul(hi, x1));
        }
        i += 16;
    }
    let s = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
    let mut sum = f32x4_extract_lane::<0>(s)
        + f32x4_extract_lane::<1>(s)
        + f32x4_extract_lane::<2>(s)
        + f32x4_extract_lane::<3>(s);
    while i < n {
        sum += half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32() * x[i];
        i += 1;
    }
    sum
}

fn quantize(x: &[f32], cols: usize, out: &mut QuantActs) {
    let n_tok = out.reset(x.len(), cols);
    let chunks = cols / 16;
    for t in 0..n_tok {
        let row = &x[t * cols..(t + 1) * cols];
        let ld = |i: usize| unsafe { v128_load(row.as_ptr().add(i).cast()) };
        let mut vmax = f32x4_splat(0.0);
        for c in 0..cols / 4 {
            vmax = f32x4_max(vmax, f32x4_abs(ld(c * 4)));
        }
        let mut max = [0, 1, 2, 3].iter().fold(0f32, |m, &l| {
            m.max(match l {
                0 => f32x4_extract_lane::<0>(vmax),
                1 => f32x4_extract_lane::<1>(vmax),
                2 => f32x4_extract_lane::<2>(vmax),
                _ => f32x4_extract_lane::<3>(vmax),
            })
        });
        for &v in &row[cols / 4 * 4..] {
            max = max.max(v.abs());
        }
        if max == 0.0 || !max.is_finite() {
            out.zero_token(t);
            continue;
        }
        let q = &mut out.q[t * cols..(t + 1) * cols];
        let s = 127.0 / max;
        let vs = f32x4_splat(s);
        let (lo, hi) = (f32x4_splat(-128.0), f32x4_splat(127.0));
        let to_i32 = |v: v128| {
            i32x4_trunc_sat_f32x4(f32x4_min(
                f32x4_max(f32x4_nearest(f32x4_mul(v, vs)), lo),
                hi,
            ))
        };
        let mut vsum = i32x4_splat(0);
        for c in 0..chunks {
            let b = c * 16;
            let i: [v128; 4] = [
                to_i32(ld(b)),
                to_i32(ld(b + 4)),
                to_i32(ld(b + 8)),
                to_i32(ld(b + 12)),
            ];
            vsum = i32x4_add(
                vsum,
                i32x4_add(i32x4_add(i[0], i[1]), i32x4_add(i[2], i[3])),
            );
            let packed = i8x16_narrow_i16x8(
                i16x8_narrow_i32x4(i[0], i[1]),
                i16x8_narrow_i32x4(i[2], i[3]),
            );
            // SAFETY: b + 16 <= cols.
            unsafe { v128_store(q.as_mut_ptr().add(b).cast(), packed) };
        }
        let mut sum = i32x4_extract_lane::<0>(vsum)
            + i32x4_extract_lane::<1>(vsum)
            + i32x4_extract_lane::<2>(vsum)
            + i32x4_extract_lane::<3>(vsum);
        for k in chunks * 16..cols {
            q[k] = scalar::quantize_one(row[k], s);
            sum += q[k] as i32;
        }
        out.inv_scale[t] = max / 127.0;
        out.sum[t] = sum;
    }
}
