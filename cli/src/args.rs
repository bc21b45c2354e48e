//! The command line: subcommands and their options (clap).

use crate::backend::BackendKind;
use crate::bench;
use bitnet_engine::chat::ChatFormat;
use bitnet_engine::kernels::KernelChoice;
use bitnet_engine::model::{ActMode, CpuOptions, HeadMode, KvType, Model};
use bitnet_engine::sampler::SamplerConfig;
use bitnet_engine::session::{GenerateOptions, LoadSettings};
use bitnet_engine::tokenizer::PreTokenizerChoice;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bitnet",
    version,
    about = "BitNet b1.58 ternary LLM inference from GGUF files"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum Act {
    Int8,
    F32,
}

#[derive(clap::Args, Clone)]
pub(crate) struct RunOpts {
    /// Activation mode of the BitLinear layers.
    #[arg(long, value_enum, default_value = "int8")]
    pub(crate) act: Act,
    /// Worker threads for the matrix kernels.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// KV cache size in tokens (default: the model's context length, at most 4096).
    #[arg(long)]
    pub(crate) n_ctx: Option<usize>,
    /// Use the scalar reference kernels instead of SIMD.
    #[arg(long)]
    pub(crate) scalar: bool,
    /// LM head: as stored in the file; an int8 copy built at load time (faster, smaller);
    /// `int8-exact`, the int8 copy with each token's best 64 candidates scored again from
    /// the file's float rows (the float head's logits where sampling looks, the int8
    /// head's memory; CPU only, reads the model file while it runs); or `int4-exact`, the
    /// same over a 4-bit copy (half the int8 head's memory).
    #[arg(long, value_enum, default_value = "file")]
    pub(crate) head: Head,
    /// KV cache: f32 (the reference's arithmetic) or f16 (half the memory); the CPU
    /// backend's (the GPU keeps f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) kv_cache: KvCache,
    /// Where the forward pass runs: the CPU, or the GPU through wgpu (int8 activations only).
    #[arg(long, value_enum, default_value = "cpu")]
    pub(crate) backend: BackendKind,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Head {
    File,
    Int8,
    Int8Exact,
    Int4Exact,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum KvCache {
    F32,
    F16,
}

impl KvCache {
    pub fn kv_type(self) -> KvType {
        match self {
            KvCache::F32 => KvType::F32,
            KvCache::F16 => KvType::F16,
        }
    }
}

impl Head {
    pub fn mode(self) -> HeadMode {
        match self {
            Head::File => HeadMode::File,
            Head::Int8 => HeadMode::Int8,
            Head::Int8Exact => HeadMode::Int8Exact,
            Head::Int4Exact => HeadMode::Int4Exact,
        }
    }
}

impl RunOpts {
    pub(crate) fn cpu(&self, model: &Model) -> CpuOptions {
        CpuOptions {
            act: if self.act == Act::F32 {
                ActMode::F32
            } else {
                ActMode::Int8
            },
            kernels: if self.scalar {
                KernelChoice::Scalar
            } else {
                KernelChoice::Auto
            },
            threads: self.threads,
            n_ctx: Some(self.n_ctx.unwrap_or(model.config.n_ctx_train.min(4096))),
            kv: self.kv_cache.kv_type(),
        }
    }
}

/// How text becomes tokens and a conversation a prompt.
#[derive(clap::Args, Clone)]
pub(crate) struct TextOpts {
    /// Chat format: `auto` (the file's template, except that bitnet.cpp's converter
    /// template is replaced by the 2B4T format the model was trained with), `gguf` (the
    /// file's template as written), `bitnet` (the 2B4T format), `text` (a base model's
    /// plain continuation, what `auto` picks for a file with neither a template nor
    /// `<|eot_id|>`), or a Jinja file.
    #[arg(long, default_value = "auto")]
    pub(crate) chat_format: String,
    /// Pre-tokenizer: `auto` (the file's; Llama-3's for a Llama-3 vocabulary when the
    /// file names none), or a llama.cpp name such as `default` (what bitnet.cpp uses for
    /// the 2B4T file) or `llama-bpe`.
    #[arg(long = "pre", default_value = "auto")]
    pub(crate) pre: String,
}

impl TextOpts {
    pub(crate) fn settings(&self, head: HeadMode) -> bitnet_engine::Result<LoadSettings> {
        let chat_format = match self.chat_format.as_str() {
            f @ ("auto" | "gguf" | "bitnet" | "text") => ChatFormat::parse(f),
            path => ChatFormat::Jinja(std::fs::read_to_string(path).map_err(|e| {
                bitnet_engine::Error::InvalidArgument(format!(
                    "--chat-format {path}: expected auto, gguf, bitnet, text or a Jinja file ({e})"
                ))
            })?),
        };
        Ok(LoadSettings {
            head,
            chat_format,
            pre_tokenizer: PreTokenizerChoice::parse(&self.pre),
        })
    }
}

#[derive(clap::Args, Clone)]
pub(crate) struct SampleOpts {
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub(crate) temp: Option<f32>,
    #[arg(long)]
    pub(crate) top_k: Option<usize>,
    #[arg(long)]
    pub(crate) top_p: Option<f32>,
    #[arg(long)]
    pub(crate) min_p: Option<f32>,
    #[arg(long)]
    pub(crate) repeat_penalty: Option<f32>,
    /// Tokens back that the repeat penalty looks at (default 64).
    #[arg(long)]
    pub(crate) repeat_window: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// Do not stop generations that repeat themselves.
    #[arg(long)]
    pub(crate) no_loop_guard: bool,
}

impl SampleOpts {
    pub(crate) fn options(&self, max_tokens: usize, greedy_default: bool) -> GenerateOptions {
        let base = if greedy_default {
            SamplerConfig::greedy()
        } else {
            SamplerConfig::default()
        };
        let mut opts = GenerateOptions {
            max_tokens,
            sampler: SamplerConfig {
                temperature: self.temp.unwrap_or(base.temperature),
                top_k: self.top_k.unwrap_or(base.top_k),
                top_p: self.top_p.unwrap_or(base.top_p),
                min_p: self.min_p.unwrap_or(base.min_p),
                repetition_penalty: self.repeat_penalty.unwrap_or(base.repetition_penalty),
                repeat_window: self.repeat_window.unwrap_or(64),
                seed: self.seed,
            },
            stop: self.stop.clone(),
            ..GenerateOptions::default()
        };
        if self.no_loop_guard {
            opts.loop_guard = None;
        }
        opts
    }
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Architecture, shapes, tensor types and sizes; the tokenizer's special tokens,
    /// stop set and pre-tokenizer; the chat format and why it was chosen.
    Info {
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        text: TextOpts,
    },
    /// Token ids of a text, as a JSON array.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        /// Parse special-token text such as <|eot_id|>.
        #[arg(long)]
        special: bool,
        #[arg(long)]
        no_bos: bool,
        #[command(flatten)]
        opts: TextOpts,
    },
    /// The prompt a chat request feeds the model, as JSON: the chat format, the
    /// rendered text and its token ids (to compare with another runtime).
    ChatPrompt {
        #[arg(long)]
        model: PathBuf,
        /// A JSON array of {"role", "content"} messages.
        #[arg(long)]
        messages: PathBuf,
        #[command(flatten)]
        text: TextOpts,
    },
    /// Logits after every token, as float32 .npy of shape [n_tokens, n_vocab].
    Logits {
        #[arg(long)]
        model: PathBuf,
        /// Comma-separated ids, used exactly as given (no BOS added).
        #[arg(long)]
        tokens: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Generate a continuation (greedy by default).
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(short = 'n', long = "max-tokens", default_value_t = 64)]
        n: usize,
        /// Wrap the prompt in the model's chat template.
        #[arg(long)]
        chat: bool,
        /// With --chat: a system message before the prompt.
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// Print JSON with the text, ids (prompt_ids: every token fed) and timings.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        run: RunOpts,
        #[command(flatten)]
        sample: SampleOpts,
        #[command(flatten)]
        text: TextOpts,
    },
    /// Interactive multi-turn chat in the terminal.
    Chat {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        system: Option<String>,
        #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
        n: usize,
        #[command(flatten)]
        run: RunOpts,
        #[command(flatten)]
        sample: SampleOpts,
        #[command(flatten)]
        text: TextOpts,
    },
    /// Split a model into parts like llama.cpp's gguf-split (OUT-00001-of-0000N.gguf, ...).
    Split {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        parts: usize,
        /// Path prefix of the parts.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a random BitNet model (deterministic by seed).
    Synth {
        /// 2b4t, tiny, or H,FF,L,HEADS,KV,VOCAB.
        #[arg(long)]
        shape: String,
        /// I2_S, TQ2_0, TQ1_0, F16 or F32.
        #[arg(long)]
        wtype: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `synthetic` (this project's small vocabulary), or `official`: the official
        /// 2B4T file's exact header (its keys, order, tensor order and chat template)
        /// with the vocabulary of --vocab; I2_S only.
        #[arg(long, value_enum, default_value = "synthetic")]
        layout: Layout,
        /// A GGUF whose tokens, types and merges the official layout takes (e.g.
        /// tests/fixtures/llama3-vocab.gguf); its size sets the vocabulary size.
        #[arg(long, required_if_eq("layout", "official"))]
        vocab: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a trained checkpoint as GGUF: DIR/checkpoint.safetensors (latent f32
    /// weights under GGUF tensor names), DIR/config.json and DIR/tokenizer.json, as
    /// train/train.py leaves them. Linear layers are quantized absmean-ternary.
    Import {
        /// The training output folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// I2_S, TQ2_0, TQ1_0, or F16 (the latent weights, unquantized).
        #[arg(long)]
        wtype: String,
        /// general.name of the file.
        #[arg(long, default_value = "bitnet-tiny-brown")]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Perplexity of a text file, as JSON (llama.cpp's method: non-overlapping windows of
    /// --ctx tokens, the second half of each scored), and with --ref-logits the KL
    /// divergence and top-1 agreement against a reference run of the same windows.
    Perplexity {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        file: PathBuf,
        /// Window size in tokens.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Write the scored rows' logits as .npy [rows, n_vocab] f32, for --ref-logits.
        #[arg(long)]
        save_logits: Option<PathBuf>,
        /// Logits saved by a reference run (exact settings) on the same file and --ctx.
        #[arg(long)]
        ref_logits: Option<PathBuf>,
        #[command(flatten)]
        run: RunOpts,
        #[command(flatten)]
        text: TextOpts,
    },
    /// Prefill and decode speed (median of several runs) and peak memory, as JSON.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum Layout {
    Synthetic,
    Official,
}
