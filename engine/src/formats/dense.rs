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
    /// 4-bit values in [-7, 7] with one f32 scale per row, stored as q+8 in nibbles
    /// [`I4_BLOCK`] values at a time (see [`i4_position`]): the smallest LM head.
    I4,
}

/// Values per block of an [`DenseType::I4`] row: byte j of a block holds value j in its
/// low nibble and value j + 64 in its high one, so the low and the high nibbles of any
/// run of bytes meet two runs of consecutive activations.
pub const I4_BLOCK: usize = 128;

/// Where value `c` of an [`DenseType::I4`] row is: its byte, and whether it is the high nibble.
pub fn i4_position(c: usize) -> (usize, bool) {
    let (block, j) = (c / I4_BLOCK, c % I4_BLOCK);
    (block * I4_BLOCK / 2 + j % (I4_BLOCK / 2), j >= I4_BLOCK / 2)
}

/// Value `c` of an [`DenseType::I4`] row, in [-8, 7].
pub fn i4_value(row: &[u8], c: usize) -> i8 {
    let (byte, high) = i4_position(c);
    let u = if high {
        row[byte] >> 4
    } else {
        row[byte] & 0x0F
    };
    u as i8 - 8
}

impl DenseType {
    /// Bytes per value of the whole-byte types; an I4 row is [`row_len`](Self::row_len).
    pub fn bytes_per_value(self) -> usize {
        match self {
            DenseType::F32 => 4,
            DenseType::F16 | DenseType::BF16 => 2,
            DenseType::I8 | DenseType::I4 => 1,
        }
    }

    /// Bytes of one row of `cols` values (an I4 row is padded to whole blocks).
    pub fn row_len(self, cols: usize) -> usize {
        match self {
            DenseType::I4 => cols.div_ceil(I4_BLOCK) * (I4_BLOCK / 2),
            ty => cols * ty.bytes_per_value(),
        }
    }

    /// The quantized types, which carry a scale per row.
    pub fn is_quantized(self) -> bool {
        matches!(self, DenseType::I8 | DenseType::I4)
    }
}

/// A row-major matrix of `rows` × `cols` floats in their file encoding.
#[derive(Debug, Clone)]
pub struct DenseMatrix {
    pub rows: usize,
    pub cols: usize,
    pub ty: DenseType,
    pub data: AlignedBuf,
    /// I8 and I4 only: per row, the scale (`max|w|/127`, `max|w|/7`) and Σq (for
    /// unsigned×signed dot products).
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
        let w = self.ty.row_len(self.cols);
        &self.data[r * w..(r + 1) * w]
    }

    /// Row `r` as f32 (embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let b = self.row_bytes(r);
        match self.ty {
            DenseType::I8 => {
                let s = self.row_scales[r];
                for (o, &q) in out.iter_mut().zip(b) {
                    *o = q as i8 as f32 * s;
                }
            }
            DenseType::I4 => {
                let s = self.row_scales[r];
                for (c, o) in out[..self.cols].iter_mut().enumerate() {
                    *o = i4_value(b, c) as f32 * s;
                }
            }
            float => decode_float_row(float, b, out),
        }
    }

    /// Converts to int8 rows with per-row absmax scales, in place.
    pub fn quantize_rows_int8(&mut self) {
        self.quantize_rows(DenseType::I8);
    }

    /// Converts a float matrix to `to` (I8 or I4) rows with per-row absmax scales, in
    /// place where the quantized row r never reaches past where float row r began (so no
    /// second copy of the matrix is held); else (tiny I4 rows) into a new buffer.
    pub fn quantize_rows(&mut self, to: DenseType) {
        if self.ty.is_quantized() {
            return;
        }
        let (rows, cols) = (self.rows, self.cols);
        let len = to.row_len(cols);
        let in_place = len <= self.ty.row_len(cols);
        let mut fresh = if in_place {
            None
        } else {
            Some(AlignedBuf::zeroed(rows * len))
        };
        let mut row = vec![0f32; cols];
        let mut scales = Vec::with_capacity(rows);
        let mut sums = Vec::with_capacity(rows);
        for r in 0..rows {
            self.row_f32(r, &mut row);
            let out = match &mut fresh {
                Some(buf) => &mut buf[r * len..(r + 1) * len],
                None => &mut self.data[r * len..(r + 1) * len],
            };
            let (scale, sum) = quantize_row(to, &row, out);
            scales.push(scale);
            sums.push(sum);
        }
        match fresh {
            Some(buf) => self.data = buf,
            None => self.data.truncate(rows * len),
        }
        self.ty = to;
        self.row_scales = scales;
        self.row_sums = sums;
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }
}

/// One row in a float encoding (not I8), as f32.
pub fn decode_float_row(ty: DenseType, b: &[u8], out: &mut [f32]) {
    match ty {
        DenseType::F32 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
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
        DenseType::I8 | DenseType::I4 => {
            unreachable!("quantized rows carry a scale: see DenseMatrix::row_f32")
        }
    }
}

/// Quantizes one row to `to` (I8 or I4); returns (scale, Σq).
fn quantize_row(to: DenseType, row: &[f32], out: &mut [u8]) -> (f32, i32) {
    match to {
        DenseType::I4 => quantize_row_int4(row, out),
        _ => quantize_row_int8(row, out),
    }
}

/// Quantizes one row to 4 bits with its absmax scale (values in [-7, 7], stored as
/// q+8, padding as 8); returns (scale, Σq).
fn quantize_row_int4(row: &[f32], out: &mut [u8]) -> (f32, i32) {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = if max > 0.0 && max.is_finite() {
        7.0 / max
    } else {
        0.0
    };
    out.fill(0x88);
    let mut sum = 0i32;
    for (c, &v) in row.iter().enumerate() {
        let q = (v * s).round_ties_even().clamp(-7.0, 7.0) as i32;
        sum += q;
        let u = (q + 8) as u8;
        let (byte, high) = i4_position(c);
        out[byte] = if high {
            (out[byte] & 0x0F) | (u << 4)
        } else {
            (out[byte] & 0xF0) | u
        };
    }
    (if s > 0.0 { max / 7.0 } else { 0.0 }, sum)
}

/// Quantizes one row to int8 with its absmax scale; returns (scale, Σq).
fn quantize_row_int8(row: &[f32], out: &mut [u8]) -> (f32, i32) {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = if max > 0.0 && max.is_finite() {
        127.0 / max
    } else {
        0.0
    };
    let mut sum = 0i32;
    for (o, &v) in out.iter_mut().zip(row) {
        let q = (v * s).round_ties_even().clamp(-127.0, 127.0) as i8;
        sum += q as i32;
        *o = q as u8;
    }
    (if s > 0.0 { max / 127.0 } else { 0.0 }, sum)
}

/// Builds the int8 or int4 form of a float matrix from its bytes as they stream in
/// (any chunking), one row at a time: the float matrix itself is never in memory.
/// Gives exactly what [`DenseMatrix::quantize_rows`] gives.
pub struct RowQuantizer {
    name: String,
    from: DenseType,
    to: DenseType,
    rows: usize,
    cols: usize,
    /// The row being received, in the file's encoding.
    stage: Vec<u8>,
    row: Vec<f32>,
    done_rows: usize,
    out: DenseMatrix,
}

impl RowQuantizer {
    /// For a float tensor named `name` of `rows` × `cols` values in `ty`, into `to`
    /// (I8 or I4) rows.
    pub fn new(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        to: DenseType,
    ) -> Result<RowQuantizer> {
        let from = match ty {
            GgmlType::F32 => DenseType::F32,
            GgmlType::F16 => DenseType::F16,
            GgmlType::BF16 => DenseType::BF16,
            other => {
                return Err(Error::UnsupportedType {
                    name: name.into(),
                    ty: format!("{other} (a float type is needed here)"),
                })
            }
        };
        if !to.is_quantized() {
            return Err(Error::InvalidArgument(format!(
                "tensor '{name}': {to:?} is not a quantized row type"
            )));
        }
        let len = to.row_len(cols);
        let oom = || Error::OutOfMemory {
            what: format!("the quantized copy of tensor '{name}'"),
            needed: (rows as u64).saturating_mul(len as u64),
            limit: isize::MAX as u64,
        };
        let n = rows.checked_mul(len).ok_or_else(oom)?;
        let data = AlignedBuf::try_zeroed(n).ok_or_else(oom)?;
        let mut scales = Vec::new();
        let mut sums = Vec::new();
        let mut stage = Vec::new();
        let mut row = Vec::new();
        scales.try_reserve_exact(rows).map_err(|_| oom())?;
        sums.try_reserve_exact(rows).map_err(|_| oom())?;
        stage
            .try_reserve_exact(cols.saturating_mul(from.bytes_per_value()))
            .map_err(|_| oom())?;
        row.try_reserve_exact(cols).map_err(|_| oom())?;
        row.resize(cols, 0f32);
        Ok(RowQuantizer {
            name: name.into(),
            from,
            to,
            rows,
            cols,
            stage,
            row,
            done_rows: 0,
            out: DenseMatrix {
                rows,
                cols,
                ty: to,
                data,
                row_scales: scales,
                row_sums: sums,
            },
        })
    }

    /// The next bytes of the tensor.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        let row_len = self.cols * self.from.bytes_per_value();
        while !bytes.is_empty() {
            if self.done_rows == self.rows {
                return Err(Error::BadTensor {
                    name: self.name.clone(),
                    reason: "more bytes arrived than its shape holds".into(),
                });
            }
            // Whole rows straight from the chunk; a row split across chunks is staged.
            let (row_bytes, rest) = if self.stage.is_empty() && bytes.len() >= row_len {
                bytes.split_at(row_len)
            } else {
                let take = (row_len - self.stage.len()).min(bytes.len());
                self.stage.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.stage.len() < row_len {
                    continue;
                }
                let staged = std::mem::take(&mut self.stage);
                self.finish_row(&staged);
                self.stage = staged;
                self.stage.clear();
                continue;
            };
            self.finish_row(row_bytes);
            bytes = rest;
        }
        Ok(())
    }

    fn finish_row(&mut self, row_bytes: &[u8]) {
        let (r, len) = (self.done_rows, self.to.row_len(self.cols));
        decode_float_row(self.from, row_bytes, &mut self.row);
        let (scale, sum) = quantize_row(
            self.to,
            &self.row,
            &mut self.out.data[r * len..(r + 1) * len],
        );
        self.out.row_scales.push(scale);
        self.out.row_sums.push(sum);
        self.done_rows += 1;
    }

    /// The quantized matrix, once every row has arrived.
    pub fn finish(self) -> Result<DenseMatrix> {
        if self.done_rows != self.rows || !self.stage.is_empty() {
            return Err(Error::Truncated(format!(
                "tensor '{}' is incomplete: {} of its {} rows arrived",
                self.name, self.done_rows, self.rows
            )));
        }
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(ty: DenseType, rows: usize, cols: usize) -> DenseMatrix {
        // Spread magnitudes per row, a zero row and a row with one large value.
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                match r {
                    0 => 0.0,
                    1 if c == 3 => 40.0,
                    _ => ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (r as f32 + 0.5),
                }
            })
            .collect();
        let bytes: Vec<u8> = match ty {
            DenseType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DenseType::F16 => values
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
            DenseType::BF16 => values
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect(),
            DenseType::I8 | DenseType::I4 => unreachable!(),
        };
        DenseMatrix {
            rows,
            cols,
            ty,
            data: AlignedBuf::from_slice(&bytes),
            row_scales: Vec::new(),
            row_sums: Vec::new(),
        }
    }

    #[test]
    fn streamed_quantized_rows_equal_the_in_place_conversion_for_any_chunking() {
        // 40 columns: a short I4 row (a new buffer in place); 300: two whole blocks and a
        // partial one.
        for ((rows, cols), to) in [
            ((9, 40), DenseType::I8),
            ((9, 40), DenseType::I4),
            ((5, 300), DenseType::I4),
        ] {
            for (ty, gg) in [
                (DenseType::F32, GgmlType::F32),
                (DenseType::F16, GgmlType::F16),
                (DenseType::BF16, GgmlType::BF16),
            ] {
                let float = matrix(ty, rows, cols);
                let mut want = float.clone();
                want.quantize_rows(to);
                // Chunks smaller than a row, straddling rows, and larger than several rows.
                for chunk in [1, 7, cols * ty.bytes_per_value() + 3, 1000] {
                    let mut b = RowQuantizer::new("t", gg, rows, cols, to).unwrap();
                    for c in float.data.chunks(chunk) {
                        b.write(c).unwrap();
                    }
                    let got = b.finish().unwrap();
                    assert_eq!(got.ty, to);
                    assert_eq!(
                        got.data.as_slice(),
                        want.data.as_slice(),
                        "{ty:?} / {chunk}"
                    );
                    assert_eq!(got.row_scales, want.row_scales);
                    assert_eq!(got.row_sums, want.row_sums);
                }
            }
        }
    }

    /// The int4 rows against their definition, worked out here value by value: q =
    /// round(w·7/max|w|) in [-7, 7], Σq, the scale, and q·scale within half a step of w.
    #[test]
    fn int4_rows_hold_each_value_within_half_a_step() {
        let (rows, cols) = (6, 300);
        let float = matrix(DenseType::F32, rows, cols);
        let mut m = float.clone();
        m.quantize_rows(DenseType::I4);
        assert_eq!(m.data.len(), rows * 3 * 64);
        let mut w = vec![0f32; cols];
        let mut back = vec![0f32; cols];
        for r in 0..rows {
            float.row_f32(r, &mut w);
            m.row_f32(r, &mut back);
            let max = w.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(m.row_scales[r], max / 7.0);
            let q: Vec<i8> = (0..cols).map(|c| i4_value(m.row_bytes(r), c)).collect();
            assert!(q.iter().all(|&v| (-7..=7).contains(&v)));
            assert_eq!(m.row_sums[r], q.iter().map(|&v| v as i32).sum::<i32>());
            for c in 0..cols {
                assert!(
                    (back[c] - w[c]).abs() <= max / 14.0 * 1.0001,
                    "row {r} col {c}"
                );
            }
            // The padding of the last block holds zeros.
            for c in cols..384 {
                assert_eq!(i4_value(m.row_bytes(r), c), 0);
            }
        }
        // Byte j of a block: value j low, value j + 64 high.
        assert_eq!(i4_position(0), (0, false));
        assert_eq!(i4_position(64), (0, true));
        assert_eq!(i4_position(127), (63, true));
        assert_eq!(i4_position(128 + 5), (69, false));
    }

    #[test]
    fn a_streamed_int8_matrix_refuses_missing_and_extra_bytes() {
        let float = matrix(DenseType::F16, 3, 8);
        let mut b = RowQuantizer::new("head", GgmlType::F16, 3, 8, DenseType::I8).unwrap();
        b.write(&float.data[..40]).unwrap();
        let e = b.finish().unwrap_err().to_string();
        assert!(e.contains("'head'") && e.contains("2 of its 3 rows"), "{e}");
        let mut b = RowQuantizer::new("head", GgmlType::F16, 3, 8, DenseType::I8).unwrap();
        b.write(&float.data).unwrap();
        let e = b.write(&[0]).unwrap_err().to_string();
        assert!(e.contains("more bytes"), "{e}");
        assert!(RowQuantizer::new("head", GgmlType::I2S, 3, 8, DenseType::I8).is_err());
        assert!(RowQuantizer::new("head", GgmlType::F16, 3, 8, DenseType::F16).is_err());
    }
}
