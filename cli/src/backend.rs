//! Which backend runs the model: the CPU kernels, or the GPU through wgpu.

use bitnet_engine::model::{ActMode, Backend, CpuBackend, CpuOptions, Model};
use clap::ValueEnum;
use std::sync::Arc;

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
