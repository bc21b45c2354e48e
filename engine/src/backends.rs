//! The one place that builds what runs a model, for the CLI and the bindings alike: the
//! CPU kernels, or the GPU (wgpu) once a short self-test agrees with the CPU, and the
//! CPU again when a GPU goes away ([`cpu`] with the same options).

use crate::error::Result;
use crate::model::{Backend, CpuBackend, CpuOptions, Model};
use std::sync::Arc;

/// Where the forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 natively, the browser's WebGPU on wasm32 (cargo
    /// feature `gpu`). Int8 activations only.
    Gpu,
}

/// Text whose tokens the GPU self-test forces through both backends (see
/// [`self_test_tokens`]).
pub const SELF_TEST_TEXT: &str = "The quick brown fox jumps over the lazy dog. 1 2 3";
const SELF_TEST_TOKENS: usize = 12;

/// The tokens of [`SELF_TEST_TEXT`] (at most 12), for [`BackendOptions::self_test`].
pub fn self_test_tokens(tokenizer: &crate::tokenizer::Tokenizer) -> Result<Vec<u32>> {
    let mut tokens = tokenizer.encode(SELF_TEST_TEXT, true, false)?;
    tokens.truncate(SELF_TEST_TOKENS);
    Ok(tokens)
}

#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// The kernels, threads and activation mode of the CPU, and the KV cache size
    /// (`n_ctx`) of either device.
    pub cpu: CpuOptions,
    /// Bytes the CPU's KV cache may take (a browser tab's memory left); `None`: no limit.
    pub kv_budget: Option<u64>,
    /// GPU only: prompts through the tiled matmul shader (default; see
    /// `GpuOptions::tiled_prefill`).
    pub gpu_tiled_prefill: bool,
    /// GPU only: time each forward pass with timestamp queries (`GpuOptions::profile`).
    pub gpu_profile: bool,
    /// GPU only: tokens run on both devices before the GPU is trusted; empty skips the
    /// check.
    pub self_test: Vec<u32>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            cpu: CpuOptions::default(),
            kv_budget: None,
            gpu_tiled_prefill: true,
            gpu_profile: false,
            self_test: Vec::new(),
        }
    }
}

/// What the GPU's self-test saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfTest {
    /// Positions whose top-1 token agreed with the CPU's.
    pub agreed: usize,
    /// Positions checked: the prompt path, then the decode path.
    pub positions: usize,
}

/// A backend built for a model.
pub struct Built {
    pub backend: Box<dyn Backend>,
    /// The GPU's self-test, when it ran.
    pub self_test: Option<SelfTest>,
    /// The wgpu device while the GPU runs (tests destroy it to play a lost GPU).
    #[cfg(feature = "gpu")]
    pub gpu_device: Option<wgpu::Device>,
}

/// The CPU backend for `model` under `opts`.
pub fn cpu(model: &Arc<Model>, opts: &BackendOptions) -> Result<CpuBackend> {
    CpuBackend::try_new(Arc::clone(model), opts.cpu, opts.kv_budget)
}

/// The backend for `model` on `device`. On the GPU the self-test runs first, and a GPU
/// that computes other top tokens than the CPU is an `Error::Gpu`, never used.
pub async fn build(model: &Arc<Model>, device: Device, opts: &BackendOptions) -> Result<Built> {
    match device {
        Device::Cpu => Ok(Built {
            backend: Box::new(cpu(model, opts)?),
            self_test: None,
            #[cfg(feature = "gpu")]
            gpu_device: None,
        }),
        #[cfg(feature = "gpu")]
        Device::Gpu => gpu::build(model, opts).await,
        #[cfg(not(feature = "gpu"))]
        Device::Gpu => Err(crate::error::Error::InvalidArgument(
            "this build has no GPU backend (the engine's `gpu` feature)".into(),
        )),
    }
}

#[cfg(feature = "gpu")]
mod gpu {
    use super::{BackendOptions, Built, SelfTest};
    use crate::error::{Error, Result};
    use crate::gpu::{GpuBackend, GpuOptions};
    use crate::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits, Model};
    use std::sync::Arc;

    pub(super) async fn build(model: &Arc<Model>, opts: &BackendOptions) -> Result<Built> {
        if opts.cpu.act != ActMode::Int8 {
            return Err(Error::InvalidArgument(
                "the GPU backend runs int8 activations only".into(),
            ));
        }
        let mut gpu = GpuBackend::new(
            Arc::clone(model),
            GpuOptions {
                n_ctx: opts.cpu.n_ctx,
                tiled_prefill: opts.gpu_tiled_prefill,
                profile: opts.gpu_profile,
                ..GpuOptions::default()
            },
        )
        .await?;
        let self_test = if opts.self_test.is_empty() {
            None
        } else {
            let tokens = &opts.self_test;
            // The GPU keeps its cache in f32: so does the reference it is held to.
            let cpu_opts = CpuOptions {
                n_ctx: Some(tokens.len()),
                kv: crate::model::KvType::F32,
                ..opts.cpu
            };
            let want = CpuBackend::try_new(Arc::clone(model), cpu_opts, None)?
                .forward(tokens, Logits::All)?;
            let agreed = self_test(model, &mut gpu, tokens, &want).await?;
            Some(SelfTest {
                agreed,
                positions: 2 * tokens.len(),
            })
        };
        let device = gpu.device();
        Ok(Built {
            backend: Box::new(gpu),
            self_test,
            gpu_device: Some(device),
        })
    }

    /// Runs `tokens` on the GPU and checks each position's top-1 token against the CPU's
    /// logits `want`: the GPU's choice must be (within rounding) the CPU's best. Silent
    /// garbage from a broken GPU stack is the failure this catches.
    async fn self_test(
        model: &Model,
        gpu: &mut GpuBackend,
        tokens: &[u32],
        want: &[f32],
    ) -> Result<usize> {
        let v = model.config.n_vocab;
        // The prompt path first (all tokens in one submission), then decode steps.
        let mut got = Vec::with_capacity(2 * tokens.len() * v);
        got.extend(gpu.forward_async(tokens, Logits::All).await?);
        gpu.truncate(0);
        for t in tokens {
            got.extend(
                gpu.forward_async(std::slice::from_ref(t), Logits::Last)
                    .await?,
            );
        }
        gpu.truncate(0);
        let want: Vec<f32> = want.iter().chain(want).copied().collect();
        let mut agreed = 0;
        for (pos, (g, w)) in got.chunks_exact(v).zip(want.chunks_exact(v)).enumerate() {
            let pos = pos % tokens.len();
            // The sampler's own choice of the best token (ties to the lower id).
            let top = |row: &[f32]| {
                let (id, logit) = crate::sampler::top_k(row, 1)[0];
                (id as usize, logit)
            };
            let (g_top, _) = top(g);
            let (w_top, w_max) = top(w);
            if g_top == w_top {
                agreed += 1;
            } else if w[g_top] < w_max - 1e-2 * (1.0 + w_max.abs()) {
                let max_diff = g
                    .iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                return Err(Error::Gpu(format!(
                    "the GPU self-test failed: at position {pos} the GPU's top token is {g_top} \
                     (CPU logit {}), the CPU's is {w_top} ({w_max}); largest logit difference \
                     {max_diff}; GPU {:?}… CPU {:?}…; this GPU stack computes wrong results",
                    w[g_top],
                    &g[..4.min(v)],
                    &w[..4.min(v)],
                )));
            }
        }
        Ok(agreed)
    }
}
