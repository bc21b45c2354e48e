//! WebAssembly SIMD128 kernels (compiled in with `-C target-feature=+simd128`), and
//! the relaxed-SIMD variant (`+relaxed-simd`) that replaces the widening multiplies
//! with `i32x4.relaxed_dot_i8x16_i7x16_add`. Feature detection happens in
//! JavaScript, which picks the matching `.wasm` build.
//!
//! Ternary dot: codes are t+1 ∈ {0,1,2}, so Σ t·q = Σ code·q − Σq. Each 32-byte
//! block of codes is split into its four 2-bit fields with a shift and a mask;
//! the plain build multiplies bytes as `i16x8.extmul` pairs, the relaxed build
//! with one dot-product instruction per 16 values (codes fit the 7-bit operand).

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
        for (i, r) in rows.enumerate() {
            let codes = w.row_codes(r);
            for t in 0..n_tok {
                let dot = code_dot(codes, a.token(t));
                out[i * n_tok + t] = (dot - a.sum[t]) as f32 * scale * a.inv_scale[t];
            }
        }
    }

    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let (n_tok, cols) = (a.n_tok, a.cols);
        let body = cols / 16 * 16;
        for (i, r) in rows.enumerate() {
            let wr = w.row_bytes(r);
            for t in 0..n_tok {
                let x = a.token(t);
                let mut acc = i32x4_splat(0);
                for j in (0..body).step_by(16) {
                    let (wv, xv) = (load(wr, j), load_i8(x, j));
                    // |product| ≤ 127·128: each i16 lane holds one product before widening.
                    acc = i32x4_add(
                        acc,
                        i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(wv, xv)),
                    );
                    acc = i32x4_add(
                        acc,
                        i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(wv, xv)),
                    );
                }
                let mut dot = i32x4_extract_lane::<0>(acc)
                    + i32x4_extract_lane::<1>(acc)
                    + i32x4_extract_lane::<2>(acc)
                    + i32x4_extract_lane::<3>(acc);
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
        for (i, r) in rows.enumerate() {
            let wb = w.row_bytes(r);
            for t in 0..n_tok {
                out[i * n_tok + t] = dot_f16(wb, &x[t * cols..(t + 1) * cols]);
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

#[inline(always)]
fn load_i8(p: &[i8], at: usize) -> v128 {
    debug_assert!(at + 16 <= p.len());
    // SAFETY: as in `load`.
    unsafe { v128_load(p.as_ptr().add(at).cast()) }
}

/// Σ code·q over a row of I2_S-layout codes.
fn code_dot(codes: &[u8], q: &[i8]) -> i32 {
    let mask = u8x16_splat(3);
    let mut acc = i32x4_splat(0);
    for (b, blk) in codes.chunks_exact(i2s::BLOCK_BYTES).enumerate() {
        let qb = &q[b * 128..b * 128 + 128];
        let halves = [load(blk, 0), load(blk, 16)];
        #[cfg(not(target_feature = "relaxed-simd"))]
        let mut acc16 = i16x8_splat(0);
        for (g, shift) in [6u32, 4, 2, 0].into_iter().enumerate() {
            for (h, w) in halves.iter().enumerate() {
                let c = v128_and(u8x16_shr(*w, shift), mask);
                let qv = load_i8(qb, 32 * g + 16 * h);
                #[cfg(target_feature = "relaxed-simd")]
                {
                    acc = i32x4_relaxed_dot_i8x16_i7x16_add(qv, c, acc);
                }
                #[cfg(not(target_feature = "relaxed-simd"))]
                {
                    // |lane| ≤ 16 products of 2·128 per block: fits i16.
                    acc16 = i16x8_add(acc16, i16x8_extmul_low_i8x16(c, qv));
                    acc16 = i16x8_add(acc16, i16x8_extmul_high_i8x16(c, qv));
                }
            }
        }
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(acc16));
        }
    }
    i32x4_extract_lane::<0>(acc)
        + i32x4_extract_lane::<1>(acc)
        + i32x4_extract_lane::<2>(acc)
        + i32x4_extract_lane::<3>(acc)
}

/// Eight f16 (as u16 lanes) → two f32x4. Exponent rebias by multiplication handles
/// normals and subnormals; infinities and NaNs are patched back in with a select.
#[inline(always)]
fn f16x8_to_f32(h: v128) -> (v128, v128) {
    let conv = |u: v128| {
        let sign = i32x4_shl(v128_and(u, u32x4_splat(0x8000)), 16);
        let mag = v128_and(u, u32x4_splat(0x7fff));
        let scaled = f32x4_mul(i32x4_shl(mag, 13), f32x4_splat(f32::from_bits(0x7780_0000))); // 2^112
        let special = u32x4_ge(mag, u32x4_splat(0x7c00));
        let inf_nan = v128_or(i32x4_shl(mag, 13), u32x4_splat(0x7f80_0000));
        v128_or(sign, v128_bitselect(inf_nan, scaled, special))
    };
    (
        conv(u32x4_extend_low_u16x8(h)),
        conv(u32x4_extend_high_u16x8(h)),
    )
}

fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
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
