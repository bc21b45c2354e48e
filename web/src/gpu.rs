//! The WebGPU backend in the page (the `webgpu` build): switching a loaded model onto
//! the GPU after a self-test, stepping generations asynchronously (a page cannot wait
//! for its GPU), and falling back to the CPU when the device is lost.

use super::{js_error, live_of, to_js, Engine, Live};
use bitnet_engine::backends::{self, BackendOptions, Device, SelfTest};
use serde::Serialize;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GpuInfo {
    backend: String,
    /// Positions of the self-test whose top-1 token agreed with the CPU's.
    self_test_agreed: usize,
    /// Positions checked: the prompt path, then the decode path.
    self_test_positions: usize,
}

#[derive(Serialize)]
struct Rates {
    gpu: f64,
    wasm: f64,
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
        let n_ctx = self.live()?.session.backend().n_ctx();
        let opts = BackendOptions {
            self_test: backends::self_test_tokens(&loaded.tokenizer).map_err(js_error)?,
            ..self.backend_options(n_ctx)
        };
        let live = Rc::clone(&self.live);
        Ok(future_to_promise(async move {
            let built = backends::build(&model, Device::Gpu, &opts)
                .await
                .map_err(js_error)?;
            let test = built.self_test.unwrap_or(SelfTest {
                agreed: 0,
                positions: 0,
            });
            let info = GpuInfo {
                backend: built.backend.name(),
                self_test_agreed: test.agreed,
                self_test_positions: test.positions,
            };
            let mut l = live_of(&live)?;
            // A fresh backend has an empty cache: the conversation restarts on the GPU.
            l.generation = None;
            l.session.reset();
            l.session.replace_backend(built.backend).map_err(js_error)?;
            l.gpu_device = built.gpu_device;
            Ok(to_js(&info))
        }))
    }

    /// Times decoding on the GPU backend in use and on this build's CPU kernels, each
    /// after a warm-up (`steps` greedy steps from an empty cache; the session starts over):
    /// a promise of `{gpu, wasm}` tokens/s, for `device: "auto"` to keep the faster one.
    #[wasm_bindgen(js_name = decodeRates)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn decode_rates(&mut self, steps: usize) -> std::result::Result<js_sys::Promise, JsValue> {
        let model = Arc::clone(&self.loaded()?.model);
        let opts = self.backend_options(steps + 3);
        let live = Rc::clone(&self.live);
        Ok(future_to_promise(async move {
            // Held across the GPU wait on purpose, as in `step_async`.
            let mut l = live_of(&live)?;
            let gpu = l.session.decode_rate(steps).await.map_err(js_error)?;
            let mut cpu = backends::cpu(&model, &opts).map_err(js_error)?;
            let wasm = bitnet_engine::bench::decode_rate(&mut cpu, steps)
                .await
                .map_err(js_error)?;
            Ok(to_js(&Rates { gpu, wasm }))
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
