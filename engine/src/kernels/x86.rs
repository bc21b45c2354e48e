//! x86-64 kernels (AVX2 + FMA + F16C, and AVX-512 where present), chosen at run
//! time by CPU feature detection. Ternary matmul decodes each 32-byte block of
//! 2-bit codes once and multiplies it with up to four tokens (prefill shares the
//! decode work); `maddubs` takes the unsigned codes (t+1) times signed int8
//! activations, and Σq per token turns Σ code·q back into Σ t·q.

// SIMD lanes, rows and tokens are addressed by index on purpose: it mirrors the data layout.
#![allow(clippy::needless_range_loop)]

use super::{scalar, Kernels, QuantActs};
use crate::formats::dense::{i4_value, DenseType, I4_BLOCK};
use crate::formats::{i2s, DenseMatrix, TernaryMatrix, TernaryScale};
use std::arch::x86_64::*;
use std::ops::Range;

/// Software prefetch distance in bytes for weights streamed from memory.
const PREFETCH_AHEAD: usize = 2048;

pub fn detect() -> Option<Box<dyn Kernels>> {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    if !avx2 {
        return None;
    }
    Some(Box::new(Avx2 {
        avx512: is_x86_feature_detected!("avx512f"),
        vnni512: is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni"),
    }))
}

pub struct Avx2 {
    /// Use 512-bit F16→F32 conversion for the dense LM head.
    avx512: bool,
    /// Use AVX-512 VNNI (`vpdpbusd`) for ternary matmul.
    vnni512: bool,
}

impl Kernels for Avx2 {
    fn name(&self) -> &'static str {
        match (self.vnni512, self.avx512) {
            (true, _) => "avx512-vnni",
            (false, true) => "avx2+avx512f",
            _ => "avx2",
        }
    }

    fn quantize_acts(&self, x: &[f32], cols: usize, out: &mut QuantActs) {
        // SAFETY: constructed only when AVX2/FMA/F16C were detected.
        unsafe { quantize_avx2(x, cols, out) }
    }

    fn ternary_rows(&self, w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let TernaryScale::PerTensor(scale) = w.scale else {
            // Per-block scales only come from unusual TQ files: the reference handles them.
            return scalar::ternary_rows(w, a, rows, out);
        };
        if self.vnni512 {
            // SAFETY: AVX-512 F/BW/VL/VNNI detected.
            return unsafe { vnni::ternary_rows(w, scale, a, rows, out) };
        }
        let n_tok = a.n_tok;
        for (i, r) in rows.enumerate() {
            let codes = w.row_codes(r);
            let o = &mut out[i * n_tok..(i + 1) * n_tok];
            let mut t = 0;
            while t < n_tok {
                let n = (n_tok - t).min(4);
                let mut dots = [0i32; 4];
                // SAFETY: AVX2 detected; slices are whole blocks (cols % 128 == 0).
                unsafe {
                    match n {
                        4 => code_dot_n::<4>(codes, a, t, &mut dots),
                        3 => code_dot_n::<3>(codes, a, t, &mut dots),
                        2 => code_dot_n::<2>(codes, a, t, &mut dots),
                        _ => code_dot_n::<1>(codes, a, t, &mut dots),
                    }
                }
                for k in 0..n {
                    o[t + k] = (dots[k] - a.sum[t + k]) as f32 * scale * a.inv_scale[t + k];
                }
                t += n;
            }
        }
    }

    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        if !self.vnni512 {
            return scalar::int8_rows(w, a, rows, out);
        }
        // SAFETY: AVX-512 F/BW/VL/VNNI detected.
        unsafe { vnni::int8_rows(w, a, rows, out) }
    }

    fn int4_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        if !self.vnni512 {
            return scalar::int4_rows(w, a, rows, out);
        }
        // SAFETY: AVX-512 F/BW/VL/VNNI detected.
        unsafe { vnni::int4_rows(w, a, rows, out) }
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
        if self.avx512 && n_tok == 1 {
            // Four rows at a time share each load of x.
            let mut r = rows.start;
            while r + 4 <= rows.end {
                let i = r - rows.start;
                // SAFETY: AVX-512F detected.
                unsafe { dot4_f16_avx512(w, r, x, &mut out[i..i + 4]) };
                r += 4;
            }
            for r in r..rows.end {
                out[r - rows.start] = unsafe { dot_f16_avx512(w.row_bytes(r), x) };
            }
            return;
        }
        for (i, r) in rows.enumerate() {
            let wb = w.row_bytes(r);
            for t in 0..n_tok {
                let xr = &x[t * cols..(t + 1) * cols];
                // SAFETY: features detected at construction.
                out[i * n_tok + t] = unsafe {
                    if self.avx512 {
                        dot_f16_avx512(wb, xr)
                    } else {
                        dot_f16_avx2(wb, xr)
                    }
                };
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(x: &[f32], cols: usize, out: &mut QuantActs) {
    let n_tok = out.reset(x.len(), cols);
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for t in 0..n_tok {
        let row = &x[t * cols..(t + 1) * cols];
        let mut vmax = _mm256_setzero_ps();
        let chunks = cols / 8;
        for c in 0..chunks {
            let v = _mm256_loadu_ps(row.as_ptr().add(c * 8));
            vmax = _mm256_max_ps(vmax, _mm256_and_ps(v, abs_mask));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
        let mut max = lanes.iter().fold(0f32, |m, &v| m.max(v));
        for &v in &row[chunks * 8..] {
            max = max.max(v.abs());
        }
        if max == 0.0 || !max.is_finite() {
            out.zero_token(t);
            continue;
        }
        let q = &mut out.q[t * cols..(t + 1) * cols];
        let s = 127.0 / max;
        let vs = _mm256_set1_ps(s);
        let mut vsum = _mm256_setzero_si256();
        for c in 0..chunks {
            let v = _mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(c * 8)), vs);
            // Round half to even, like the reference (and numpy).
            let r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            let r = _mm256_min_ps(
                _mm256_max_ps(r, _mm256_set1_ps(-128.0)),
                _mm256_set1_ps(127.0),
            );
            let qi = _mm256_cvtps_epi32(r);
            vsum = _mm256_add_epi32(vsum, qi);
            let mut tmp = [0i32; 8];
            _mm256_storeu_si256(tmp.as_mut_ptr().cast(), qi);
            for k in 0..8 {
                q[c * 8 + k] = tmp[k] as i8;
            }
        }
        let mut sums = [0i32; 8];
        _mm256_storeu_si256(sums.as_mut_ptr().cast(), vsum);
        let mut sum: i32 = sums.iter().sum();
        for (k, &v) in row.iter().enumerate().skip(chunks * 8) {
            q[k] = scalar::quantize_one(v, s);
            sum += q[k] as i32;
        }
        out.inv_scale[t] = max / 127.0;
        out.sum[t] = sum;
    }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Σ code·q of one row against tokens t0..t0+N.
#[target_feature(enable = "avx2")]
unsafe fn code_dot_n<const N: usize>(codes: &[u8], a: &QuantActs, t0: usize, dots: &mut [i32; 4]) {
    let mask = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); N];
    let qs: [*const i8; N] = std::array::from_fn(|k| a.token(t0 + k).as_ptr());
    let n_blocks = codes.len() / i2s::BLOCK_BYTES;
    for b in 0..n_blocks {
        let w = _mm256_loadu_si256(codes.as_ptr().add(b * 32).cast());
        let c0 = _mm256_and_si256(_mm256_srli_epi16(w, 6), mask);
        let c1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
        let c2 = _mm256_and_si256(_mm256_srli_epi16(w, 2), mask);
        let c3 = _mm256_and_si256(w, mask);
        for k in 0..N {
            let q = qs[k].add(b * 128);
            let p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256(q.cast()));
            let p1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256(q.add(32).cast()));
            let p2 = _mm256_maddubs_epi16(c2, _mm256_loadu_si256(q.add(64).cast()));
            let p3 = _mm256_maddubs_epi16(c3, _mm256_loadu_si256(q.add(96).cast()));
            // |each i16 lane| ≤ 4 · 2·2·128: no saturation.
            let p = _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3));
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(p, ones));
        }
    }
    for k in 0..N {
        dots[k] = hsum_i32(acc[k]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let wp = w.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for k in 0..4 {
            let wv = _mm256_cvtph_ps(_mm_loadu_si128(wp.add((i + 8 * k) * 2).cast()));
            acc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i + 8 * k)), acc[k]);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut sum: f32 = lanes.iter().sum();
    while i < n {
        sum += half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32() * x[i];
        i += 1;
    }
    sum
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_f16_avx512(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let wp = w.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(i * 2 + PREFETCH_AHEAD).cast());
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(i * 2 + 64 + PREFETCH_AHEAD).cast());
        for k in 0..4 {
            let wv = _mm512_cvtph_ps(_mm256_loadu_si256(wp.add((i + 16 * k) * 2).cast()));
            acc[k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x.as_ptr().add(i + 16 * k)), acc[k]);
        }
        i += 64;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut sum = _mm512_reduce_add_ps(s);
    while i < n {
        sum += half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32() * x[i];
        i += 1;
    }
    sum
}

/// Σ of four F16 rows (r..r+4) with x.
#[target_feature(enable = "avx512f")]
unsafe fn dot4_f16_avx512(w: &DenseMatrix, r: usize, x: &[f32], out: &mut [f32]) {
    let n = x.len();
    let rows: [*const u8; 4] = std::array::from_fn(|k| w.row_bytes(r + k).as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i + 32 <= n {
        for row in rows {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(i * 2 + PREFETCH_AHEAD).cast());
        }
        let x0 = _mm512_loadu_ps(x.as_ptr().add(i));
        let x1 = _mm512_loadu_ps(x.as_ptr().add(i + 16));
        for k in 0..4 {
            let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(rows[k].add(i * 2).cast()));
            let w1 = _mm512_cvtph_ps(_mm256_loadu_si256(rows[k].add(i * 2 + 32).cast()));
            acc[k][0] = _mm512_fmadd_ps(w0, x0, acc[k][0]);
            acc[k][1] = _mm512_fmadd_ps(w1, x1, acc[k][1]);
        }
        i += 32;
    }
    for k in 0..4 {
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[k][0], acc[k][1]));
        let row = w.row_bytes(r + k);
        for j in i..n {
            sum += half::f16::from_le_bytes([row[2 * j], row[2 * j + 1]]).to_f32() * x[j];
        }
        out[k] = sum;
    }
}

/// AVX-512 VNNI ternary matmul. One 64-byte load holds two 128-blocks; shifting
/// and masking gives, per 2-bit field g, elements 32g..32g+32 of both blocks, so
/// the activations are first permuted to match (once per call, a few KB).
mod vnni {
    use super::*;

    /// Activations of one token reordered per 256-value pair of blocks:
    /// [A0 B0 A1 B1 A2 B2 A3 B3], A/B = the two blocks, 0..3 = 32-value groups.
    fn permute(q: &[i8], out: &mut Vec<i8>) {
        out.clear();
        let pairs = q.len() / 256;
        for p in 0..pairs {
            let base = p * 256;
            for g in 0..4 {
                out.extend_from_slice(&q[base + 32 * g..base + 32 * g + 32]);
                out.extend_from_slice(&q[base + 128 + 32 * g..base + 128 + 32 * g + 32]);
            }
        }
        out.extend_from_slice(&q[pairs * 256..]);
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn ternary_rows(
        w: &TernaryMatrix,
        scale: f32,
        a: &QuantActs,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        let n_tok = a.n_tok;
        let mut perm = Vec::with_capacity(a.q.len());
        let mut one = Vec::with_capacity(a.cols);
        for t in 0..n_tok {
            permute(a.token(t), &mut one);
            perm.extend_from_slice(&one);
        }
        let cols = a.cols;
        for (i, r) in rows.enumerate() {
            let codes = w.row_codes(r);
            let o = &mut out[i * n_tok..(i + 1) * n_tok];
            let mut t = 0;
            while t < n_tok {
                let n = (n_tok - t).min(8);
                let mut dots = [0i32; 8];
                let base = perm.as_ptr().add(t * cols);
                match n {
                    8 => dot_many::<8>(codes, base, cols, &mut dots),
                    n if n >= 4 => {
                        dot_many::<4>(codes, base, cols, &mut dots);
                        for k in 4..n {
                            dots[k] = dot_one(codes, base.add(k * cols));
                        }
                    }
                    _ => {
                        for k in 0..n {
                            dots[k] = dot_one(codes, base.add(k * cols));
                        }
                    }
                }
                for k in 0..n {
                    o[t + k] = (dots[k] - a.sum[t + k]) as f32 * scale * a.inv_scale[t + k];
                }
                t += n;
            }
        }
    }

    /// int8 × int8 via `vpdpbusd` (unsigned × signed): the activations are offset by
    /// +128 to make them unsigned and 128·Σw is taken back out.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn int8_rows(w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let (n_tok, cols) = (a.n_tok, a.cols);
        let xu: Vec<u8> = a.q.iter().map(|&q| (q as i16 + 128) as u8).collect();
        let body = cols / 256 * 256;
        for (i, r) in rows.enumerate() {
            let wr = w.row_bytes(r);
            for t in 0..n_tok {
                let x = &xu[t * cols..(t + 1) * cols];
                let mut acc = [_mm512_setzero_si512(); 4];
                let mut j = 0;
                while j < body {
                    _mm_prefetch::<_MM_HINT_T0>(
                        wr.as_ptr().wrapping_add(j + PREFETCH_AHEAD).cast(),
                    );
                    for k in 0..4 {
                        let xv = _mm512_loadu_si512(x.as_ptr().add(j + 64 * k).cast());
                        let wv = _mm512_loadu_si512(wr.as_ptr().add(j + 64 * k).cast());
                        acc[k] = _mm512_dpbusd_epi32(acc[k], xv, wv);
                    }
                    j += 256;
                }
                let s = _mm512_add_epi32(
                    _mm512_add_epi32(acc[0], acc[1]),
                    _mm512_add_epi32(acc[2], acc[3]),
                );
                let mut dot = _mm512_reduce_add_epi32(s);
                for c in body..cols {
                    dot += x[c] as i32 * wr[c] as i8 as i32;
                }
                dot -= 128 * w.row_sums[r];
                out[i * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
            }
        }
    }

    /// int4 × int8 via `vpdpbusd`: the nibbles (q+8, unsigned) are the unsigned operand
    /// as they are, the activations the signed one, and 8·Σq is taken back out. A block's
    /// 64 bytes give its 128 weights: low nibbles for columns 0..64, high for 64..128.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn int4_rows(w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        let (n_tok, cols) = (a.n_tok, a.cols);
        let blocks = cols / I4_BLOCK;
        let body = blocks * I4_BLOCK;
        // Σq over the whole blocks, per token.
        let body_sum: Vec<i32> = (0..n_tok)
            .map(|t| a.token(t)[..body].iter().map(|&q| q as i32).sum())
            .collect();
        let nibble = _mm512_set1_epi8(0x0F);
        for (i, r) in rows.enumerate() {
            let wr = w.row_bytes(r);
            for t in 0..n_tok {
                let x = a.token(t);
                let mut acc = [_mm512_setzero_si512(); 2];
                for b in 0..blocks {
                    _mm_prefetch::<_MM_HINT_T0>(
                        wr.as_ptr().wrapping_add(b * 64 + PREFETCH_AHEAD).cast(),
                    );
                    let v = _mm512_loadu_si512(wr.as_ptr().add(b * 64).cast());
                    let lo = _mm512_and_si512(v, nibble);
                    let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
                    let xp = x.as_ptr().add(b * I4_BLOCK);
                    acc[0] = _mm512_dpbusd_epi32(acc[0], lo, _mm512_loadu_si512(xp.cast()));
                    acc[1] = _mm512_dpbusd_epi32(acc[1], hi, _mm512_loadu_si512(xp.add(64).cast()));
                }
                let mut dot = _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]));
                dot -= 8 * body_sum[t];
                for c in body..cols {
                    dot += x[c] as i32 * i4_value(wr, c) as i32;
                }
                out[i * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fields(w: __m512i) -> [__m512i; 4] {
        let mask = _mm512_set1_epi8(3);
        [
            _mm512_and_si512(_mm512_srli_epi16(w, 6), mask),
            _mm512_and_si512(_mm512_srli_epi16(w, 4), mask),
            _mm512_and_si512(_mm512_srli_epi16(w, 2), mask),
            _mm512_and_si512(w, mask),
        ]
    }

    /// The odd last 128-block (activations kept in natural order there).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tail_block(codes: *const u8, q: *const i8) -> i32 {
        let mask = _mm256_set1_epi8(3);
        let w = _mm256_loadu_si256(codes.cast());
        let mut acc = _mm256_setzero_si256();
        for (g, sh) in [6, 4, 2, 0].into_iter().enumerate() {
            let c = _mm256_and_si256(_mm256_srl_epi16(w, _mm_cvtsi32_si128(sh)), mask);
            acc = _mm256_dpbusd_epi32(acc, c, _mm256_loadu_si256(q.add(32 * g).cast()));
        }
        hsum_i32(acc)
    }

    /// One token: four independent accumulators hide `vpdpbusd` latency.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_one(codes: &[u8], q: *const i8) -> i32 {
        let pairs = codes.len() / 64;
        let mut acc = [_mm512_setzero_si512(); 4];
        for p in 0..pairs {
            // Streaming from DRAM through 4 KiB pages: ask for the bytes ahead ourselves.
            _mm_prefetch::<_MM_HINT_T0>(
                codes.as_ptr().wrapping_add(p * 64 + PREFETCH_AHEAD).cast(),
            );
            let c = fields(_mm512_loadu_si512(codes.as_ptr().add(p * 64).cast()));
            let qp = q.add(p * 256);
            for g in 0..4 {
                acc[g] =
                    _mm512_dpbusd_epi32(acc[g], c[g], _mm512_loadu_si512(qp.add(64 * g).cast()));
            }
        }
        let s = _mm512_add_epi32(
            _mm512_add_epi32(acc[0], acc[1]),
            _mm512_add_epi32(acc[2], acc[3]),
        );
        let mut total = _mm512_reduce_add_epi32(s);
        if !codes.len().is_multiple_of(64) {
            total += tail_block(codes.as_ptr().add(pairs * 64), q.add(pairs * 256));
        }
        total
    }

    /// N tokens (stride `cols`) share each decoded block of codes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_many<const N: usize>(
        codes: &[u8],
        q: *const i8,
        cols: usize,
        dots: &mut [i32; 8],
    ) {
        let pairs = codes.len() / 64;
        let mut acc = [_mm512_setzero_si512(); N];
        for p in 0..pairs {
            let c = fields(_mm512_loadu_si512(codes.as_ptr().add(p * 64).cast()));
            for k in 0..N {
                let qp = q.add(k * cols + p * 256);
                let mut a = acc[k];
                for g in 0..4 {
                    a = _mm512_dpbusd_epi32(a, c[g], _mm512_loadu_si512(qp.add(64 * g).cast()));
                }
                acc[k] = a;
            }
        }
        for k in 0..N {
            dots[k] = _mm512_reduce_add_epi32(acc[k]);
            if !codes.len().is_multiple_of(64) {
                dots[k] += tail_block(
                    codes.as_ptr().add(pairs * 64),
                    q.add(k * cols + pairs * 256),
                );
            }
        }
    }
}
