//! The int8 LM head (per-row scales) times the int8 activations, in row chunks.

use super::{bindings, params};

pub(in crate::gpu) const WGSL: &str = include_str!("int8_matmul.wgsl");

params! {
    /// The int8 LM head (per-row scales) × int8 activations, in row chunks.
    Int8Params in [("int8_matmul", WGSL)] {
        rows: u32, cols: u32, out_stride: u32, row_offset: u32,
        last_only: u32, _a: u32, _b: u32, _c: u32,
    }
}

bindings! {
    Int8 { step: Uniform, p: Uniform, w: Read, row_scales: Read, q: Read, act_meta: Read, out: ReadWrite }
}

/// One workgroup per output row.
pub(in crate::gpu) fn workgroups(rows: usize) -> usize {
    rows
}
