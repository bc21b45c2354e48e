//! Tensor formats: a scalar dequantize reference for every type the engine loads,
//! quantizers for the ternary types (used by the synthetic-model writer), and the
//! load-time repacking of every ternary type into one kernel layout ([`TernaryMatrix`]).

pub mod dense;
pub mod i2s;
pub mod ternary;
pub mod tq1_0;
pub mod tq2_0;

pub use dense::{DenseMatrix, DenseType, RowQuantizer};
pub use ternary::{TernaryMatrix, TernaryScale};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Tensor};

/// Every element of a tensor as f32 (the reference every other path is checked against).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let need = ty
        .nbytes(n as u64)
        .ok_or_else(|| Error::InvalidArgument(format!("{n} elements are not whole {ty} blocks")))?;
    if (bytes.len() as u64) < need {
        return Err(Error::InvalidArgument(format!(
            "{ty}: {n} elements need {need} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(match ty {
        GgmlType::F32 => dense::f32_values(bytes, n),
        GgmlType::F16 => dense::f16_values(bytes, n),
        GgmlType::BF16 => dense::bf16_values(bytes, n),
        GgmlType::TQ2_0 => tq2_0::dequantize(bytes, n),
        GgmlType::TQ1_0 => tq1_0::dequantize(bytes, n),
        GgmlType::I2S => i2s::dequantize(bytes, n),
    })
}

pub fn dequantize_tensor(t: &Tensor) -> Result<Vec<f32>> {
    dequantize(t.info.ty, &t.data, t.info.n_elements() as usize)
}

/// A ternary weight given as codes t+1 ∈ {0,1,2} in natural element order, plus
/// one scale per 256 elements: the common input of the ternary quantizers.
pub struct TernaryValues<'a> {
    pub codes: &'a [u8],
    pub block_scales: &'a [f32],
}
