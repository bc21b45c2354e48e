//! The one ternary layout every kernel reads: I2_S's 128-value blocks of 2-bit
//! codes (see [`super::i2s`]), row-major, plus scales.
//!
//! Load-time repacking (never more than one tensor's bytes extra at a time):
//! - I2_S: used as loaded, zero copy.
//! - TQ2_0: the same 2-bit codes with the field order within each byte reversed
//!   and an f16 scale per 256 values; rewritten in place (66 → 64 bytes/block).
//! - TQ1_0: base-3 packed; decoded block by block into a new 64-bytes/block buffer,
//!   after which the 54-bytes/block original is dropped.
//!
//! When every block scale of a tensor is equal (always so for BitNet checkpoints,
//! whose scale is per tensor) the scales collapse to one, which the fast kernels use.

use super::{i2s, tq1_0, tq2_0};
use crate::error::{Error, Result};
use crate::gguf::{AlignedBuf, GgmlType, Tensor};
use half::f16;

#[derive(Debug, Clone, PartialEq)]
pub enum TernaryScale {
    PerTensor(f32),
    /// One scale per 128-value block, row-major (`rows × cols/128`).
    PerBlock(Vec<f32>),
}

#[derive(Debug, Clone)]
pub struct TernaryMatrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows × cols/4` bytes of I2_S-layout codes (an I2_S tensor keeps its scale slot after them).
    pub codes: AlignedBuf,
    pub scale: TernaryScale,
}

impl TernaryMatrix {
    pub fn row_codes(&self, r: usize) -> &[u8] {
        let w = self.cols / 4;
        &self.codes[r * w..(r + 1) * w]
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / i2s::BLOCK
    }

    /// The scale of 128-block `b` of row `r`.
    #[inline]
    pub fn block_scale(&self, r: usize, b: usize) -> f32 {
        match &self.scale {
            TernaryScale::PerTensor(s) => *s,
            TernaryScale::PerBlock(v) => v[r * self.blocks_per_row() + b],
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.codes.len()
            + match &self.scale {
                TernaryScale::PerTensor(_) => 4,
                TernaryScale::PerBlock(v) => v.len() * 4,
            }
    }

    /// Multiplies every scale by `s` (folds a `.scale` tensor into the weights).
    pub fn scale_by(&mut self, s: f32) {
        match &mut self.scale {
            TernaryScale::PerTensor(x) => *x *= s,
            TernaryScale::PerBlock(v) => v.iter_mut().for_each(|x| *x *= s),
        }
    }

    /// All values as f32, row-major (for tests and the exact path's reference).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for (b, blk) in self.row_codes(r).chunks_exact(i2s::BLOCK_BYTES).enumerate() {
                let s = self.block_scale(r, b);
                for i in 0..i2s::BLOCK {
                    out.push((i2s::code_at(blk, i) as f32 - 1.0) * s);
                }
            }
        }
        out
    }

    /// Builds the kernel layout from a loaded 2-D ternary tensor, consuming it.
    pub fn from_tensor(t: Tensor) -> Result<TernaryMatrix> {
        let Tensor { info, mut data } = t;
        let cols = info.dims[0] as usize;
        let rows = (info.n_elements() / info.dims[0]) as usize;
        let n = rows * cols;
        if !cols.is_multiple_of(i2s::BLOCK) {
            return Err(Error::BadTensor {
                name: info.name,
                reason: format!("row length {cols} is not a multiple of 128"),
            });
        }
        match info.ty {
            GgmlType::I2S => {
                let s = i2s::scale(&data, n);
                if !s.is_finite() {
                    return Err(Error::BadTensor {
                        name: info.name,
                        reason: format!("its I2_S scale is {s}"),
                    });
                }
                Ok(TernaryMatrix {
                    rows,
                    cols,
                    codes: data,
                    scale: TernaryScale::PerTensor(s),
                })
            }
            GgmlType::TQ2_0 => {
                let mut scales = Vec::with_capacity(n / tq2_0::BLOCK);
                let mut blk = [0u8; tq2_0::BLOCK_BYTES];
                for i in 0..n / tq2_0::BLOCK {
                    // Output block i is at 64·i ≤ 66·i: copying the input first makes it safe in place.
                    blk.copy_from_slice(
                        &data[i * tq2_0::BLOCK_BYTES..(i + 1) * tq2_0::BLOCK_BYTES],
                    );
                    scales.push(f16::from_le_bytes([blk[64], blk[65]]).to_f32());
                    for (o, &b) in data[i * 64..i * 64 + 64].iter_mut().zip(&blk[..64]) {
                        *o = reverse_fields(b);
                    }
                }
                data.truncate(n / 4);
                Ok(TernaryMatrix {
                    rows,
                    cols,
                    codes: data,
                    scale: collapse(scales, &info.name)?,
                })
            }
            GgmlType::TQ1_0 => {
                let mut codes = AlignedBuf::zeroed(n / 4);
                let mut scales = Vec::with_capacity(n / tq1_0::BLOCK);
                let mut vals = [0u8; tq1_0::BLOCK];
                let mut packed = Vec::with_capacity(64);
                for (i, blk) in data.chunks_exact(tq1_0::BLOCK_BYTES).enumerate() {
                    tq1_0::block_codes(blk, &mut vals);
                    scales.push(f16::from_le_bytes([blk[52], blk[53]]).to_f32());
                    packed.clear();
                    i2s::pack_codes(&vals, &mut packed);
                    codes[i * 64..i * 64 + 64].copy_from_slice(&packed);
                }
                drop(data);
                Ok(TernaryMatrix {
                    rows,
                    cols,
                    codes,
                    scale: collapse(scales, &info.name)?,
                })
            }
            other => Err(Error::UnsupportedType {
                name: info.name,
                ty: format!("{other} (a ternary type is needed here)"),
            }),
        }
    }
}

/// TQ2_0 keeps element m of a 32-group in bits 0-1 of byte m, I2_S in bits 7-6.
#[inline]
fn reverse_fields(b: u8) -> u8 {
    (b & 3) << 6 | (b >> 2 & 3) << 4 | (b >> 4 & 3) << 2 | (b >> 6)
}

/// Per-256 scales → one scale if all equal, else per-128-block scales.
fn collapse(scales256: Vec<f32>, name: &str) -> Result<TernaryScale> {
    if let Some(bad) = scales256.iter().find(|s| !s.is_finite()) {
        return Err(Error::BadTensor {
            name: name.to_string(),
            reason: format!("a block scale is {bad}"),
        });
    }
    match scales256.first() {
        Some(&first) if scales256.iter().all(|&s| s == first) => Ok(TernaryScale::PerTensor(first)),
        _ => Ok(TernaryScale::PerBlock(
            scales256.iter().flat_map(|&s| [s, s]).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize, i2s, tq1_0, tq2_0};
    use crate::gguf::TensorInfo;
    use proptest::prelude::*;

    fn tensor(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Tensor {
        Tensor {
            info: TensorInfo {
                name: "w".into(),
                ty,
                dims: vec![cols as u64, rows as u64],
                offset: 0,
                nbytes: bytes.len() as u64,
            },
            data: AlignedBuf::from_slice(&bytes),
        }
    }

    proptest! {
        /// Repacking any ternary format gives exactly the values its reference dequantizer gives.
        #[test]
        fn repack_matches_reference(rows in 1usize..5, blocks in 1usize..4, seed in any::<u64>(), per_block in any::<bool>()) {
            let cols = blocks * 256;
            let mut x = seed;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let codes: Vec<u8> = (0..rows * cols).map(|_| (next() % 3) as u8).collect();
            let scales: Vec<f32> = (0..rows * cols / 256)
                .map(|i| if per_block { 0.25 + i as f32 * 0.125 } else { 0.5 })
                .collect();
            for (ty, bytes) in [
                (GgmlType::TQ2_0, tq2_0::quantize(&codes, &scales)),
                (GgmlType::TQ1_0, tq1_0::quantize(&codes, &scales)),
                (GgmlType::I2S, i2s::quantize(&codes, scales[0])),
            ] {
                if ty == GgmlType::I2S && per_block { continue; }
                let reference = dequantize(ty, &bytes, rows * cols).unwrap();
                let expected: Vec<f32> = codes.iter().enumerate()
                    .map(|(i, &c)| (c as f32 - 1.0) * scales[i / 256]).collect();
                prop_assert_eq!(&reference, &expected, "{} reference", ty);
                let m = TernaryMatrix::from_tensor(tensor(ty, rows, cols, bytes)).unwrap();
                prop_assert_eq!(m.dequantize(), expected, "{} repacked", ty);
                prop_assert_eq!(matches!(m.scale, TernaryScale::PerTensor(_)), !per_block || rows * cols == 256);
            }
        }
    }
}
