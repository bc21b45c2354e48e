//! What the bindings hand back to JavaScript, in the shapes web/ts/types.ts describes.

use bitnet_engine::session::Usage;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Progress {
    pub(crate) phase: &'static str,
    pub(crate) bytes_received: f64,
    pub(crate) bytes_expected: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelInfo {
    pub(crate) architecture: String,
    pub(crate) n_layer: usize,
    pub(crate) n_embd: usize,
    pub(crate) n_vocab: usize,
    pub(crate) n_ctx: usize,
    pub(crate) weights_bytes: usize,
    pub(crate) kv_cache_bytes: usize,
    pub(crate) kv_cache: bitnet_engine::model::KvType,
    pub(crate) kernels: String,
    /// "file", "int8", "int8-exact" or "int4-exact": the LM head in use.
    pub(crate) head: String,
    /// The chat format in use (`bitnet-2b4t`, `gguf`, `jinja`) and why.
    pub(crate) chat_format: bitnet_engine::chat::ChatFormatInfo,
    /// The pre-tokenizer in use and why.
    pub(crate) pre_tokenizer: bitnet_engine::tokenizer::PreTokenizerInfo,
    pub(crate) bos_token: Option<u32>,
    pub(crate) eos_token: Option<u32>,
    pub(crate) eot_token: Option<u32>,
    /// Every token that ends a reply.
    pub(crate) stop_tokens: Vec<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    pub(crate) backend: String,
    pub(crate) kernels: String,
    pub(crate) wasm_memory_bytes: f64,
    pub(crate) cached_tokens: usize,
    pub(crate) last_usage: Option<Usage>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum JsStep<'a> {
    Prefill {
        done: usize,
        total: usize,
    },
    Token {
        id: u32,
        text: &'a str,
    },
    Done {
        text: &'a str,
        completion: &'a bitnet_engine::session::Completion,
    },
}
