//! WebAssembly SIMD128 kernels (compiled in with `-C target-feature=+simd128`), and
//! the relaxed-SIMD variant (`+relaxed-simd`). Feature detection happens in
//! JavaScript, which picks the matching `.wasm` build.
//!
//! Ternary dot: codes are t+1 ∈ {0,1,2}, so Σ t·q = Σ code·q − Σq. Fields are cut
//! out with 16-bit shifts (x86 has no byte shift: V8 emulates `i8x16.shr` with three
//! instructions). The plain build keeps eight codes per 16-bit lane and multiplies
//! them with `i32x4.dot_i16x8` against activations widened and permuted once per
//! call; the relaxed build uses a relaxed dot product on bytes (codes fit the 7-bit
//! operand), with 16- or 32-bit sums, whichever `choose_dot_sums` timed faster. The
//! f16 LM head converts with a sign extension, a shift and a mask, leaving a 2^-112
//! factor that is moved onto the activations.

use super::{scalar, Kernels, QuantActs};
use crate::formats::dense::DenseType;
use crate::formats::{DenseMatrix, TernaryMatrix, TernaryScale};
use core::arch::wasm32::*;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};

mod dots;
mod f16;
mod lanes;

use dots::*;
use f16::*;
use lanes::*;

/// How the relaxed build's integer matmuls (ternary, int8 and int4 heads) sum their
/// products; both ways give the same numbers, their speed depends on the machine (see
/// `choose_dot_sums`). The plain build has one way and ignores this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotSums {
    /// `i16x8.relaxed_dot_i8x16_i7x16`, widened every few blocks: `pmaddubsw` alone on
    /// x86, where V8 makes the 32-bit dot product five instructions unless the CPU has
    /// AVX-VNNI (AVX-512 VNNI does not count).
    Lanes16,
    /// `i32x4.relaxed_dot_i8x16_i7x16_add`: one `vpdpbusd` with AVX-VNNI, and the
    /// likely winner where the engine has a one-instruction dot product (Arm's `sdot`).
    Lanes32,
}

/// This instance's choice; [`DotSums::Lanes16`] until `choose_dot_sums` runs
/// (it won here: 16-bit sums were 15% faster at decode and 44% at prefill, x86 without
/// AVX-VNNI).
static SUMS: AtomicU8 = AtomicU8::new(0);

fn chosen_sums() -> DotSums {
    if SUMS.load(Ordering::Relaxed) == 1 {
        DotSums::Lanes32
    } else {
        DotSums::Lanes16
    }
}

/// Times both ways of summing on a small matrix (64 rows of 2560, in cache) with `now`
/// (milliseconds, e.g. `performance.now`), and makes the faster one this instance's from
/// here on; returns it. The two run in alternating batches, so a busy moment slows both:
/// for `budget_ms` untimed (V8 first runs a function in its baseline compiler, whose
/// ranking can differ, and optimizes it in the background), then for twice that timed.
#[cfg(target_feature = "relaxed-simd")]
pub fn choose_dot_sums(now: &dyn Fn() -> f64, budget_ms: f64) -> DotSums {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let w = super::selftest::random_ternary(&mut rng, 64, 2560);
    let x: Vec<f32> = (0..2560).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
    let mut acts = QuantActs::default();
    quantize(&x, 2560, &mut acts);
    let mut out = vec![0f32; 64];
    let ways = [DotSums::Lanes16, DotSums::Lanes32].map(|sums| Simd128 { sums });
    let mut batch = |k: &Simd128| {
        let start = now();
        for _ in 0..8 {
            k.ternary_rows(&w, &acts, 0..64, &mut out);
        }
        now() - start
    };
    let mut spent = [0f64; 2];
    for (timed, phase_ms) in [(false, budget_ms), (true, 2.0 * budget_ms)] {
        let (start, mut batches) = (now(), 0);
        // A clock that stands still (or a coarse one) must not keep the load waiting.
        while batches < 4 || (batches < MAX_BATCHES && now() - start < phase_ms) {
            for (k, t) in ways.iter().zip(&mut spent) {
                let ms = batch(k);
                if timed {
                    *t += ms;
                }
            }
            batches += 1;
        }
    }
    let pick = if spent[1] < spent[0] {
        DotSums::Lanes32
    } else {
        DotSums::Lanes16
    };
    SUMS.store((pick == DotSums::Lanes32) as u8, Ordering::Relaxed);
    pick
}

/// The most batches of each way [`choose_dot_sums`] runs in a phase (about 70 ms here).
#[cfg(target_feature = "relaxed-simd")]
const MAX_BATCHES: usize = 256;

pub struct Simd128 {
    pub sums: DotSums,
}

impl Simd128 {
    /// The kernels with this instance's way of summing.
    pub fn chosen() -> Simd128 {
        Simd128 {
            sums: chosen_sums(),
        }
    }
}

impl Kernels for Simd128 {
    fn name(&self) -> &'static str {
        match (cfg!(target_feature = "relaxed-simd"), self.sums) {
            (true, DotSums::Lanes16) => "wasm-relaxed-simd, 16-bit sums",
            (true, DotSums::Lanes32) => "wasm-relaxed-simd, 32-bit sums",
            (false, _) => "wasm-simd128",
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
                let [[d0], [d1]] = code_dot_tile(self.sums, w.row_codes(r), second, [qs[0]]);
                put(r, 0, d0);
                if pair {
                    put(r + 1, 0, d1);
                }
            }
            return;
        }
        // A prompt: tokens go several at a time (four with 16-bit sums, else two: the
        // plain build's widened activations and the 32-bit sums' four accumulators per
        // token take more registers), each code vector cut out once serving all; a
        // block of tokens meets every row before the next block starts, so that the
        // block's activations stay in the L1 cache (a long prompt's do not fit).
        for block in (0..n_tok).step_by(PROMPT_TOKEN_BLOCK) {
            let end = (block + PROMPT_TOKEN_BLOCK).min(n_tok);
            for r in rows.clone() {
                let codes = w.row_codes(r);
                let mut t = block;
                #[cfg(target_feature = "relaxed-simd")]
                while self.sums == DotSums::Lanes16 && t + 4 <= end {
                    let four = [qs[t], qs[t + 1], qs[t + 2], qs[t + 3]];
                    for (k, dot) in code_dot_tokens_16(codes, four).into_iter().enumerate() {
                        put(r, t + k, dot);
                    }
                    t += 4;
                }
                while t + 1 < end {
                    let [[d0, d1], _] = code_dot_tile(self.sums, codes, &[], [qs[t], qs[t + 1]]);
                    put(r, t, d0);
                    put(r, t + 1, d1);
                    t += 2;
                }
                if t < end {
                    put(r, t, code_dot_tile(self.sums, codes, &[], [qs[t]])[0][0]);
                }
            }
        }
    }

    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let s = self.sums;
        quantized_rows(
            w,
            a,
            rows,
            out,
            |r0, r1, x| int8_dot_tile::<2>(s, r0, r1, x),
            |r0, r1, x| int8_dot_tile::<1>(s, r0, r1, x),
        );
    }

    fn int4_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let s = self.sums;
        quantized_rows(
            w,
            a,
            rows,
            out,
            |r0, r1, x| int4_dot_tile::<2>(s, r0, r1, x),
            |r0, r1, x| int4_dot_tile::<1>(s, r0, r1, x),
        );
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
        let j = scores_in_lanes(q, keys, stride, scale, out, load_at, |k| k);
        let rest = &keys[(j * stride).min(keys.len())..];
        scalar::attn_scores(q, rest, stride, scale, &mut out[j..]);
    }

    fn attn_mix(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        let load16 =
            |v: &[f32], at: usize| [0, 1, 2, 3].map(|u| load_at(&v[..at + 16], at + 4 * u));
        let body = mix_in_registers(probs, values, stride, out, load16);
        scalar::attn_mix(probs, &values[body..], stride, &mut out[body..]);
    }

    fn attn_scores_f16(&self, q: &[f32], keys: &[u16], stride: usize, scale: f32, out: &mut [f32]) {
        // Each group of four key elements is widened from f16 as it is loaded (exactly).
        let widen = |h: u16| half::f16::from_bits(h).to_f32();
        let j = scores_in_lanes(q, keys, stride, scale, out, f16x4_at, widen);
        let rest = &keys[(j * stride).min(keys.len())..];
        scalar::attn_scores_f16(q, rest, stride, scale, &mut out[j..]);
    }

    fn attn_mix_f16(&self, probs: &[f32], values: &[u16], stride: usize, out: &mut [f32]) {
        let load16 = |v: &[u16], at: usize| {
            let (v0, v1) = f16x8_to_f32(load_at(&v[..at + 16], at));
            let (v2, v3) = f16x8_to_f32(load_at(&v[..at + 16], at + 8));
            [v0, v1, v2, v3]
        };
        let body = mix_in_registers(probs, values, stride, out, load16);
        scalar::attn_mix_f16(probs, &values[body..], stride, &mut out[body..]);
    }
}

/// Attention scores of one query head over keys stored as `T` (f32, or f16 bits), for
/// every whole group of eight keys; returns where the scalar reference takes over. One
/// lane per key, eight keys per pass: each lane sums its products in the reference's
/// order, so scores (and the greedy tokens after them) match the scalar build and the
/// GPU's to the bit; the keys' elements arrive in lanes through 4×4 transposes. `load4`
/// reads four elements at an index as f32x4, `widen` one.
#[inline(always)]
fn scores_in_lanes<T: Copy>(
    q: &[f32],
    keys: &[T],
    stride: usize,
    scale: f32,
    out: &mut [f32],
    load4: impl Fn(&[T], usize) -> v128,
    widen: impl Fn(T) -> f32,
) -> usize {
    let d = q.len();
    let body = d / 4 * 4;
    let n = out.len();
    let mut j = 0;
    while j + 8 <= n {
        let mut acc = [f32x4_splat(0.0); 2];
        for i in (0..body).step_by(4) {
            let qv = [0, 1, 2, 3].map(|c| f32x4_splat(q[i + c]));
            for (g, a) in acc.iter_mut().enumerate() {
                let rows = [0, 1, 2, 3].map(|r| load4(keys, (j + 4 * g + r) * stride + i));
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
            (body..d).fold(lane, |s, i| s + q[i] * widen(k[i]))
        });
        for (o, sum) in out[j..j + 8].iter_mut().zip(sums) {
            *o = sum * scale;
        }
        j += 8;
    }
    j
}

/// The attention-weighted sum over values stored as `T`, for every whole group of 16
/// outputs; returns where the scalar reference takes over. Sixteen outputs stay in
/// registers over all the values; each output still sums its products in the
/// reference's order, so the result is the same to the bit. `load16` reads the 16
/// values at an index as four f32x4.
#[inline(always)]
fn mix_in_registers<T>(
    probs: &[f32],
    values: &[T],
    stride: usize,
    out: &mut [f32],
    load16: impl Fn(&[T], usize) -> [v128; 4],
) -> usize {
    let body = out.len() / 16 * 16;
    for c in (0..body).step_by(16) {
        let mut acc = [f32x4_splat(0.0); 4];
        for (j, &p) in probs.iter().enumerate() {
            let pv = f32x4_splat(p);
            for (a, v) in acc.iter_mut().zip(load16(values, j * stride + c)) {
                *a = f32x4_add(*a, f32x4_mul(pv, v));
            }
        }
        for (u, a) in acc.into_iter().enumerate() {
            // SAFETY: c + 16 <= body <= out.len().
            unsafe { v128_store(out.as_mut_ptr().add(c + 4 * u).cast(), a) };
        }
    }
    body
}

/// Tokens per block in a prompt's ternary matmul: eight tokens' activations of a
/// 2560-wide layer take 40 KiB as i16 (the plain build's form).
const PROMPT_TOKEN_BLOCK: usize = 8;

/// Rows two at a time, then an odd one: each first row, and whether its successor
/// comes with it. On the way it touches the rows a few pairs ahead in `data` (rows of
/// `row_bytes`, stored one after another), see [`touch`].
/// The int8 and int4 heads: `tile2` / `tile1` give Σ w·q for one or two rows and two /
/// one tokens. Rows two at a time (one activation load serves both), tokens two at a
/// time (one weight load serves both).
fn quantized_rows(
    w: &DenseMatrix,
    a: &QuantActs,
    rows: Range<usize>,
    out: &mut [f32],
    tile2: impl Fn(&[u8], &[u8], [&Int8Acts; 2]) -> [[i32; 2]; 2],
    tile1: impl Fn(&[u8], &[u8], [&Int8Acts; 1]) -> [[i32; 1]; 2],
) {
    let n_tok = a.n_tok;
    let acts: Vec<Int8Acts> = (0..n_tok).map(|t| Int8Acts::new(a.token(t))).collect();
    let first = rows.start;
    let mut put = |r: usize, t: usize, dot: i32| {
        out[(r - first) * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
    };
    for (r, pair) in row_pairs(rows, &w.data, w.ty.row_len(w.cols)) {
        let w0 = w.row_bytes(r);
        let w1 = if pair { w.row_bytes(r + 1) } else { &[] };
        let mut t = 0;
        while t < n_tok {
            if t + 1 < n_tok {
                let [[d00, d01], [d10, d11]] = tile2(w0, w1, [&acts[t], &acts[t + 1]]);
                put(r, t, d00);
                put(r, t + 1, d01);
                if pair {
                    put(r + 1, t, d10);
                    put(r + 1, t + 1, d11);
                }
                t += 2;
            } else {
                let [[d0], [d1]] = tile1(w0, w1, [&acts[t]]);
                put(r, t, d0);
                if pair {
                    put(r + 1, t, d1);
                }
                t += 1;
            }
        }
    }
}

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
/// 4 KiB page, so without help the kernels stall on the first loads of every page; an early
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
