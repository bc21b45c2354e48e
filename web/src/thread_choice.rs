//! How many threads the CPU kernels get: the worker times a few decode steps on one
//! thread and on the pool, and keeps the faster (more threads than cores, or a busy
//! machine, can make the pool the slower).

use crate::{js_error, to_js, Engine};
use bitnet_engine::{backends, bench};
use serde::Serialize;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

#[derive(Serialize)]
struct ThreadRates {
    one: f64,
    pool: f64,
}

#[wasm_bindgen]
impl Engine {
    /// Decode tokens/s of this build's CPU kernels on one thread and on `threads`, each
    /// over `steps` greedy steps after a two-token prompt, on a scratch KV cache (the
    /// conversation's is untouched); the two alternate twice and each keeps its best.
    #[wasm_bindgen(js_name = threadRates)]
    pub fn thread_rates(&self, steps: usize, threads: usize) -> Result<JsValue, JsValue> {
        let model = Arc::clone(&self.loaded()?.model);
        let rate = |n: usize| -> Result<f64, JsValue> {
            let mut opts = self.backend_options(steps + 3);
            opts.cpu.threads = n;
            let mut cpu = backends::cpu(&model, &opts).map_err(js_error)?;
            Ok(bench::measure(&mut cpu, 2, steps)
                .map_err(js_error)?
                .decode_tps)
        };
        let (mut one, mut pool) = (0f64, 0f64);
        for _ in 0..2 {
            one = one.max(rate(1)?);
            pool = pool.max(rate(threads)?);
        }
        Ok(to_js(&ThreadRates { one, pool }))
    }

    /// Runs the CPU kernels on `n` threads from here on (the KV cache is kept).
    #[wasm_bindgen(js_name = setThreads)]
    pub fn set_threads(&mut self, n: usize) -> Result<(), JsValue> {
        self.opts.threads = Some(n);
        let mut l = self.live()?;
        if !l.session.set_threads(n) {
            return Err(js_error(bitnet_engine::Error::InvalidArgument(
                "the backend in use does not run on the CPU's threads".into(),
            )));
        }
        Ok(())
    }
}
