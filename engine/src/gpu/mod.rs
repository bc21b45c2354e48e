//! The WebGPU backend (cargo feature `gpu`): the forward pass as WGSL compute shaders
//! (`gpu/ops/`, one Rust file per op beside its WGSL) run through wgpu — Vulkan, Metal or DX12 natively, the browser's
//! WebGPU on wasm32. The API is async because the browser cannot block; natively
//! [`GpuBackend`] also implements the synchronous [`crate::model::Backend`] by blocking.

mod backend;
mod buffers;
mod context;
mod graph;
mod ops;
mod pack;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

pub use backend::{GpuBackend, GpuOptions, MAX_TOP_K};
pub use context::{DeviceOptions, GpuContext};
// For callers that need wgpu types (the web bindings hold the device for loss tests).
pub use wgpu;
