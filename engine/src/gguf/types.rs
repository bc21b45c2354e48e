//! ggml tensor types: ids, names, and how many bytes a run of elements takes.

use crate::error::{Error, Result};

/// The tensor types this engine can load. Any other ggml type id is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp's 2-bit ternary type (id 36), the type of the official 2B4T file.
    I2S,
}

impl GgmlType {
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
            GgmlType::I2S => 36,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::TQ1_0 => "TQ1_0",
            GgmlType::TQ2_0 => "TQ2_0",
            GgmlType::I2S => "I2_S",
        }
    }

    pub fn from_name(name: &str) -> Option<GgmlType> {
        [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::TQ1_0,
            GgmlType::TQ2_0,
            GgmlType::I2S,
        ]
        .into_iter()
        .find(|t| {
            t.name().eq_ignore_ascii_case(name)
                || (name.eq_ignore_ascii_case("I2S") && *t == GgmlType::I2S)
        })
    }

    /// Resolves a type id read from a file, naming the tensor in the error.
    pub fn from_id(id: u32, tensor: &str) -> Result<GgmlType> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            34 => GgmlType::TQ1_0,
            35 => GgmlType::TQ2_0,
            36 => GgmlType::I2S,
            other => {
                return Err(Error::UnsupportedType {
                    name: tensor.to_string(),
                    ty: known_type_name(other),
                })
            }
        })
    }

    /// Elements per quantization block (a tensor's row length must be a multiple).
    pub fn block_len(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::TQ1_0 | GgmlType::TQ2_0 => 256,
            GgmlType::I2S => 128,
        }
    }

    /// Bytes taken by `n` elements, `None` when `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn nbytes(self, n: u64) -> Option<u64> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        match self {
            GgmlType::F32 => n.checked_mul(4),
            GgmlType::F16 | GgmlType::BF16 => n.checked_mul(2),
            GgmlType::TQ1_0 => (n / 256).checked_mul(54),
            GgmlType::TQ2_0 => (n / 256).checked_mul(66),
            // bitnet.cpp's ggml_nbytes: the 2-bit codes, then one 32-byte slot whose first
            // four bytes hold the tensor's f32 scale.
            GgmlType::I2S => (n / 4).checked_add(32),
        }
    }

    pub fn is_ternary(self) -> bool {
        matches!(self, GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2S)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Names of ggml types we know of but do not load, so the error says "Q4_K", not "12".
fn known_type_name(id: u32) -> String {
    const NAMES: [&str; 40] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4",
        "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "I2_S", "TL1", "TL2", "MXFP4",
    ];
    match NAMES.get(id as usize) {
        Some(name) => format!("{name} (ggml type {id})"),
        None => format!("unknown ggml type {id}"),
    }
}
