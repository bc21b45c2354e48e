//! The BitNet b1.58 model: configuration, weights, and the forward pass behind
//! the [`Backend`] interface (the CPU backend here; a GPU backend implements the
//! same trait).

mod config;
mod exact_head;
mod forward;
mod head_tap;
mod kv_cache;
mod weights;

pub use config::{FfnActivation, ModelConfig};
pub use exact_head::{FloatRows, EXACT_CANDIDATES};
pub use forward::{CpuBackend, CpuOptions};
pub use head_tap::HeadTap;
pub use kv_cache::KvType;
pub use weights::{LayerWeights, Linear, ModelWeights, EMBD, OUTPUT};

use crate::error::Result;
use crate::formats::{DenseMatrix, DenseType};
use crate::gguf::GgufFile;

/// How BitLinear layers see their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActMode {
    /// Per-token absmax int8 (what BitNet was trained with; bitnet.cpp's semantics).
    Int8,
    /// Exact f32 activations, for validation against float references.
    F32,
}

/// Which rows of logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only after the last token (generation).
    Last,
    /// After every token (`bitnet logits`, parity tests).
    All,
}

/// One model instance with its KV cache. `forward` appends `tokens` at position
/// `n_past()` and returns `n_vocab` logits per requested row.
/// What the async backend methods return (boxed, so `Backend` stays a trait object).
pub type BackendFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>;

/// `Send` natively; nothing on wasm32, where the browser's WebGPU objects live on one
/// thread and a worker owns the engine.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// What a GPU backend has done since it was made (cumulative, so a caller can take the
/// difference over any stretch of work).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuCounters {
    /// Command submissions.
    pub submissions: u64,
    /// Compute dispatches.
    pub dispatches: u64,
    /// Time the GPU spent in the forward passes' compute passes (timestamp queries), when
    /// the backend was asked to measure it and the adapter can.
    pub gpu_ns: Option<f64>,
}

pub trait Backend: MaybeSend {
    fn name(&self) -> String;
    /// A GPU backend's counters; `None` on the CPU.
    fn gpu_counters(&self) -> Option<GpuCounters> {
        None
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>>;
    /// Like `forward(tokens, Logits::Last)`, but returns only the `k` best `(id, logit)` of
    /// the last position in the sampler's order (best first, ties to the lower id, NaN read
    /// as -inf), so a backend that selects them itself (the GPU) need not hand over every logit.
    fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>> {
        let logits = self.forward(tokens, Logits::Last)?;
        Ok(crate::sampler::top_k(&logits, k))
    }
    /// `forward` for callers that must not block: a backend whose results arrive later
    /// (WebGPU in a browser) overrides it; the default runs `forward`.
    fn forward_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        which: Logits,
    ) -> BackendFuture<'a, Vec<f32>> {
        Box::pin(std::future::ready(self.forward(tokens, which)))
    }
    /// `forward_top_k` for callers that must not block.
    fn forward_top_k_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        k: usize,
    ) -> BackendFuture<'a, Vec<(u32, f32)>> {
        Box::pin(std::future::ready(self.forward_top_k(tokens, k)))
    }
    fn n_past(&self) -> usize;
    fn n_ctx(&self) -> usize;
    fn n_vocab(&self) -> usize;
    /// Forgets every position from `n` on (to rewind a conversation).
    fn truncate(&mut self, n: usize);
    /// Runs the CPU kernels on `n` threads from here on (the cache is kept); `false` for
    /// a backend whose thread count is not its own to choose (the GPU).
    fn set_threads(&mut self, _n: usize) -> bool {
        false
    }
}

/// Configuration and weights, shareable between backends.
pub struct Model {
    pub config: ModelConfig,
    pub weights: ModelWeights,
}

/// How the LM head is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadMode {
    /// As in the file (F16 for BitNet 2B4T).
    #[default]
    File,
    /// An int8 copy with per-row scales, built at load time in place of the float one:
    /// half the bytes read per token (the head is ~40% of them) and less memory. With a
    /// tied embedding the token embeddings are read from it too.
    Int8,
    /// The int8 head, with each token's best [`EXACT_CANDIDATES`] scored again from the
    /// float rows of the file (read on demand, never held): the int8 head's memory, the
    /// float head's logits where the sampler looks. Needs the file kept readable
    /// ([`Model::read_float_head_from`]); CPU only.
    #[serde(rename = "int8-exact")]
    Int8Exact,
    /// As [`Int8Exact`](Self::Int8Exact) over a 4-bit copy (per-row scales): half the
    /// int8 head's bytes, so the smallest memory and the fewest bytes read per token;
    /// the candidates it picks are scored exactly. There is no 4-bit head without the
    /// rescoring: its own logits are too coarse to sample from.
    #[serde(rename = "int4-exact")]
    Int4Exact,
}

impl HeadMode {
    /// The quantized rows the head is held as, if not the file's.
    pub fn small_type(self) -> Option<DenseType> {
        match self {
            HeadMode::File => None,
            HeadMode::Int8 | HeadMode::Int8Exact => Some(DenseType::I8),
            HeadMode::Int4Exact => Some(DenseType::I4),
        }
    }

    /// Whether the head's best candidates are scored again from the file's float rows.
    pub fn is_exact(self) -> bool {
        matches!(self, HeadMode::Int8Exact | HeadMode::Int4Exact)
    }

    /// The name options and the CLI give it.
    pub fn name(self) -> &'static str {
        match self {
            HeadMode::File => "file",
            HeadMode::Int8 => "int8",
            HeadMode::Int8Exact => "int8-exact",
            HeadMode::Int4Exact => "int4-exact",
        }
    }
}

impl Model {
    /// Converts the LM head (the embedding, when tied) to the mode's quantized rows, in place.
    pub fn set_head(&mut self, mode: HeadMode) {
        if let Some(ty) = mode.small_type() {
            match &mut self.weights.output {
                Some(out) => out.quantize_rows(ty),
                None => self.weights.embd.quantize_rows(ty),
            }
        }
    }

    /// Scores the int8 head's best candidates again from the float head in `source`, the
    /// file the model was loaded from: `info` is the head's tensor in it (the one a
    /// [`HeadTap`] took), `data_start` where its data section starts.
    pub fn read_float_head_from(
        &mut self,
        source: std::sync::Arc<dyn crate::gguf::FileBytes>,
        info: &crate::gguf::TensorInfo,
        data_start: u64,
    ) -> Result<()> {
        let head = self.weights.head();
        if !head.ty.is_quantized() {
            return Err(crate::error::Error::InvalidArgument(
                "the exact head rescores an int8 or int4 head; this model's head is neither".into(),
            ));
        }
        let rows = FloatRows::new(source, info, data_start, head.rows, head.cols)?;
        self.weights.float_head = Some(rows);
        Ok(())
    }

    /// Builds the model by moving the tensors out of `file`.
    pub fn from_gguf(file: &mut GgufFile) -> Result<Model> {
        Model::from_gguf_with_head(file, None)
    }

    /// [`from_gguf`](Self::from_gguf) for a file whose head a [`HeadTap`] took while it
    /// loaded: `head` is what the tap built.
    pub fn from_gguf_with_head(file: &mut GgufFile, head: Option<DenseMatrix>) -> Result<Model> {
        let config = ModelConfig::from_metadata(&file.metadata)?;
        let weights = ModelWeights::from_gguf(file, &config, head)?;
        Ok(Model { config, weights })
    }
}
