//! The residual add: `x += o`, elementwise over a token's `cols` values.

use super::{bindings, per_element};

pub(in crate::gpu) const WGSL: &str = include_str!("add.wgsl");

bindings! {
    Add { step: Uniform, p: Uniform, o: Read, x: ReadWrite }
}

/// Workgroups for `n` tokens of `cols` values.
pub(in crate::gpu) fn workgroups(n: usize, cols: usize) -> usize {
    per_element(n, cols)
}
