//! Small SIMD128 helpers the kernels share: loads, horizontal sums, a transpose, a
//! multiply-add that fuses where relaxed SIMD allows.

use core::arch::wasm32::*;

/// Loads 16 bytes of `T`s at element `at`.
#[inline(always)]
pub(super) fn load_at<T>(p: &[T], at: usize) -> v128 {
    debug_assert!((at * size_of::<T>()) + 16 <= size_of_val(p));
    // SAFETY: callers keep the 16 bytes inside `p`; v128_load needs no alignment.
    unsafe { v128_load(p.as_ptr().add(at).cast()) }
}

/// Vector constants kept in registers across a loop. V8 does not hoist a `v128.const`
/// out of a loop and rebuilds it from immediates each time it is used (about four
/// instructions); a value LLVM cannot see through stays in a local instead.
#[inline(always)]
pub(super) fn loop_constants<const N: usize>(v: [v128; N]) -> [v128; N] {
    core::hint::black_box(v)
}

/// Rows of a 4×4 block of f32 → its columns.
#[inline(always)]
pub(super) fn transpose4([r0, r1, r2, r3]: [v128; 4]) -> [v128; 4] {
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
pub(super) fn hsum_f32(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

#[inline(always)]
pub(super) fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

#[inline(always)]
pub(super) fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}
