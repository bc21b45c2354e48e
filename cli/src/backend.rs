//! Which backend runs the model: the CPU kernels, or the GPU through wgpu (built by the
//! engine's `backends`, as in the browser).

use bitnet_engine::backends::{self, BackendOptions, Device};
use bitnet_engine::model::{Backend, CpuOptions, Model};
use clap::ValueEnum;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// The backend `kind` for `model`, sized and configured by `opts`. On the GPU the
/// tokens `self_test` (may be empty) run on both devices first, and a GPU whose top
/// tokens differ from the CPU's is an error; `profile` times its passes.
pub fn make_backend(
    kind: BackendKind,
    model: &Arc<Model>,
    opts: CpuOptions,
    self_test: Vec<u32>,
    profile: bool,
) -> bitnet_engine::Result<Box<dyn Backend>> {
    let device = match kind {
        BackendKind::Cpu => Device::Cpu,
        BackendKind::Gpu => Device::Gpu,
    };
    let opts = BackendOptions {
        cpu: opts,
        self_test,
        gpu_profile: profile,
        ..BackendOptions::default()
    };
    Ok(pollster::block_on(backends::build(model, device, &opts))?.backend)
}
