//! Model hyper-parameters from GGUF metadata.

use crate::error::{Error, Result};
use crate::gguf::Metadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnActivation {
    Silu,
    /// Squared ReLU, what BitNet b1.58 2B4T was trained with.
    Relu2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub activation: FfnActivation,
}

impl ModelConfig {
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn from_metadata(md: &Metadata) -> Result<ModelConfig> {
        let arch = md
            .get_str("general.architecture")
            .ok_or_else(|| Error::Model("no general.architecture".into()))?
            .to_string();
        let activation = match arch.as_str() {
            "bitnet-b1.58" | "bitnet-25" => FfnActivation::Relu2,
            "bitnet" => match md.get_str("bitnet.hidden_activation") {
                Some("relu2") => FfnActivation::Relu2,
                Some("silu") | None => FfnActivation::Silu,
                Some(other) => {
                    return Err(Error::Model(format!(
                        "unknown bitnet.hidden_activation '{other}'"
                    )))
                }
            },
            _ => return Err(Error::UnsupportedArch(arch)),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| -> Result<usize> {
            let v = md.get_u64(&key(k)).ok_or_else(|| {
                Error::Model(format!("missing or non-integer metadata '{}'", key(k)))
            })?;
            if v == 0 || v > 1 << 24 {
                return Err(Error::Model(format!("'{}' = {v} is out of range", key(k))));
            }
            Ok(v as usize)
        };
        let n_embd = int("embedding_length")?;
        let n_head = int("attention.head_count")?;
        let n_head_kv = md
            .get_u64(&key("attention.head_count_kv"))
            .map(|v| v as usize)
            .unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 || n_embd % n_head != 0 {
            return Err(Error::Model(format!(
                "inconsistent heads: embedding {n_embd}, {n_head} heads, {n_head_kv} KV heads"
            )));
        }
        let head_dim = n_embd / n_head;
        let n_rot = md
            .get_u64(&key("rope.dimension_count"))
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(Error::Model(format!(
                "rope dimension {n_rot} for head size {head_dim}"
            )));
        }
        let n_vocab = match md.get_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => md
                .get_str_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .ok_or_else(|| Error::Model("no vocabulary size".into()))?,
        };
        let float =
            |k: &str, default: f32| md.get_f64(&key(k)).map(|v| v as f32).unwrap_or(default);
        Ok(ModelConfig {
            n_ff: int("feed_forward_length")?,
            n_layer: int("block_count")?,
            n_ctx_train: md.get_u64(&key("context_length")).unwrap_or(4096) as usize,
            rope_theta: float("rope.freq_base", 10000.0),
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            arch,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            n_vocab,
            activation,
        })
    }
}
