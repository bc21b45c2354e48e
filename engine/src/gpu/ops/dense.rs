//! A float (f32 or f16-pair) matrix times f32 activations: a float checkpoint's linear
//! layers, and the F16 LM head in row chunks.

use super::{bindings, params};

pub(in crate::gpu) const WGSL: &str = include_str!("dense_matmul.wgsl");

params! {
    /// An f32 / f16 matrix × f32 activations; also the float LM head, in row chunks.
    DenseParams in [("dense_matmul", WGSL)] {
        rows: u32, cols: u32, f16: u32, out_stride: u32,
        row_offset: u32, last_only: u32, out_scale: f32, out_at_p0: u32,
    }
}

bindings! {
    Dense { step: Uniform, p: Uniform, w: Read, x: Read, out: ReadWrite }
}

/// One workgroup per output row.
pub(in crate::gpu) fn workgroups(rows: usize) -> usize {
    rows
}
