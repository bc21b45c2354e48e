//! The wgpu backend against the CPU backend and the fixture references (needs an adapter:
//! natively lavapipe, `mesa-vulkan-drivers`, is enough; without one these tests fail).
#![cfg(feature = "gpu")]

mod common;
use bitnet_engine::gpu::{DeviceOptions, GpuBackend, GpuOptions};
use bitnet_engine::model::{ActMode, Backend, Logits, Model};
use common::*;
use std::sync::Arc;

const VOCAB: usize = 512;

fn tokens(family: &str) -> Vec<u32> {
    let r = reference(family);
    r.prompt.iter().chain(&r.generated).copied().collect()
}

fn gpu(model: &Arc<Model>, subgroups: bool, max_batch: usize) -> GpuBackend {
    pollster::block_on(GpuBackend::new(
        Arc::clone(model),
        GpuOptions {
            n_ctx: Some(256),
            max_batch,
            device: DeviceOptions { subgroups },
        },
    ))
    .unwrap_or_else(|e| panic!("the gpu feature is on but no GPU backend could start: {e}"))
}

#[test]
fn smoke() {
    let model = load("tiny-b158-I2_S.gguf");
    let toks = tokens("tiny-relu2-fold");
    let mut g = gpu(&model, false, 64);
    let ours = g.forward(&toks, Logits::All).unwrap();
    let cpu = all_logits(&model, ActMode::Int8, &toks);
    let (max, agree) = compare(&ours, &cpu, VOCAB);
    println!("gpu vs cpu: {max:.3e} {agree:.3}");
    assert!(max < 2e-2);
}
