//! F32 / F16 / BF16 tensors: embeddings, norms, and the LM head.

use crate::error::{Error, Result};
use crate::gguf::{AlignedBuf, GgmlType, Tensor};
use half::{bf16, f16};

pub fn f32_values(bytes: &[u8], n: usize) -> Vec<f32> {
    bytes[..n * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

pub fn f16_values(bytes: &[u8], n: usize) -> Vec<f32> {
    bytes[..n * 2]
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

pub fn bf16_values(bytes: &[u8], n: usize) -> Vec<f32> {
    bytes[..n * 2]
        .chunks_exact(2)
        .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseType {
    F32,
    F16,
    BF16,
    /// int8 with one f32 scale per row: the optional small LM head.
    I8,
}

impl DenseType {
    pub fn bytes_per_value(self) -> usize {
        match self {
            DenseType::F32 => 4,
            DenseType::F16 | DenseType::BF16 => 2,
            DenseType::I8 => 1,
        }
    }
}

/// A row-major matrix of `rows` × `cols` floats in their file encoding.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    pub rows: usize,
    pub cols: usize,
    pub ty: DenseType,
    pub data: AlignedBuf,
    /// I8 only: per row, the scale (`max|w|/127`) and Σq (for unsigned×signed dot products).
    pub row_scales: Vec<f32>,
    pub row_sums: Vec<i32>,
}

impl DenseMatrix {
    pub fn from_tensor(t: Tensor) -> Result<DenseMatrix> {
        let ty = match t.info.ty {
            GgmlType::F32 => DenseType::F32,
            GgmlType::F16 => DenseType::F16,
            GgmlType::BF16 => DenseType::BF16,
            other => {
                return Err(Error::UnsupportedType {
                    name: t.info.name.clone(),
                    ty: format!("{other} (a float type is needed here)"),
                })
            }
        };
        let cols = t.info.dims[0] as usize;
        let rows = (t.info.n_elements() / t.info.dims[0]) as usize;
        Ok(DenseMatrix {
            rows,
            cols,
            ty,
            data: t.data,
            row_scales: Vec::new(),
            row_sums: Vec::new(),
        })
    }

    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> DenseMatrix {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        DenseMatrix {
            rows,
            cols,
            ty: DenseType::F32,
            data: AlignedBuf::from_slice(&bytes),
            row_scales: Vec::new(),
            row_sums: Vec::new(),
        }
    }

    pub fn from_f16(rows: usize, cols: usize, values: &[f32]) -> DenseMatrix {
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        DenseMatrix {
            rows,
            cols,
            ty: DenseType::F16,
            data: AlignedBuf::from_slice(&bytes),
            row_scales: Vec::new(),
            row_sums: Vec::new(),
        }
    }

    pub fn row_bytes(&self, r: usize) -> &[u8] {
        let w = self.cols * self.ty.bytes_per_value();
        &self.data[r * w..(r + 1) * w]
    }

    /// Row `r` as f32 (embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let b = self.row_bytes(r);
        match self.ty {
            DenseType::F32 => out.copy_from_slice(&f32_values(b, self.cols)),
            DenseType::F16 => {
                for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DenseType::BF16 => {
                for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DenseType::I8 => {
                let s = self.row_scales[r];
                for (o, &q) in out.iter_mut().zip(b) {
                    *o = q as i8 as f32 * s;
                }
            }
        }
    }

    /// Converts to int8 rows with per-row absmax scales, in place: row r's int8 bytes
    /// land at r·cols, never past where row r's float bytes began, so no second copy
    /// of the matrix is ever held.
    pub fn quantize_rows_int8(&mut self) {
        if self.ty == DenseType::I8 {
            return;
        }
        let (rows, cols) = (self.rows, self.cols);
        let mut row = vec![0f32; cols];
        let mut scales = Vec::with_capacity(rows);
        let mut sums = Vec::with_capacity(rows);
        for r in 0..rows {
            self.row_f32(r, &mut row);
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 && max.is_finite() {
                127.0 / max
            } else {
                0.0
            };
            let mut sum = 0i32;
            for (c, &v) in row.iter().enumerate() {
                let q = (v * s).round_ties_even().clamp(-127.0, 127.0) as i8;
                sum += q as i32;
                self.data[r * cols + c] = q as u8;
            }
            scales.push(if s > 0.0 { max / 127.0 } else { 0.0 });
            sums.push(sum);
        }
        self.data.truncate(rows * cols);
        self.ty = DenseType::I8;
        self.row_scales = scales;
        self.row_sums = sums;
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }
}
