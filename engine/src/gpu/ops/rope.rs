//! NeoX RoPE from a precomputed (cos, sin) table, on Q (rows from 0) or on the K rows
//! just written to the cache (rows from `p0`).

use super::{bindings, params, per_element};

pub(in crate::gpu) const WGSL: &str = include_str!("rope.wgsl");

params! {
    /// NeoX RoPE from the position table, on Q (rows from 0) or K (rows from p0).
    RopeParams in [("rope", WGSL)] { n_heads: u32, head_dim: u32, n_rot: u32, at_p0: u32 }
}

bindings! {
    Rope { step: Uniform, p: Uniform, table: Read, x: ReadWrite }
}

/// One thread per rotated pair: `n` tokens × `heads` × `n_rot / 2`.
pub(in crate::gpu) fn workgroups(n: usize, heads: usize, n_rot: usize) -> usize {
    per_element(n, heads * (n_rot / 2))
}
