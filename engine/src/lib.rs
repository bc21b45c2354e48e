//! bitnet-engine: BitNet b1.58 ternary LLM inference, pure Rust, native and wasm32.
//!
//! Data flows one way: bytes → [`gguf`] reader → typed tensors ([`formats`]) →
//! [`kernels`] → [`model`] forward pass → [`session`] (tokenize, template, sample).

pub mod backends;
pub mod bench;
pub mod chat;
pub mod error;
pub mod formats;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod import;
pub mod kernels;
pub mod model;
pub mod quality;
pub mod sampler;
pub mod session;
pub mod synth;
pub mod tokenizer;

pub use error::{Error, Result};
