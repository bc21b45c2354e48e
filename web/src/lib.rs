//! JavaScript bindings of the engine (wasm-bindgen). An `Engine` takes the model
//! file chunk by chunk as it downloads, then tokenizes, chats and generates one step
//! per call (a prefill chunk or a token), so the caller can abort between steps. Errors reach JavaScript as `Error`s with a
//! machine-readable `kind`; panics are printed to the console (and the call
//! throws `RuntimeError: unreachable`), never a silent hang.

use bitnet_engine::chat::{ChatFormat, ChatMessage};
use bitnet_engine::formats::DenseMatrix;
use bitnet_engine::gguf::{merge_split, FileBytes, GgufFile, GgufLoader, LoadOptions, LoadPhase};
use bitnet_engine::kernels::KernelChoice;
use bitnet_engine::model::{ActMode, Backend, CpuBackend, CpuOptions, HeadMode, HeadTap, Logits};
use bitnet_engine::session::{
    GenerateOptions, Generation, LoadSettings, LoadedModel, Session, Step, Usage,
};
use bitnet_engine::tokenizer::PreTokenizerChoice;
use serde::Serialize;
use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

mod file_source;
#[cfg(feature = "webgpu")]
mod gpu;
mod options;
mod replies;
mod self_test;
pub use self_test::kernel_self_test;
mod thread_choice;
mod threads;

use options::{bad_options, from_js, EngineOptions};
use replies::{JsStep, ModelInfo, Progress, Stats};

/// What wasm32 addresses: the default memory limit.
const ADDRESS_SPACE: u64 = 4 << 30;
/// Of the memory limit, what the model's tensors may not take: room for the KV cache,
/// the tokenizer and scratch.
const MODEL_RESERVE: u64 = 512 << 20;
/// Room kept for the forward pass's scratch and the tokenizer when a KV cache is sized.
const SCRATCH_RESERVE: u64 = 64 << 20;

/// Wasm memory in use now (the model, once loaded).
fn memory_in_use() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size::<0>() as u64 * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Incremental SHA-256, to check a download against the hash its publisher gave
/// without holding the whole file.
#[wasm_bindgen]
#[derive(Default)]
pub struct Sha256(sha2::Sha256);

#[wasm_bindgen]
impl Sha256 {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        use sha2::Digest;
        self.0.update(chunk);
    }

    /// The digest as lowercase hex; the hasher starts over afterwards.
    pub fn hex(&mut self) -> String {
        use sha2::Digest;
        format!("{:x}", self.0.finalize_reset())
    }
}

pub(crate) fn js_error(e: bitnet_engine::Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Reflect::set on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"kind".into(), &e.kind().into());
    err.into()
}

fn to_js<T: Serialize>(v: &T) -> JsValue {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

#[wasm_bindgen]
pub struct Engine {
    opts: EngineOptions,
    loader: Option<GgufLoader<HeadTap>>,
    /// Earlier parts of a split model, parsed.
    parts: Vec<GgufFile>,
    /// The int8 head, built while its part streamed in.
    head: Option<DenseMatrix>,
    /// The offline copy of the file, for the exact heads (`keepOfflineCopy`).
    source: Option<Arc<dyn FileBytes>>,
    model: Option<LoadedModel>,
    /// Shared with the futures of the async methods (`stepAsync`, `useGpu`).
    live: Rc<RefCell<Option<Live>>>,
    kernels: String,
}

/// A loaded model's session and what runs in it.
struct Live {
    session: Session,
    /// The generation `step()` runs.
    generation: Option<Generation>,
    last_usage: Option<Usage>,
    /// The WebGPU device while the GPU backend runs (tests destroy it).
    #[cfg(feature = "webgpu")]
    gpu_device: Option<bitnet_engine::gpu::wgpu::Device>,
}

#[wasm_bindgen]
impl Engine {
    /// `options`: `{ nCtx?, expectedBytes?, act?: "int8" | "f32", scalar? }`.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<Engine, JsValue> {
        let opts: EngineOptions = from_js(options)?;
        let mut engine = Engine {
            opts,
            loader: None,
            parts: Vec::new(),
            head: None,
            source: None,
            model: None,
            live: Rc::new(RefCell::new(None)),
            kernels: String::new(),
        };
        engine.loader = Some(engine.part_loader(engine.opts.expected_bytes)?);
        Ok(engine)
    }

    /// Feeds the next bytes of the GGUF file (any chunk size).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let loader = self.loader.as_mut().ok_or_else(|| {
            js_error(bitnet_engine::Error::InvalidArgument(
                "the model is already loaded".into(),
            ))
        })?;
        loader.push(chunk).map_err(|e| {
            self.loader = None;
            js_error(e)
        })
    }

    /// `{ phase: "header" | "tensors" | "done" | "ready", bytesReceived, bytesExpected }`.
    pub fn progress(&self) -> JsValue {
        match &self.loader {
            Some(l) => {
                let p = l.progress();
                to_js(&Progress {
                    phase: match p.phase {
                        LoadPhase::Header => "header",
                        LoadPhase::Tensors => "tensors",
                        LoadPhase::Done => "done",
                    },
                    bytes_received: p.bytes_received as f64,
                    bytes_expected: p.bytes_expected.map(|b| b as f64),
                })
            }
            None => to_js(&Progress {
                phase: "ready",
                bytes_received: 0.0,
                bytes_expected: None,
            }),
        }
    }

    /// Ends one part of a split model (`gguf-split` shards, loaded in order); the
    /// next `push` starts the next part, of `expectedBytes` bytes when known.
    #[wasm_bindgen(js_name = nextPart)]
    pub fn next_part(&mut self, expected_bytes: Option<f64>) -> Result<(), JsValue> {
        let loader = self.take_loader()?;
        let file = self.finish_part(loader)?;
        self.parts.push(file);
        self.loader = Some(self.part_loader(expected_bytes)?);
        Ok(())
    }

    fn memory_limit(&self) -> u64 {
        self.opts
            .memory_limit
            .map_or(ADDRESS_SPACE, |b| (b.max(0.0) as u64).min(ADDRESS_SPACE))
    }

    /// A loader for the next part: its tensors may take what the model limit leaves
    /// beside the parts already loaded (one budget for the whole model).
    fn part_loader(&self, expected_bytes: Option<f64>) -> Result<GgufLoader<HeadTap>, JsValue> {
        let loaded: u64 = self
            .parts
            .iter()
            .flat_map(|p| {
                // A tapped head is held as int8 rows: a byte a value.
                let held = p.tensors.iter().map(|t| t.info.nbytes);
                held.chain(p.tapped.iter().map(|t| t.n_elements()))
            })
            .sum();
        let limit = self
            .memory_limit()
            .saturating_sub(MODEL_RESERVE)
            .saturating_sub(loaded);
        if let Some(n) = expected_bytes {
            if n as u64 > limit {
                return Err(js_error(bitnet_engine::Error::TooLarge {
                    needed: loaded + n as u64,
                    limit: loaded + limit,
                }));
            }
        }
        Ok(GgufLoader::with_tap(
            LoadOptions {
                expected_len: expected_bytes.map(|n| n as u64),
                max_tensor_bytes: Some(limit),
            },
            HeadTap::new(self.head_mode()?),
        ))
    }

    fn head_mode(&self) -> Result<HeadMode, JsValue> {
        match self.opts.head.as_deref() {
            None | Some("file") => Ok(HeadMode::File),
            Some("int8") => Ok(HeadMode::Int8),
            Some("int8-exact") => Ok(HeadMode::Int8Exact),
            Some("int4-exact") => Ok(HeadMode::Int4Exact),
            Some(other) => Err(js_error(bitnet_engine::Error::InvalidArgument(format!(
                "head '{other}': expected \"file\", \"int8\", \"int8-exact\" or \"int4-exact\""
            )))),
        }
    }

    /// Ends one part's stream, keeping the head its tap built.
    fn finish_part(&mut self, loader: GgufLoader<HeadTap>) -> Result<GgufFile, JsValue> {
        let (file, tap) = loader.finish_with_tap().map_err(js_error)?;
        if let Some(head) = tap.into_head().map_err(js_error)? {
            self.head = Some(head);
        }
        Ok(file)
    }

    /// Bytes a new KV cache may take: what the memory limit leaves beside the memory in
    /// use and the scratch reserve.
    fn kv_budget(&self) -> u64 {
        self.memory_limit()
            .saturating_sub(memory_in_use())
            .saturating_sub(SCRATCH_RESERVE)
    }

    fn take_loader(&mut self) -> Result<GgufLoader<HeadTap>, JsValue> {
        self.loader.take().ok_or_else(|| {
            js_error(bitnet_engine::Error::InvalidArgument(
                "the model is already loaded (or its load failed)".into(),
            ))
        })
    }

    /// Keeps the model file readable after `finish` through `handle`, a synchronous
    /// access handle (`createSyncAccessHandle()`) on its complete offline copy of
    /// `bytes` bytes: what the exact heads read their float rows from. The engine
    /// closes the handle when it is freed (or when the load fails).
    #[wasm_bindgen(js_name = keepOfflineCopy)]
    pub fn keep_offline_copy(
        &mut self,
        handle: web_sys::FileSystemSyncAccessHandle,
        bytes: f64,
    ) -> Result<(), JsValue> {
        let copy = file_source::OfflineCopy::new(handle, bytes as u64).map_err(js_error)?;
        self.source = Some(Arc::new(copy));
        Ok(())
    }

    /// Ends the download and builds the model; returns its description.
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        // Taken first: a failed load closes the offline copy too.
        let source = self.source.take();
        let loader = self.take_loader()?;
        let last = self.finish_part(loader)?;
        let mut parts = std::mem::take(&mut self.parts);
        parts.push(last);
        let file = merge_split(parts).map_err(js_error)?;
        let settings = LoadSettings {
            head: self.head_mode()?,
            chat_format: ChatFormat::parse(self.opts.chat_template.as_deref().unwrap_or("auto")),
            pre_tokenizer: PreTokenizerChoice::parse(
                self.opts.pre_tokenizer.as_deref().unwrap_or("auto"),
            ),
        };
        let loaded = LoadedModel::from_gguf_with_source(file, self.head.take(), &settings, source)
            .map_err(js_error)?;
        let cfg = &loaded.model.config;
        let n_ctx = self.opts.n_ctx.unwrap_or(2048).min(cfg.n_ctx_train).max(16);
        let backend = self.cpu_backend(&loaded.model, n_ctx)?;
        self.kernels = backend.kernels_name().to_string();
        let info = ModelInfo {
            architecture: cfg.arch.clone(),
            n_layer: cfg.n_layer,
            n_embd: cfg.n_embd,
            n_vocab: cfg.n_vocab,
            n_ctx,
            weights_bytes: loaded.model.weights.size_bytes(),
            kv_cache_bytes: backend.kv_cache_bytes(),
            kv_cache: self.opts.kv_cache.unwrap_or_default(),
            kernels: self.kernels.clone(),
            head: self.opts.head.clone().unwrap_or_else(|| "file".into()),
            chat_format: loaded.template.info().clone(),
            pre_tokenizer: loaded.tokenizer.pre_tokenizer().clone(),
            bos_token: loaded.tokenizer.bos(),
            eos_token: loaded.tokenizer.eos(),
            eot_token: loaded.tokenizer.eot(),
            stop_tokens: loaded.tokenizer.stop_tokens().to_vec(),
        };
        *self.live.borrow_mut() = Some(Live {
            session: Session::new(
                Box::new(backend),
                Arc::clone(&loaded.tokenizer),
                Arc::clone(&loaded.template),
            ),
            generation: None,
            last_usage: None,
            #[cfg(feature = "webgpu")]
            gpu_device: None,
        });
        self.model = Some(loaded);
        Ok(to_js(&info))
    }

    /// A CPU backend with a KV cache of `n_ctx` positions, within the memory left.
    fn cpu_backend(
        &self,
        model: &Arc<bitnet_engine::model::Model>,
        n_ctx: usize,
    ) -> Result<CpuBackend, JsValue> {
        bitnet_engine::backends::cpu(model, &self.backend_options(n_ctx)).map_err(js_error)
    }

    /// How this engine builds a backend with a KV cache of `n_ctx` positions.
    fn backend_options(&self, n_ctx: usize) -> bitnet_engine::backends::BackendOptions {
        bitnet_engine::backends::BackendOptions {
            cpu: self.cpu_options(Some(n_ctx)),
            kv_budget: Some(self.kv_budget()),
            ..Default::default()
        }
    }

    fn cpu_options(&self, n_ctx: Option<usize>) -> CpuOptions {
        CpuOptions {
            act: if self.opts.act.as_deref() == Some("f32") {
                ActMode::F32
            } else {
                ActMode::Int8
            },
            kernels: if self.opts.scalar {
                KernelChoice::Scalar
            } else {
                KernelChoice::Auto
            },
            threads: self.opts.threads.unwrap_or_else(threads::available),
            n_ctx,
            kv: self.opts.kv_cache.unwrap_or_default(),
        }
    }

    fn loaded(&self) -> Result<&LoadedModel, JsValue> {
        self.model.as_ref().ok_or_else(|| {
            js_error(bitnet_engine::Error::InvalidArgument(
                "no model is loaded yet".into(),
            ))
        })
    }

    pub fn tokenize(&self, text: &str, add_bos: bool, special: bool) -> Result<Vec<u32>, JsValue> {
        let m = self.loaded()?;
        m.tokenizer
            .encode(text, add_bos && m.tokenizer.add_bos_default(), special)
            .map_err(js_error)
    }

    pub fn detokenize(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        Ok(self.loaded()?.tokenizer.decode(&ids, false))
    }

    /// Starts a chat turn to be run with `step()` (for callers that must stay
    /// responsive, such as a worker that has to see an abort message).
    #[wasm_bindgen(js_name = beginChat)]
    pub fn begin_chat(&mut self, messages: JsValue, options: JsValue) -> Result<(), JsValue> {
        let messages: Vec<ChatMessage> =
            serde_wasm_bindgen::from_value(messages).map_err(bad_options)?;
        let opts: GenerateOptions = from_js(options)?;
        let mut live = self.live()?;
        let g = live.session.begin_chat(&messages, &opts);
        live.generation = Some(g.map_err(js_error)?);
        Ok(())
    }

    /// Starts a raw completion to be run with `step()`.
    #[wasm_bindgen(js_name = beginComplete)]
    pub fn begin_complete(&mut self, prompt: &str, options: JsValue) -> Result<(), JsValue> {
        let opts: GenerateOptions = from_js(options)?;
        let mut live = self.live()?;
        let g = live.session.begin_complete(prompt, &opts);
        live.generation = Some(g.map_err(js_error)?);
        Ok(())
    }

    /// Runs one prefill chunk or one token of the current generation:
    /// `{type: "prefill", done, total}`, `{type: "token", id, text}`, or
    /// `{type: "done", text, completion}` (then the generation is over).
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        let mut live = self.live()?;
        let mut g = live.take_generation()?;
        let step = live.session.step(&mut g);
        live.after_step(step, g)
    }

    /// Ends the current generation now; returns its completion (finish reason
    /// "aborted"), or `null` when none was running.
    #[wasm_bindgen(js_name = abortGeneration)]
    pub fn abort_generation(&mut self) -> Result<JsValue, JsValue> {
        let mut live = self.live()?;
        let Some(g) = live.generation.take() else {
            return Ok(JsValue::NULL);
        };
        let completion = live.session.abort(g);
        live.last_usage = Some(completion.usage.clone());
        Ok(to_js(&completion))
    }

    fn live(&self) -> Result<RefMut<'_, Live>, JsValue> {
        live_of(&self.live)
    }

    /// Logits after every token (fresh KV cache), row-major `[tokens.length × n_vocab]`.
    pub fn logits(&self, tokens: Vec<u32>) -> Result<Vec<f32>, JsValue> {
        let m = self.loaded()?;
        let mut backend = self.cpu_backend(&m.model, tokens.len().max(1))?;
        backend.forward(&tokens, Logits::All).map_err(js_error)
    }

    /// Prefill `prompt_tokens` fixed ids, then decode `gen_tokens` greedily; returns
    /// `{ prefill_tps, decode_tps }` (one run; the caller takes medians).
    pub fn benchmark(&self, prompt_tokens: usize, gen_tokens: usize) -> Result<JsValue, JsValue> {
        let m = self.loaded()?;
        let n_ctx = prompt_tokens.saturating_add(gen_tokens).saturating_add(1);
        let mut backend = self.cpu_backend(&m.model, n_ctx)?;
        let speed = bitnet_engine::bench::measure(&mut backend, prompt_tokens, gen_tokens)
            .map_err(js_error)?;
        Ok(to_js(&speed))
    }

    /// Test hook: a panic inside the engine, as a bug would raise, so that the package's
    /// replacement of a trapped worker can be tested.
    #[wasm_bindgen(js_name = panicForTesting)]
    pub fn panic_for_testing(&self) {
        panic!("a panic raised by panicForTesting");
    }

    #[wasm_bindgen(js_name = resetChat)]
    pub fn reset_chat(&mut self) -> Result<(), JsValue> {
        let mut live = self.live()?;
        live.generation = None;
        live.session.reset();
        Ok(())
    }

    pub fn stats(&self) -> JsValue {
        // Asked of the module itself: in the threads builds the buffer is a
        // SharedArrayBuffer, and this stays right whichever it is.
        #[cfg(target_arch = "wasm32")]
        let memory = (core::arch::wasm32::memory_size::<0>() * 65536) as f64;
        #[cfg(not(target_arch = "wasm32"))]
        let memory = 0.0;
        let live = self.live.try_borrow().ok();
        let live = live.as_ref().and_then(|l| l.as_ref());
        to_js(&Stats {
            backend: live.map(|l| l.session.backend().name()).unwrap_or_default(),
            kernels: self.kernels.clone(),
            wasm_memory_bytes: memory,
            cached_tokens: live.map_or(0, |l| l.session.cached_tokens().len()),
            last_usage: live.and_then(|l| l.last_usage.clone()),
        })
    }
}

impl Live {
    fn take_generation(&mut self) -> Result<Generation, JsValue> {
        self.generation.take().ok_or_else(|| {
            js_error(bitnet_engine::Error::InvalidArgument(
                "no generation is running".into(),
            ))
        })
    }

    /// Turns a step's outcome into its JS form; the generation stays for the next step
    /// unless it is done (after an error too, so it can go on after a backend change).
    fn after_step(
        &mut self,
        step: bitnet_engine::Result<Step>,
        g: Generation,
    ) -> Result<JsValue, JsValue> {
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                self.generation = Some(g);
                return Err(js_error(e));
            }
        };
        Ok(match step {
            Step::Prefill { done, total } => {
                self.generation = Some(g);
                to_js(&JsStep::Prefill { done, total })
            }
            Step::Token { id, text } => {
                self.generation = Some(g);
                to_js(&JsStep::Token { id, text: &text })
            }
            Step::Done { text, completion } => {
                self.last_usage = Some(completion.usage.clone());
                to_js(&JsStep::Done {
                    text: &text,
                    completion: &completion,
                })
            }
        })
    }
}

/// The live session, or an error a caller can act on: no model yet, or the engine is
/// in the middle of an async call (requests must not overlap).
fn live_of(cell: &RefCell<Option<Live>>) -> Result<RefMut<'_, Live>, JsValue> {
    let busy = || {
        js_error(bitnet_engine::Error::InvalidArgument(
            "the engine is busy with another call; wait for it".into(),
        ))
    };
    let guard = cell.try_borrow_mut().map_err(|_| busy())?;
    RefMut::filter_map(guard, |l| l.as_mut()).map_err(|_| {
        js_error(bitnet_engine::Error::InvalidArgument(
            "no model is loaded yet".into(),
        ))
    })
}
