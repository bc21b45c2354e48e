//! Int8 activations back to f32 (times their scale), for a float checkpoint's layers.

use super::{bindings, per_element};

pub(in crate::gpu) const WGSL: &str = include_str!("dequant.wgsl");

bindings! {
    Dequant { step: Uniform, p: Uniform, q: Read, act_meta: Read, out: ReadWrite }
}

/// Workgroups for `n` tokens of `cols` values.
pub(in crate::gpu) fn workgroups(n: usize, cols: usize) -> usize {
    per_element(n, cols)
}
