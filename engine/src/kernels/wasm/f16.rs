//! The f16 LM head's dot products: f16 weights converted in registers, with a fast
//! path for finite rows and an exact one for rows holding infinities or NaNs.

use super::lanes::{hsum_f32, load_at, loop_constants, madd};
use core::arch::wasm32::*;

/// Eight f16 (as u16 lanes) → two f32x4. Exponent rebias by multiplication handles
/// normals and subnormals; infinities and NaNs are patched back in with a select.
#[inline(always)]
pub(super) fn f16x8_to_f32(h: v128) -> (v128, v128) {
    (
        f16_lanes_to_f32(u32x4_extend_low_u16x8(h)),
        f16_lanes_to_f32(u32x4_extend_high_u16x8(h)),
    )
}

/// Four f16 (zero-extended in u32 lanes) → f32x4, exactly (see [`f16x8_to_f32`]).
#[inline(always)]
fn f16_lanes_to_f32(u: v128) -> v128 {
    let sign = i32x4_shl(v128_and(u, u32x4_splat(0x8000)), 16);
    let mag = v128_and(u, u32x4_splat(0x7fff));
    let scaled = f32x4_mul(i32x4_shl(mag, 13), f32x4_splat(TWO_POW_112));
    let special = u32x4_ge(mag, u32x4_splat(0x7c00));
    let inf_nan = v128_or(i32x4_shl(mag, 13), u32x4_splat(0x7f80_0000));
    v128_or(sign, v128_bitselect(inf_nan, scaled, special))
}

/// The four f16 at `p[at..at + 4]` as f32x4, exactly.
#[inline(always)]
pub(super) fn f16x4_at(p: &[u16], at: usize) -> v128 {
    assert!(at + 4 <= p.len());
    // SAFETY: the 8 bytes read lie inside `p` (checked above); no alignment is needed.
    let h = unsafe { v128_load64_zero(p.as_ptr().add(at).cast()) };
    f16_lanes_to_f32(u32x4_extend_low_u16x8(h))
}

pub(super) const TWO_POW_112: f32 = f32::from_bits(0x7780_0000);

/// Eight finite f16 → two f32x4, each off by 2^-112 (the caller scales `x` up):
/// sign-extending the 16 bits puts the sign in bit 31, and a shift puts exponent and
/// mantissa where f32 keeps them; the exponent is then 112 short, which for
/// subnormals too is exactly a factor 2^-112. Infinities and NaNs come out wrong,
/// so callers check for them separately. `keep` is `u32x4_splat(0x8fff_e000)`.
#[inline(always)]
pub(super) fn f16x8_to_f32_scaled(h: v128, keep: v128) -> (v128, v128) {
    (
        v128_and(i32x4_shl(i32x4_extend_low_i16x8(h), 13), keep),
        v128_and(i32x4_shl(i32x4_extend_high_i16x8(h), 13), keep),
    )
}

/// One or two rows (`w1` empty for one) of f16 weights · x, given `xs` = x · 2^112.
/// The fast conversion runs first; a row holding an infinity or NaN (seen by a
/// running max of the magnitudes) is redone exactly.
pub(super) fn dot_f16_pair(w0: &[u8], w1: &[u8], xs: &[f32], x: &[f32]) -> [f32; 2] {
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

pub(super) fn dot_f16_exact(w: &[u8], x: &[f32]) -> f32 {
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
