//! Load-time repacking of CPU-layout weights into GPU-friendly words.

use crate::formats::dense::{bf16_values, DenseType};
use crate::formats::{i2s, DenseMatrix, TernaryMatrix, TernaryScale};

/// Ternary codes (t+1) 16 per u32 in element order: element 16w+j of a row in bits 2j..2j+1
/// of word w, so a shader reads one word and 16 contiguous activations.
pub fn ternary_words(m: &TernaryMatrix) -> Vec<u32> {
    let mut out = Vec::with_capacity(m.rows * m.cols / 16);
    for r in 0..m.rows {
        for blk in m.row_codes(r).chunks_exact(i2s::BLOCK_BYTES) {
            // I2_S: byte b holds elements b, 32+b, 64+b, 96+b in bits 7-6, 5-4, 3-2, 1-0,
            // so the 16 elements of word k come from 16 consecutive bytes at one shift.
            for k in 0..8 {
                let shift = 6 - 2 * (k / 2);
                let bytes = &blk[(k % 2) * 16..(k % 2) * 16 + 16];
                let mut w = 0u32;
                for (j, &b) in bytes.iter().enumerate() {
                    w |= (((b >> shift) & 3) as u32) << (2 * j);
                }
                out.push(w);
            }
        }
    }
    out
}

/// The scales buffer: one value for the tensor, or one per 128-block.
pub fn ternary_scales(m: &TernaryMatrix) -> (Vec<f32>, bool) {
    match &m.scale {
        TernaryScale::PerTensor(s) => (vec![*s], false),
        TernaryScale::PerBlock(v) => (v.clone(), true),
    }
}

/// How the shaders read a dense matrix's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseKind {
    F32,
    F16,
    I8,
}

impl DenseKind {
    pub fn bytes_per_value(self) -> usize {
        match self {
            DenseKind::F32 => 4,
            DenseKind::F16 => 2,
            DenseKind::I8 => 1,
        }
    }
    /// The `kind` code of embed.wgsl.
    pub fn code(self) -> u32 {
        match self {
            DenseKind::F32 => 0,
            DenseKind::F16 => 1,
            DenseKind::I8 => 2,
        }
    }
}

/// Rows `rows` of a dense matrix as shader words. F16, F32 and int8 are uploaded as they
/// are stored; BF16 (rare) is widened to F32.
pub fn dense_rows_bytes(m: &DenseMatrix, rows: std::ops::Range<usize>) -> (DenseKind, Vec<u8>) {
    let w = m.cols * m.ty.bytes_per_value();
    let bytes = &m.data[rows.start * w..rows.end * w];
    match m.ty {
        DenseType::F32 => (DenseKind::F32, bytes.to_vec()),
        DenseType::F16 => (DenseKind::F16, bytes.to_vec()),
        DenseType::I8 => (DenseKind::I8, bytes.to_vec()),
        DenseType::I4 => unreachable!("GpuBackend refuses an int4 head before packing"),
        DenseType::BF16 => (
            DenseKind::F32,
            bf16_values(bytes, rows.len() * m.cols)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    }
}

pub fn dense_kind(ty: DenseType) -> DenseKind {
    match ty {
        DenseType::F32 | DenseType::BF16 => DenseKind::F32,
        DenseType::F16 => DenseKind::F16,
        DenseType::I8 => DenseKind::I8,
        DenseType::I4 => unreachable!("GpuBackend refuses an int4 head before packing"),
    }
}

/// f32 values as bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// NeoX rotary (cos, sin) per position and pair, computed in f64 like the CPU reference.
pub fn rope_table(n_ctx: usize, n_rot: usize, theta: f32) -> Vec<f32> {
    let half = n_rot / 2;
    let mut out = Vec::with_capacity(n_ctx * half * 2);
    for pos in 0..n_ctx {
        for i in 0..half {
            let freq = (theta as f64).powf(-2.0 * i as f64 / n_rot as f64);
            let (sin, cos) = (pos as f64 * freq).sin_cos();
            out.push(cos as f32);
            out.push(sin as f32);
        }
    }
    out
}
