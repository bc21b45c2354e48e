//! Token embedding: each token's row of one chunk of the table (f32, f16, or int8 with
//! row scales), written to the residual stream `x`.

use super::{bindings, params, per_element};

pub(in crate::gpu) const WGSL: &str = include_str!("embed.wgsl");

params! {
    /// Token embedding rows (f32, f16 or int8 with row scales) from one chunk of the table.
    EmbedParams in [("embed", WGSL)] { cols: u32, kind: u32, row_start: u32, row_count: u32 }
}

bindings! {
    Embed { step: Uniform, p: Uniform, tokens: Read, w: Read, row_scales: Read, x: ReadWrite }
}

/// Workgroups for `n` tokens of `cols` values.
pub(in crate::gpu) fn workgroups(n: usize, cols: usize) -> usize {
    per_element(n, cols)
}
