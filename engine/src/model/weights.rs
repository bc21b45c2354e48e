//! Typed model weights, built from a loaded GGUF by moving (and, for ternary
//! types, repacking) each tensor's buffer: no tensor is ever held twice.

use super::config::ModelConfig;
use super::exact_head::FloatRows;
use crate::error::{Error, Result};
use crate::formats::{dense, DenseMatrix, TernaryMatrix};
use crate::gguf::{GgmlType, GgufFile, Tensor, TensorInfo};

/// A linear layer: ternary (the BitNet case) or float (F16/F32 checkpoints).
#[derive(Debug, Clone)]
pub enum Linear {
    Ternary(TernaryMatrix),
    Dense { w: DenseMatrix, out_scale: f32 },
}

impl Linear {
    pub fn rows(&self) -> usize {
        match self {
            Linear::Ternary(m) => m.rows,
            Linear::Dense { w, .. } => w.rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Linear::Ternary(m) => m.cols,
            Linear::Dense { w, .. } => w.cols,
        }
    }
    pub fn size_bytes(&self) -> usize {
        match self {
            Linear::Ternary(m) => m.size_bytes(),
            Linear::Dense { w, .. } => w.size_bytes(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub attn_sub_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub ffn_sub_norm: Vec<f32>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub embd: DenseMatrix,
    /// `None`: the LM head is tied to the embedding.
    pub output: Option<DenseMatrix>,
    pub output_norm: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    /// With an exact head ([`HeadMode::is_exact`](super::HeadMode::is_exact)): the head's float rows in
    /// the file, for exact scores of the small head's best candidates (and, tied, for the
    /// token embeddings).
    pub float_head: Option<FloatRows>,
}

impl ModelWeights {
    pub fn head(&self) -> &DenseMatrix {
        self.output.as_ref().unwrap_or(&self.embd)
    }

    /// Token `t`'s embedding: from the file's float rows where the int8 head stands in
    /// for a tied embedding, else from the embedding matrix.
    pub fn embed(&self, t: usize, out: &mut [f32]) -> Result<()> {
        match (&self.float_head, &self.output) {
            (Some(rows), None) => rows.row_f32(t, out),
            _ => {
                self.embd.row_f32(t, out);
                Ok(())
            }
        }
    }

    pub fn size_bytes(&self) -> usize {
        let norms = |l: &LayerWeights| {
            4 * (l.attn_norm.len()
                + l.attn_sub_norm.len()
                + l.ffn_norm.len()
                + l.ffn_sub_norm.len())
        };
        self.embd.size_bytes()
            + self.output.as_ref().map_or(0, |o| o.size_bytes())
            + self
                .layers
                .iter()
                .map(|l| {
                    norms(l)
                        + [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                            .iter()
                            .map(|x| x.size_bytes())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Takes the tensors out of `file` (what it leaves behind is what the model does not
    /// use); `tapped` is the matrix built from the tensor a loader's tap took, if any.
    pub fn from_gguf(
        file: &mut GgufFile,
        cfg: &ModelConfig,
        mut tapped: Option<DenseMatrix>,
    ) -> Result<ModelWeights> {
        let (e, f, kv) = (cfg.n_embd as u64, cfg.n_ff as u64, cfg.kv_dim() as u64);
        let vocab = [e, cfg.n_vocab as u64];
        let embd = dense(file, EMBD, &vocab, &mut tapped)?
            .ok_or_else(|| Error::Model(format!("missing tensor '{EMBD}'")))?;
        let output = dense(file, OUTPUT, &vocab, &mut tapped)?;
        if let Some(t) = file.tapped.first() {
            return Err(Error::Model(format!(
                "tensor '{}' was taken while loading but is not one the model builds that way",
                t.name
            )));
        }
        let output_norm = vector(take(file, "output_norm.weight", &[e])?)?;
        // block_count comes from the file: reserve no more than the tensors present could fill.
        let mut layers = Vec::with_capacity(cfg.n_layer.min(file.tensors.len()));
        for i in 0..cfg.n_layer {
            let p = |n: &str| format!("blk.{i}.{n}");
            let mut lin = |name: &str, dims: &[u64]| linear(file, &p(name), dims);
            layers.push(LayerWeights {
                q: lin("attn_q", &[e, e])?,
                k: lin("attn_k", &[e, kv])?,
                v: lin("attn_v", &[e, kv])?,
                o: lin("attn_output", &[e, e])?,
                gate: lin("ffn_gate", &[e, f])?,
                up: lin("ffn_up", &[e, f])?,
                down: lin("ffn_down", &[f, e])?,
                attn_norm: vector(take(file, &p("attn_norm.weight"), &[e])?)?,
                attn_sub_norm: vector(take(file, &p("attn_sub_norm.weight"), &[e])?)?,
                ffn_norm: vector(take(file, &p("ffn_norm.weight"), &[e])?)?,
                ffn_sub_norm: vector(take(file, &p("ffn_sub_norm.weight"), &[f])?)?,
            });
        }
        Ok(ModelWeights {
            embd,
            output,
            output_norm,
            layers,
            float_head: None,
        })
    }
}

/// The token embedding's tensor name (also the LM head when no `output.weight`).
pub const EMBD: &str = "token_embd.weight";
/// The LM head's tensor name.
pub const OUTPUT: &str = "output.weight";

fn check_dims(t: &Tensor, dims: &[u64]) -> Result<()> {
    check_info_dims(&t.info, dims)
}

fn check_info_dims(info: &TensorInfo, dims: &[u64]) -> Result<()> {
    let mut have = info.dims.clone();
    while have.len() > dims.len() && have.last() == Some(&1) {
        have.pop();
    }
    if have != dims {
        return Err(Error::BadTensor {
            name: info.name.clone(),
            reason: format!("has shape {:?}, the model needs {:?}", info.dims, dims),
        });
    }
    Ok(())
}

/// A float matrix, from the file or (for the tensor a loader's tap took) from `tapped`;
/// `None` when the file has neither.
fn dense(
    file: &mut GgufFile,
    name: &str,
    dims: &[u64],
    tapped: &mut Option<DenseMatrix>,
) -> Result<Option<DenseMatrix>> {
    if let Some(i) = file.tapped.iter().position(|t| t.name == name) {
        let info = file.tapped.remove(i);
        check_info_dims(&info, dims)?;
        let m = tapped.take().ok_or_else(|| {
            Error::Model(format!(
                "tensor '{name}' was taken while loading but nothing was built from it"
            ))
        })?;
        return Ok(Some(m));
    }
    match file.take_tensor(name) {
        Some(t) => {
            check_dims(&t, dims)?;
            Ok(Some(dense_matrix(t)?))
        }
        None => Ok(None),
    }
}

fn take(file: &mut GgufFile, name: &str, dims: &[u64]) -> Result<Tensor> {
    let t = file
        .take_tensor(name)
        .ok_or_else(|| Error::Model(format!("missing tensor '{name}'")))?;
    check_dims(&t, dims)?;
    Ok(t)
}

fn dense_matrix(t: Tensor) -> Result<DenseMatrix> {
    DenseMatrix::from_tensor(t)
}

fn vector(t: Tensor) -> Result<Vec<f32>> {
    let n = t.info.n_elements() as usize;
    Ok(match t.info.ty {
        GgmlType::F32 => dense::f32_values(&t.data, n),
        GgmlType::F16 => dense::f16_values(&t.data, n),
        GgmlType::BF16 => dense::bf16_values(&t.data, n),
        other => {
            return Err(Error::UnsupportedType {
                name: t.info.name,
                ty: format!("{other} (a norm weight must be F32, F16 or BF16)"),
            })
        }
    })
}

fn linear(file: &mut GgufFile, prefix: &str, dims: &[u64]) -> Result<Linear> {
    let w = take(file, &format!("{prefix}.weight"), dims)?;
    let scale = match file.take_tensor(&format!("{prefix}.scale")) {
        Some(s) => {
            let v = vector(s)?;
            match v.as_slice() {
                [x] if x.is_finite() => *x,
                _ => {
                    return Err(Error::BadTensor {
                        name: format!("{prefix}.scale"),
                        reason: "must hold one finite number".into(),
                    })
                }
            }
        }
        None => 1.0,
    };
    if w.info.ty.is_ternary() {
        let mut m = TernaryMatrix::from_tensor(w)?;
        if scale != 1.0 {
            m.scale_by(scale);
        }
        Ok(Linear::Ternary(m))
    } else {
        Ok(Linear::Dense {
            w: dense_matrix(w)?,
            out_scale: scale,
        })
    }
}
