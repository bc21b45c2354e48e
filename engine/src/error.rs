//! One typed error for the whole engine. Every variant maps to a stable,
//! machine-readable `kind()` so the web bindings can hand JavaScript an error
//! it can branch on without parsing messages.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("not a GGUF file: the first bytes are {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (this reader supports versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("the GGUF file ends early: {0}")]
    Truncated(String),
    #[error("GGUF {what} is out of range: {value} (limit {limit})")]
    OutOfRange {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    #[error("tensor '{name}' has type {ty}, which this engine does not support (supported: F32, F16, BF16, TQ1_0, TQ2_0, I2_S)")]
    UnsupportedType { name: String, ty: String },
    #[error("unsupported model architecture '{0}' (supported: bitnet-b1.58, bitnet-25, bitnet)")]
    UnsupportedArch(String),
    #[error("model: {0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the context is full: {needed} tokens needed, the KV cache holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error(
        "the model needs {needed} bytes, more than the {limit} bytes this runtime can address"
    )]
    TooLarge { needed: u64, limit: u64 },
    #[error("{what} needs {needed} bytes, more than the {limit} bytes available for it")]
    OutOfMemory {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("aborted")]
    Aborted,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Stable identifier of the error class, for programs (and JavaScript) to match on.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadMagic(_)
            | Error::UnsupportedVersion(_)
            | Error::Truncated(_)
            | Error::OutOfRange { .. }
            | Error::Malformed(_)
            | Error::BadTensor { .. } => "corrupt-model",
            Error::UnsupportedType { .. } | Error::UnsupportedArch(_) => "unsupported-model",
            Error::Model(_) => "invalid-model",
            Error::Tokenizer(_) => "tokenizer",
            Error::Template(_) => "template",
            Error::ContextFull { .. } => "context-full",
            Error::TooLarge { .. } | Error::OutOfMemory { .. } => "out-of-memory",
            Error::InvalidArgument(_) => "invalid-argument",
            Error::Gpu(_) => "gpu",
            Error::Aborted => "aborted",
            Error::Io(_) => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
