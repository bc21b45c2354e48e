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
        #[cfg(not(target_feature = "relaxed-simd"))]
        let qs: Vec<&[i16]> = q16.iter().map(Vec::as_slice).collect();
        #[cfg(target_feature = "relaxed-simd")]
        let qs: Vec<&[i8]> = (0..n_tok).map(|t| a.token(t)).collect();
        let first = rows.start;
        let mut put = |r: usize, t: usize, dot: i32| {
            out[(r - first) * n_tok + t] = (dot - a.sum[t]) as f32 * scale * a.inv_scale[t];
        };
        if n_tok == 1 {
            // One token: rows go two at a time, for two independent dependency chains
            // and one activation load serving both rows.
            for (r, pair) in row_pairs(rows, &w.codes, w.cols / 4) {
                let second = if pair { w.row_codes(r + 1) } else { &[] };
                let [[d0], [d1]] = code_dot_tile(w.row_codes(r), second, [qs[0]]);
                put(r, 0, d0);
                if pair {
                    put(r + 1, 0, d1);
                }
            }
            return;
        }
        // A prompt: tokens go two at a time, each code vector cut out once serving both;
        // a block of tokens meets every row before the next block starts, so that the
        // block's activations stay in the L1 cache (a long prompt's do not fit).
        for block in (0..n_tok).step_by(PROMPT_TOKEN_BLOCK) {
            let end = (block + PROMPT_TOKEN_BLOCK).min(n_tok);
            for r in rows.clone() {
                let codes = w.row_codes(r);
                let mut t = block;
                while t + 1 < end {
                    let [[d0, d1], _] = code_dot_tile(codes, &[], [qs[t], qs[t + 1]]);
                    put(r, t, d0);
                    put(r, t + 1, d1);
                    t += 2;
                }
                if t < end {
                    put(r, t, code_dot_tile(codes, &[], [qs[t]])[0][0]);
                }
            }
        }
    }

    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let n_tok = a.n_tok;
        let acts: Vec<Int8Acts> = (0..n_tok).map(|t| Int8Acts::new(a.token(t))).collect();
        let first = rows.start;
        let mut put = |r: usize, t: usize, dot: i32| {
            out[(r - first) * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
        };
        // Rows two at a time (one activation load serves both), tokens two at a time
        // (one weight load serves both).
        for (r, pair) in row_pairs(rows, &w.data, w.cols) {
            let w0 = w.row_bytes(r);
            let w1 = if pair { w.row_bytes(r + 1) } else { &[] };
            let mut t = 0;
            while t < n_tok {
                let n = if t + 1 < n_tok {
                    let [[d00, d01], [d10, d11]] = int8_dot_tile(w0, w1, [&acts[t], &acts[t + 1]]);
                    put(r, t, d00);
                    put(r, t + 1, d01);
                    if pair {
                        put(r + 1, t, d10);
                        put(r + 1, t + 1, d11);
                    }
                    2
                } else {
                    let [[d0], [d1]] = int8_dot_tile(w0, w1, [&acts[t]]);
                    put(r, t, d0);
                    if pair {
                        put(r + 1, t, d1);
                    }
                    1
                };
                t += n;
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
        let first = rows.start;
        // Rows two at a time: one activation load serves both.
        for (r, pair) in row_pairs(rows, &w.data, 2 * cols) {
            let w0 = w.row_bytes(r);
            let w1 = if pair { w.row_bytes(r + 1) } else { &[] };
            for t in 0..n_tok {
                let xt = &x[t * cols..(t + 1) * cols];
                let dots = match &scaled {
                    Some(xs) => dot_f16_pair(w0, w1, &xs[t * cols..(t + 1) * cols], xt),
                    None => [
                        dot_f16_exact(w0, xt),
                        if pair { dot_f16_exact(w1, xt) } else { 0.0 },
                    ],
                };
                out[(r - first) * n_tok + t] = dots[0];
                if pair {
                    out[(r + 1 - first) * n_tok + t] = dots[1];
                }
            }
        }
    }

    fn rmsnorm(&self, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
        let n = weight.len();
        let body = n / 4 * 4;
        for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            // The sum of squares stays the reference's sequential f64 sum (a different
            // order could move the scale by an ulp, and with it a greedy token); the
            // scaling is vectorized, in the reference's order of operations.
            let inv = scalar::rms_inv(xr, eps);
            let vi = f32x4_splat(inv);
            for i in (0..body).step_by(4) {
                let o = f32x4_mul(f32x4_mul(load_at(xr, i), vi), load_at(weight, i));
                // SAFETY: i + 4 <= body <= n = or.len().
                unsafe { v128_store(or.as_mut_ptr().add(i).cast(), o) };
            }
            for i in body..n {
                or[i] = xr[i] * inv * weight[i];
            }
        }
    }

    fn rope(&self, head: &mut [f32], cos: &[f64], sin: &[f64]) {
        let half = cos.len();
        let body = half / 2 * 2;
        // Two pairs at a time in f64, the reference's precision and order of operations.
        for i in (0..body).step_by(2) {
            // SAFETY: i + 2 <= half, and i + half + 2 <= 2 * half <= head.len().
            unsafe {
                let pa = head.as_mut_ptr().add(i);
                let pb = head.as_mut_ptr().add(i + half);
                let a = f64x2_promote_low_f32x4(v128_load64_zero(pa.cast()));
                let b = f64x2_promote_low_f32x4(v128_load64_zero(pb.cast()));
                let (c, s) = (load_at(cos, i), load_at(sin, i));
                let ra = f64x2_sub(f64x2_mul(a, c), f64x2_mul(b, s));
                let rb = f64x2_add(f64x2_mul(a, s), f64x2_mul(b, c));
                v128_store64_lane::<0>(f32x4_demote_f64x2_zero(ra), pa.cast());
                v128_store64_lane::<0>(f32x4_demote_f64x2_zero(rb), pb.cast());
            }
        }
        scalar::rope_apply_from(head, cos, sin, body);
    }

    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        // One lane per key, eight keys per pass: each lane sums its products in the
        // reference's order, so scores (and the greedy tokens after them) match the
        // scalar build and the GPU's to the bit; the keys' elements arrive in lanes
        // through 4×4 transposes.
        let d = q.len();
        let body = d / 4 * 4;
        let n = out.len();
        let mut j = 0;
        while j + 8 <= n {
            let mut acc = [f32x4_splat(0.0); 2];
            for i in (0..body).step_by(4) {
                let qv = [0, 1, 2, 3].map(|c| f32x4_splat(q[i + c]));
                for (g, a) in acc.iter_mut().enumerate() {
                    let rows = [0, 1, 2, 3].map(|r| load_at(keys, (j + 4 * g + r) * stride + i));
                    for (c, col) in transpose4(rows).into_iter().enumerate() {
                        *a = f32x4_add(*a, f32x4_mul(qv[c], col));
                    }
                }
            }
            let sums: [f32; 8] = core::array::from_fn(|l| {
                let lane = match l % 4 {
                    0 => f32x4_extract_lane::<0>(acc[l / 4]),
                    1 => f32x4_extract_lane::<1>(acc[l / 4]),
                    2 => f32x4_extract_lane::<2>(acc[l / 4]),
                    _ => f32x4_extract_lane::<3>(acc[l / 4]),
                };
                let k = &keys[(j + l) * stride..(j + l) * stride + d];
                (body..d).fold(lane, |s, i| s + q[i] * k[i])
            });
            for (o, sum) in out[j..j + 8].iter_mut().zip(sums) {
                *o = sum * scale;
            }
            j += 8;
        }
        let rest = &keys[(j * stride).min(keys.len())..];
        scalar::attn_scores(q, rest, stride, scale, &mut out[j..]);
    }

    fn attn_mix(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        let d = out.len();
        let body = d / 16 * 16;
        // Sixteen outputs stay in registers over all the values; each output still sums
        // its products in the reference's order, so the result is the same to the bit.
        for c in (0..body).step_by(16) {
            let mut acc = [f32x4_splat(0.0); 4];
            for (j, &p) in probs.iter().enumerate() {
                let (pv, v) = (f32x4_splat(p), &values[j * stride + c..j * stride + c + 16]);
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = f32x4_add(*a, f32x4_mul(pv, load_at(v, 4 * u)));
                }
            }
            for (u, a) in acc.into_iter().enumerate() {
                // SAFETY: c + 16 <= body <= d = out.len().
                unsafe { v128_store(out.as_mut_ptr().add(c + 4 * u).cast(), a) };
            }
        }
        scalar::attn_mix(probs, &values[body..], stride, &mut out[body..]);
    }
}

/// Tokens per block in a prompt's ternary matmul: eight tokens' activations of a
/// 2560-wide layer take 40 KiB as i16 (the plain build's form).
const PROMPT_TOKEN_BLOCK: usize = 8;

/// Rows two at a time, then an odd one: each first row, and whether its successor
/// comes with it. On the way it touches the rows a few pairs ahead in `data` (rows of
/// `row_bytes`, stored one after another), see [`touch`].
fn row_pairs(
    rows: Range<usize>,
    data: &[u8],
    row_bytes: usize,
) -> impl Iterator<Item = (usize, bool)> + '_ {
    let end = rows.end;
    let ahead = (4 * row_bytes).max(TOUCH_AHEAD_MIN);
    rows.step_by(2).map(move |r| {
        touch(data, r * row_bytes + ahead, 2 * row_bytes);
        (r, r + 1 < end)
    })
}

/// The least distance, in bytes, at which [`row_pairs`] touches weights ahead.
const TOUCH_AHEAD_MIN: usize = 4096;

/// Reads one byte of each 64-byte line of `data[from..from + len]` (as far as `data`
/// goes). Wasm has no prefetch instruction, and the hardware prefetcher stops at each
/// 4 KiB page, so the kernels used to stall on the first loads of every page; an early
/// load starts that cache miss and page walk while the kernel still works on earlier
/// rows. The sum goes through `black_box` so that neither LLVM nor V8 drops the loads.
#[inline(always)]
fn touch(data: &[u8], from: usize, len: usize) {
    let end = (from + len).min(data.len());
    let mut sum = 0u8;
    let mut i = from;
    while i < end {
        sum = sum.wrapping_add(data[i]);
        i += 64;
    }
    core::hint::black_box(sum);
}

/// Loads 16 bytes of `T`s at element `at`.
#[inline(always)]
fn load_at<T>(p: &[T], at: usize) -> v128 {
    debug_assert!((at * size_of::<T>()) + 16 <= size_of_val(p));
    // SAFETY: callers keep the 16 bytes inside `p`; v128_load needs no alignment.
    unsafe { v128_load(p.as_ptr().add(at).cast()) }
}

/// Vector constants kept in registers across a loop. V8 does not hoist a `v128.const`
/// out of a loop and rebuilds it from immediates each time it is used (about four
/// instructions); a value LLVM cannot see through stays in a local instead.
#[inline(always)]
fn loop_constants<const N: usize>(v: [v128; N]) -> [v128; N] {
    core::hint::black_box(v)
}

/// Σ code·q for one or two rows (`row1` empty for one) and `N` tokens over I2_S-layout
/// codes (relaxed build): `[row][token]`.
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
fn code_dot_tile<const N: usize>(row0: &[u8], row1: &[u8], q: [&[i8]; N]) -> [[i32; N]; 2] {
    let two = !row1.is_empty();
    let mut acc = [[[i32x4_splat(0); 4]; N]; 2];
    let [m1, m4, m16] = loop_constants([u8x16_splat(0x03), u8x16_splat(0x0c), u8x16_splat(0x30)]);
    for b in 0..row0.len() / i2s::BLOCK_BYTES {
        for h in 0..2 {
            let at = b * 128 + 16 * h;
            let qv: [[v128; 4]; N] =
                core::array::from_fn(|t| core::array::from_fn(|g| load_at(q[t], at + 32 * g)));
            for (r, codes) in [row0, row1].into_iter().enumerate() {
                if r == 1 && !two {
                    break;
                }
                let w = load_at(codes, b * i2s::BLOCK_BYTES + 16 * h);
                let g0 = v128_and(u16x8_shr(w, 6), m1);
                let (g1, g2, g3) = (v128_and(w, m16), v128_and(w, m4), v128_and(w, m1));
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

/// The activations of one token as i16, in the order [`code_dot_n`] reads them:
/// per 128-column block, per 16-byte half `h`, per shift `s` of the lane and per
/// mask `m`, the eight columns whose codes land in bits `m` after shifting by `s`.
#[cfg(not(target_feature = "relaxed-simd"))]
fn permute_i16(q: &[i8], out: &mut Vec<i16>) {
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
fn code_dot_tile<const N: usize>(row0: &[u8], row1: &[u8], q16: [&[i16]; N]) -> [[i32; N]; 2] {
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
struct Int8Acts<'a> {
    q: &'a [i8],
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
    fn new(q: &'a [i8]) -> Self {
        Int8Acts {
            q,
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
/// build: two `vpdpbusd`-able dot products per 16 weights (against the positive and
/// the negative part of q), in two interleaved sets of accumulators so that no
/// dependency chain waits on the one before.
#[inline(always)]
fn int8_dot_tile<const N: usize>(row0: &[u8], row1: &[u8], x: [&Int8Acts; N]) -> [[i32; N]; 2] {
    let cols = row0.len();
    let two = !row1.is_empty();
    let rows = [row0, row1];
    let mut acc = [[[i32x4_splat(0); 4]; N]; 2];
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
                    a[set] = i32x4_relaxed_dot_i8x16_i7x16_add(wv, xv[t][0], a[set]);
                    a[set + 1] = i32x4_relaxed_dot_i8x16_i7x16_add(wv, xv[t][1], a[set + 1]);
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
    let mut dots = [[0i32; N]; 2];
    for r in 0..if two { 2 } else { 1 } {
        for t in 0..N {
            let [a0, a1, a2, a3] = acc[r][t];
            #[cfg(target_feature = "relaxed-simd")]
            let v = i32x4_sub(i32x4_add(a0, a2), i32x4_add(a1, a3));
            #[cfg(not(target_feature = "relaxed-simd"))]
            let v = i32x4_add(i32x4_add(a0, a1), i32x4_add(a2, a3));
            let tail: i32 = (j..cols)
                .map(|c| rows[r][c] as i8 as i32 * x[t].q[c] as i32)
                .sum();
            dots[r][t] = hsum_i32(v) + tail;
        }
    }
    dots
}

/// Rows of a 4×4 block of f32 → its columns.
#[inline(always)]
fn transpose4([r0, r1, r2, r3]: [v128; 4]) -> [v128; 4] {
    let (t0, t1) = (
        i32x4_shuffle::<0, 4, 1, 5>(r0, r1),
        i32x4_shuffle::<2, 6, 3, 7>(r0, r1),
    );
    let (t2, t3) = (
        i32x4_shuffle::<0, 4, 1, 5>(r2, r3),
        i32x4_shuffle::<2, 6, 3, 7>(r2, r3),
    );
    [
        i32x4_shuffle::<0, 1, 4, 5>(t0, t2),
        i32x4_shuffle::<2, 3, 6, 7>(t0, t2),
        i32x4_shuffle::<0, 1, 4, 5>(t1, t3),
        i32x4_shuffle::<2, 3, 6, 7>(t1, t3),
    ]
}

#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
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
/// so callers check for them separately. `keep` is `u32x4_splat(0x8fff_e000)`.
#[inline(always)]
fn f16x8_to_f32_scaled(h: v128, keep: v128) -> (v128, v128) {
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

/// One or two rows (`w1` empty for one) of f16 weights · x, given `xs` = x · 2^112.
/// The fast conversion runs first; a row holding an infinity or NaN (seen by a
/// running max of the magnitudes) is redone exactly.
fn dot_f16_pair(w0: &[u8], w1: &[u8], xs: &[f32], x: &[f32]) -> [f32; 2] {
    let n = x.len();
    let body = n / 8 * 8;
    let rows = [w0, w1];
    let two = !w1.is_empty();
    let mut acc = [[f32x4_splat(0.0); 2]; 2];
    let mut mag_max = [u16x8_splat(0); 2];
    let [abs, keep] = loop_constants([u16x8_splat(0x7fff), u32x4_splat(0x8fff_e000)]);
    for i in (0..body).step_by(8) {
        let xv = [load_at(xs, i), load_at(xs, i + 4)];
        for r in 0..2 {
            if r == 1 && !two {
                break;
            }
            let h = load_at(rows[r], i * 2);
            mag_max[r] = u16x8_max(mag_max[r], v128_and(h, abs));
            let (lo, hi) = f16x8_to_f32_scaled(h, keep);
            acc[r][0] = madd(lo, xv[0], acc[r][0]);
            acc[r][1] = madd(hi, xv[1], acc[r][1]);
        }
    }
    let mut dots = [0f32; 2];
    for r in 0..if two { 2 } else { 1 } {
        let w = rows[r];
        dots[r] = if u16x8_all_true(u16x8_lt(mag_max[r], u16x8_splat(0x7c00))) {
            let mut sum = hsum_f32(f32x4_add(acc[r][0], acc[r][1]));
            for i in body..n {
                sum += half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32() * x[i];
            }
            sum
        } else {
            dot_f16_exact(w, x)
        };
    }
    dots
}

fn dot_f16_exact(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let mut acc = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for k in 0..2 {
            let (lo, hi) = f16x8_to_f32(load_at(w, (i + 8 * k) * 2));
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
    let mut sum = hsum_f32(f32x4_add(
        f32x4_add(acc[0], acc[1]),
        f32x4_add(acc[2], acc[3]),
    ));
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
        let mut sum = hsum_i32(vsum);
        for k in chunks * 16..cols {
            q[k] = scalar::quantize_one(row[k], s);
            sum += q[k] as i32;
        }
        out.inv_scale[t] = max / 127.0;
        out.sum[t] = sum;
    }
}
