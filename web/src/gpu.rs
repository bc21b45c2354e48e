//! The WebGPU backend in the page (the `webgpu` build): switching a loaded model onto
//! the GPU after a self-test, stepping generations asynchronously (a page cannot wait
//! for its GPU), and falling back to the CPU when the device is lost.

use super::{js_error, live_of, to_js, Engine, Live};
use bitnet_engine::gpu::{GpuBackend, GpuOptions};
use bitnet_engine::model::{Backend, CpuBackend, Logits, Model};
use bitnet_engine::{Error, Result};
use serde::Serialize;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Text whose tokens the self-test forces through both backends.
const SELF_TEST_TEXT: &str = "The quick brown fox jumps over the lazy dog. 1 2 3";
const SELF_TEST_TOKENS: usize = 12;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GpuInfo {
    backend: String,
    /// Positions of the self-test whose top-1 token agreed with the CPU's.
    self_test_agreed: usize,
    /// Positions checked: the prompt path, then the decode path.
    self_test_positions: usize,
}

#[wasm_bindgen]
impl Engine {
    /// Moves the loaded model onto WebGPU. Resolves with `{backend, selfTestAgreed,
    /// selfTestPositions}` once a few forced decoding steps gave the same top-1 tokens
    /// as the CPU; rejects (kind `gpu`) when there is no adapter, the upload fails, or
    /// the GPU computes garbage, and the CPU backend stays in place.
    #[wasm_bindgen(js_name = useGpu)]
    pub fn use_gpu(&mut self) -> std::result::Result<js_sys::Promise, JsValue> {
        let loaded = self.loaded()?;
        let model = Arc::clone(&loaded.model);
        let mut tokens = loaded
            .tokenizer
            .encode(SELF_TEST_TEXT, true, false)
            .map_err(js_error)?;
        tokens.truncate(SELF_TEST_TOKENS);
        let n_ctx = self.live()?.session.backend().n_ctx();
        let cpu_opts = self.cpu_options(Some(tokens.len().max(1)));
        let live = Rc::clone(&self.live);
        Ok(future_to_promise(async move {
            let mut cpu = CpuBackend::new(Arc::clone(&model), cpu_opts);
            let want = cpu.forward(&tokens, Logits::All).map_err(js_error)?;
            let mut gpu = GpuBackend::new(
                Arc::clone(&model),
                GpuOptions {
                    n_ctx: Some(n_ctx),
                    // Known issue: see `GpuOptions::tiled_prefill`.
                    tiled_prefill: false,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_error)?;
            let agreed = self_test(&model, &mut gpu, &tokens, &want)
                .await
                .map_err(js_error)?;
            let info = GpuInfo {
                backend: gpu.name(),
                self_test_agreed: agreed,
                self_test_positions: 2 * tokens.len(),
            };
            let mut l = live_of(&live)?;
            let device = gpu.device();
            // A fresh backend has an empty cache: the conversation restarts on the GPU.
            l.generation = None;
            l.session.reset();
            l.session.replace_backend(Box::new(gpu)).map_err(js_error)?;
            l.gpu_device = Some(device);
            Ok(to_js(&info))
        }))
    }

    /// `step()` for the GPU backend: a promise of the same result.
    #[wasm_bindgen(js_name = stepAsync)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn step_async(&mut self) -> std::result::Result<js_sys::Promise, JsValue> {
        let live = Rc::clone(&self.live);
        Ok(future_to_promise(async move {
            // Held across the GPU wait on purpose: a call that overlaps gets a "busy"
            // error (live_of uses try_borrow_mut) instead of touching a session mid-step.
            let mut l = live_of(&live)?;
            let mut g = l.take_generation()?;
            let step = l.session.step_async(&mut g).await;
            l.after_step(step, g)
        }))
    }

    /// Replaces the GPU backend with the CPU one, refilling the KV cache from the token
    /// history, so a conversation (and a generation in progress) goes on after the GPU
    /// is lost. Returns the CPU kernels' name.
    #[wasm_bindgen(js_name = fallbackToCpu)]
    pub fn fallback_to_cpu(&mut self) -> std::result::Result<String, JsValue> {
        let model = Arc::clone(&self.loaded()?.model);
        let mut l = self.live()?;
        let n_ctx = l.session.backend().n_ctx();
        let cpu = self.cpu_backend(&model, n_ctx)?;
        let name = cpu.kernels_name().to_string();
        l.gpu_device = None;
        l.session.replace_backend(Box::new(cpu)).map_err(js_error)?;
        Ok(name)
    }

    /// Destroys the WebGPU device, as a driver reset or a lost GPU would (for tests of
    /// the fallback). Returns whether a device was in use.
    #[wasm_bindgen(js_name = loseGpuForTesting)]
    pub fn lose_gpu_for_testing(&mut self) -> std::result::Result<bool, JsValue> {
        let l: std::cell::RefMut<'_, Live> = self.live()?;
        Ok(match &l.gpu_device {
            Some(d) => {
                d.destroy();
                true
            }
            None => false,
        })
    }
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
        let top = |row: &[f32]| {
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
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
