//! `bitnet`: run BitNet b1.58 GGUF models from the terminal.

use bitnet_engine::chat::{ChatFormat, ChatMessage};
use bitnet_engine::gguf::{GgmlType, GgufFile};
use bitnet_engine::import;
use bitnet_engine::kernels::KernelChoice;
use bitnet_engine::model::{ActMode, Backend, CpuBackend, CpuOptions, HeadMode, Logits, Model};
use bitnet_engine::sampler::SamplerConfig;
use bitnet_engine::session::{
    chat_parts, chat_prompt_ids, Event, Flow, GenerateOptions, LoadSettings, LoadedModel, Session,
};
use bitnet_engine::synth::{self, SynthShape};
use bitnet_engine::tokenizer::PreTokenizerChoice;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

mod bench;

#[derive(Parser)]
#[command(
    name = "bitnet",
    version,
    about = "BitNet b1.58 ternary LLM inference from GGUF files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Act {
    Int8,
    F32,
}

#[derive(clap::Args, Clone)]
struct RunOpts {
    /// Activation mode of the BitLinear layers.
    #[arg(long, value_enum, default_value = "int8")]
    act: Act,
    /// Worker threads for the matrix kernels.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// KV cache size in tokens (default: the model's context length, at most 4096).
    #[arg(long)]
    n_ctx: Option<usize>,
    /// Use the scalar reference kernels instead of SIMD.
    #[arg(long)]
    scalar: bool,
    /// LM head: as stored in the file, or an int8 copy built at load time (faster, smaller).
    #[arg(long, value_enum, default_value = "file")]
    head: Head,
    /// Where the forward pass runs: the CPU, or the GPU through wgpu (int8 activations only).
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendKind,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// The backend `kind` for `model`, sized and configured by `opts`.
pub fn make_backend(
    kind: BackendKind,
    model: &Arc<Model>,
    opts: CpuOptions,
) -> bitnet_engine::Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Cpu => Ok(Box::new(CpuBackend::try_new(
            Arc::clone(model),
            opts,
            None,
        )?)),
        BackendKind::Gpu => gpu_backend(model, opts),
    }
}

#[cfg(feature = "gpu")]
fn gpu_backend(model: &Arc<Model>, opts: CpuOptions) -> bitnet_engine::Result<Box<dyn Backend>> {
    use bitnet_engine::gpu::{GpuBackend, GpuOptions};
    if opts.act != ActMode::Int8 {
        return Err(bitnet_engine::Error::InvalidArgument(
            "the GPU backend runs int8 activations only (drop --act f32)".into(),
        ));
    }
    let gpu = pollster::block_on(GpuBackend::new(
        Arc::clone(model),
        GpuOptions {
            n_ctx: opts.n_ctx,
            ..GpuOptions::default()
        },
    ))?;
    Ok(Box::new(gpu))
}

#[cfg(not(feature = "gpu"))]
fn gpu_backend(_: &Arc<Model>, _: CpuOptions) -> bitnet_engine::Result<Box<dyn Backend>> {
    Err(bitnet_engine::Error::InvalidArgument(
        "this bitnet was built without the `gpu` feature".into(),
    ))
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Head {
    File,
    Int8,
}

impl Head {
    pub fn mode(self) -> HeadMode {
        match self {
            Head::File => HeadMode::File,
            Head::Int8 => HeadMode::Int8,
        }
    }
}

impl RunOpts {
    fn cpu(&self, model: &Model) -> CpuOptions {
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
        }
    }
}

/// How text becomes tokens and a conversation a prompt.
#[derive(clap::Args, Clone)]
struct TextOpts {
    /// Chat format: `auto` (the file's template, except that bitnet.cpp's converter
    /// template is replaced by the 2B4T format the model was trained with), `gguf` (the
    /// file's template as written), `bitnet` (the 2B4T format), `text` (a base model's
    /// plain continuation, what `auto` picks for a file with neither a template nor
    /// `<|eot_id|>`), or a Jinja file.
    #[arg(long, default_value = "auto")]
    chat_format: String,
    /// Pre-tokenizer: `auto` (the file's; Llama-3's for a Llama-3 vocabulary when the
    /// file names none), or a llama.cpp name such as `default` (what bitnet.cpp uses for
    /// the 2B4T file) or `llama-bpe`.
    #[arg(long = "pre", default_value = "auto")]
    pre: String,
}

impl TextOpts {
    fn settings(&self, head: HeadMode) -> bitnet_engine::Result<LoadSettings> {
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
struct SampleOpts {
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temp: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repeat_penalty: Option<f32>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Do not stop generations that repeat themselves.
    #[arg(long)]
    no_loop_guard: bool,
}

impl SampleOpts {
    fn options(&self, max_tokens: usize, greedy_default: bool) -> GenerateOptions {
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
                repeat_window: 64,
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
enum Cmd {
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

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error [{}]: {e}", e.kind());
        std::process::exit(1);
    }
}

fn parse_wtype(wtype: &str) -> bitnet_engine::Result<GgmlType> {
    GgmlType::from_name(wtype).ok_or_else(|| {
        bitnet_engine::Error::InvalidArgument(format!(
            "--wtype {wtype}: expected I2_S, TQ2_0, TQ1_0, F16 or F32"
        ))
    })
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Layout {
    Synthetic,
    Official,
}

fn load(path: &PathBuf, run: &RunOpts, text: &TextOpts) -> bitnet_engine::Result<LoadedModel> {
    LoadedModel::from_gguf_with(GgufFile::from_path(path)?, &text.settings(run.head.mode())?)
}

fn session(m: &LoadedModel, run: &RunOpts) -> bitnet_engine::Result<Session> {
    let backend = make_backend(run.backend, &m.model, run.cpu(&m.model))?;
    Ok(Session::new(
        backend,
        Arc::clone(&m.tokenizer),
        Arc::clone(&m.template),
    ))
}

fn run(cli: Cli) -> bitnet_engine::Result<()> {
    match cli.cmd {
        Cmd::Info { model, text } => info(&model, &text),
        Cmd::Tokenize {
            model,
            text,
            special,
            no_bos,
            opts,
        } => {
            // Only the vocabulary is needed: vocabulary-only GGUFs work too.
            let file = GgufFile::from_path(&model)?;
            let (tokenizer, _) = chat_parts(&file, &opts.settings(HeadMode::File)?)?;
            let ids = tokenizer.encode(&text, !no_bos && tokenizer.add_bos_default(), special)?;
            println!("{}", serde_json::to_string(&ids).unwrap());
            Ok(())
        }
        Cmd::ChatPrompt {
            model,
            messages,
            text,
        } => {
            let file = GgufFile::from_path(&model)?;
            let (tokenizer, template) = chat_parts(&file, &text.settings(HeadMode::File)?)?;
            let raw = std::fs::read_to_string(&messages)?;
            let messages: Vec<ChatMessage> = serde_json::from_str(&raw).map_err(|e| {
                bitnet_engine::Error::InvalidArgument(format!(
                    "{}: not a JSON array of {{\"role\", \"content\"}} messages ({e})",
                    messages.display()
                ))
            })?;
            let ids = chat_prompt_ids(&tokenizer, &template, &messages)?;
            let out = serde_json::json!({
                "chat_format": template.info(),
                "text": template.render(&messages, true)?,
                "ids": ids,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap());
            Ok(())
        }
        Cmd::Logits {
            model,
            tokens,
            out,
            run,
        } => {
            let ids: Vec<u32> = tokens
                .split(',')
                .map(|t| t.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    bitnet_engine::Error::InvalidArgument(format!(
                        "--tokens '{tokens}' is not a comma-separated list of ids"
                    ))
                })?;
            let mut file = GgufFile::from_path(&model)?;
            let mut model = Model::from_gguf(&mut file)?;
            model.set_head(run.head.mode());
            let model = Arc::new(model);
            let mut opts = run.cpu(&model);
            opts.n_ctx = Some(opts.n_ctx.unwrap_or(0).max(ids.len()));
            let mut backend = make_backend(run.backend, &model, opts)?;
            let logits = backend.forward(&ids, Logits::All)?;
            write_npy(
                &out,
                &[ids.len() as u64, model.config.n_vocab as u64],
                &logits,
            )?;
            Ok(())
        }
        Cmd::Generate {
            model,
            prompt,
            n,
            chat,
            system,
            json,
            run,
            sample,
            text,
        } => {
            let m = load(&model, &run, &text)?;
            let mut s = session(&m, &run)?;
            let opts = sample.options(n, true);
            let mut out = std::io::stdout();
            let mut stream = |e: Event| {
                if let (Event::Token { text, .. }, false) = (e, json) {
                    print!("{text}");
                    out.flush().ok();
                }
                Flow::Continue
            };
            let c = if chat {
                let mut messages: Vec<ChatMessage> =
                    system.into_iter().map(ChatMessage::system).collect();
                messages.push(ChatMessage::user(prompt));
                s.chat(&messages, &opts, &mut stream)?
            } else {
                s.complete(&prompt, &opts, &mut stream)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&c).unwrap());
            } else {
                println!();
            }
            Ok(())
        }
        Cmd::Chat {
            model,
            system,
            n,
            run,
            sample,
            text,
        } => chat(&model, system, n, &run, &sample, &text),
        Cmd::Split { model, parts, out } => {
            let file = GgufFile::from_path(&model)?;
            for (i, w) in bitnet_engine::gguf::split_writers(&file, parts)?
                .iter()
                .enumerate()
            {
                let path = format!("{}-{:05}-of-{parts:05}.gguf", out.display(), i + 1);
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                w.write_to(&mut f)?;
                f.flush()?;
                println!("{path}");
            }
            Ok(())
        }
        Cmd::Synth {
            shape,
            wtype,
            seed,
            layout,
            vocab,
            out,
        } => {
            let shape = SynthShape::parse(&shape)?;
            let ty = parse_wtype(&wtype)?;
            let vocab = match (layout, vocab) {
                (Layout::Official, _) if ty != GgmlType::I2S => {
                    return Err(bitnet_engine::Error::InvalidArgument(format!(
                        "--layout official writes I2_S, like the official file (not {ty})"
                    )))
                }
                (Layout::Official, Some(path)) => {
                    Some(bitnet_engine::tokenizer::VocabSpec::from_metadata(
                        &GgufFile::from_path(&path)?.metadata,
                    )?)
                }
                _ => None,
            };
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            match &vocab {
                Some(v) => synth::write_official(shape, v, seed, &mut f)?,
                None => synth::write_model(shape, ty, seed, &mut f)?,
            }
            f.flush()?;
            eprintln!(
                "wrote {} ({} bytes)",
                out.display(),
                std::fs::metadata(&out)?.len()
            );
            Ok(())
        }
        Cmd::Import {
            checkpoint,
            wtype,
            name,
            out,
        } => {
            let ty = parse_wtype(&wtype)?;
            let read = |f: &str| std::fs::read(checkpoint.join(f));
            let config: bitnet_engine::import::TrainedConfig =
                serde_json::from_slice(&read("config.json")?).map_err(|e| {
                    bitnet_engine::Error::InvalidArgument(format!("config.json: {e}"))
                })?;
            let tensors = import::read_safetensors(&read("checkpoint.safetensors")?)?;
            let vocab =
                import::read_hf_tokenizer(&String::from_utf8_lossy(&read("tokenizer.json")?))?;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            import::write_trained(&config, &tensors, &vocab, ty, &name, &mut f)?;
            f.flush()?;
            eprintln!(
                "wrote {} ({} bytes)",
                out.display(),
                std::fs::metadata(&out)?.len()
            );
            Ok(())
        }
        Cmd::Perplexity {
            model,
            file,
            ctx,
            save_logits,
            ref_logits,
            run,
            text,
        } => perplexity(&model, &file, ctx, save_logits, ref_logits, &run, &text),
        Cmd::Bench(args) => bench::run(args),
    }
}

fn info(path: &PathBuf, text: &TextOpts) -> bitnet_engine::Result<()> {
    let file = GgufFile::from_path(path)?;
    let (tokenizer, template) = chat_parts(&file, &text.settings(HeadMode::File)?)?;
    let named = |id: Option<u32>| {
        id.map(|i| serde_json::json!({"id": i, "text": String::from_utf8_lossy(tokenizer.token_bytes(i))}))
    };
    let md = &file.metadata;
    let mut tensors = serde_json::Map::new();
    let mut by_type: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for t in &file.tensors {
        tensors.insert(
            t.info.name.clone(),
            serde_json::json!({"type": t.info.ty.name(), "dims": t.info.dims, "bytes": t.info.nbytes}),
        );
        let e = by_type.entry(t.info.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.info.nbytes;
    }
    let config = bitnet_engine::model::ModelConfig::from_metadata(md);
    let out = serde_json::json!({
        "file": path.display().to_string(),
        "gguf_version": file.version,
        "architecture": md.get_str("general.architecture"),
        "name": md.get_str("general.name"),
        "config": config.as_ref().map(|c| serde_json::json!({
            "n_embd": c.n_embd, "n_ff": c.n_ff, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_head_kv": c.n_head_kv, "head_dim": c.head_dim, "n_vocab": c.n_vocab,
            "context_length": c.n_ctx_train, "rope_theta": c.rope_theta, "rms_eps": c.rms_eps,
            "activation": format!("{:?}", c.activation).to_lowercase(),
        })).map_err(|e| e.to_string()),
        "tied_embeddings": file.tensor("output.weight").is_none(),
        "tensor_types": by_type.iter().map(|(k, (n, b))| (k.clone(), serde_json::json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "tensor_bytes": file.tensors.iter().map(|t| t.info.nbytes).sum::<u64>(),
        "tokenizer": {
            "n_vocab": tokenizer.n_vocab(),
            "bos": named(tokenizer.bos()),
            "eos": named(tokenizer.eos()),
            "eot": named(tokenizer.eot()),
            "stop_tokens": tokenizer.stop_tokens().iter().map(|&i| named(Some(i))).collect::<Vec<_>>(),
            "pre_tokenizer": tokenizer.pre_tokenizer(),
        },
        "chat_format": template.info(),
        "metadata": md.entries().iter().map(|(k, v)| serde_json::json!({"key": k, "type": v.type_name()})).collect::<Vec<_>>(),
        "tensor_order": file.tensors.iter().map(|t| t.info.name.as_str()).collect::<Vec<_>>(),
        "tensors": tensors,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    Ok(())
}

fn perplexity(
    path: &PathBuf,
    file: &PathBuf,
    ctx: usize,
    save_logits: Option<PathBuf>,
    ref_logits: Option<PathBuf>,
    run: &RunOpts,
    text: &TextOpts,
) -> bitnet_engine::Result<()> {
    use bitnet_engine::quality;
    let m = load(path, run, text)?;
    let body = std::fs::read_to_string(file)?;
    let tokens = m
        .tokenizer
        .encode(&body, m.tokenizer.add_bos_default(), false)?;
    let mut opts = run.cpu(&m.model);
    opts.n_ctx = Some(ctx.max(1));
    let mut backend = make_backend(run.backend, &m.model, opts)?;
    let n_vocab = m.model.config.n_vocab;
    let rows = (tokens.len() / ctx.max(1)) * quality::scored_per_window(ctx.max(4));
    let mut saver = match &save_logits {
        Some(p) => {
            use npyz::WriterBuilder;
            let f = std::io::BufWriter::new(std::fs::File::create(p)?);
            Some(
                npyz::WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(&[rows as u64, n_vocab as u64])
                    .writer(f)
                    .begin_nd()?,
            )
        }
        None => None,
    };
    let reference = match &ref_logits {
        Some(p) => {
            let bytes = std::fs::read(p)?;
            let npy = npyz::NpyFile::new(&bytes[..])?;
            if npy.shape() != [rows as u64, n_vocab as u64] {
                return Err(bitnet_engine::Error::InvalidArgument(format!(
                    "--ref-logits {}: shape {:?}, but this run scores [{rows}, {n_vocab}] (same file and --ctx?)",
                    p.display(),
                    npy.shape()
                )));
            }
            Some(npy.into_vec::<f32>()?)
        }
        None => None,
    };
    let mut compare = quality::Compare::default();
    let mut at = 0;
    let report = quality::perplexity(
        backend.as_mut(),
        &tokens,
        ctx,
        m.tokenizer.bos().filter(|_| m.tokenizer.add_bos_default()),
        |scored, _| {
            if let Some(w) = saver.as_mut() {
                w.extend(scored.iter().copied())?;
            }
            if let Some(r) = &reference {
                compare.add(scored, &r[at..at + scored.len()], n_vocab)?;
            }
            at += scored.len();
            Ok(())
        },
    )?;
    if let Some(w) = saver {
        w.finish()?;
    }
    let mut out = serde_json::to_value(&report).unwrap();
    out["ctx"] = ctx.into();
    out["tokens"] = tokens.len().into();
    if reference.is_some() {
        let a = compare.result();
        out["kl_divergence"] = a.kl_divergence.into();
        out["kl_divergence_stderr"] = a.kl_divergence_stderr.into();
        out["top1_agreement"] = a.top1_agreement.into();
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    Ok(())
}

fn write_npy(path: &PathBuf, shape: &[u64], data: &[f32]) -> bitnet_engine::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(())
}

fn chat(
    path: &PathBuf,
    system: Option<String>,
    n: usize,
    run: &RunOpts,
    sample: &SampleOpts,
    text: &TextOpts,
) -> bitnet_engine::Result<()> {
    let m = load(path, run, text)?;
    let mut s = session(&m, run)?;
    let opts = sample.options(n, false);
    let mut messages: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
    eprintln!(
        "{} — type a message, /reset to start over, Ctrl-D to quit.",
        s.backend().name()
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if line.trim() == "/reset" {
            messages.retain(|m| m.role == "system");
            s.reset();
            continue;
        }
        messages.push(ChatMessage::user(line));
        let mut out = std::io::stdout();
        let c = s.chat(&messages, &opts, &mut |e| {
            if let Event::Token { text, .. } = e {
                print!("{text}");
                out.flush().ok();
            }
            Flow::Continue
        });
        match c {
            Ok(c) => {
                println!();
                eprintln!(
                    "[{:?}: {} tokens, prefill {:.1} tok/s ({} cached), decode {:.1} tok/s]",
                    c.finish_reason,
                    c.usage.completion_tokens,
                    c.usage.prefill_tps,
                    c.usage.cached_tokens,
                    c.usage.decode_tps
                );
                messages.push(ChatMessage::assistant(c.text));
            }
            Err(e) => {
                eprintln!("error [{}]: {e}", e.kind());
                messages.pop();
            }
        }
    }
}
