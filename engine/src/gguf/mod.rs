//! GGUF: the container every model arrives in.

mod buf;
mod file_bytes;
mod header;
mod reader;
mod split;
mod types;
mod value;
mod vocab;
mod writer;

pub use buf::AlignedBuf;
pub use file_bytes::FileBytes;
pub use reader::{
    GgufFile, GgufLoader, LoadOptions, LoadPhase, LoadProgress, NoTap, Tensor, TensorInfo,
    TensorTap, MAX_ARRAY_LEN, MAX_HEADER_BYTES, MAX_STRING_LEN, MAX_TENSORS,
};
pub use split::{merge_split, split_count, split_count_of, split_writers};
pub use types::GgmlType;
pub use value::{Array, Metadata, Value};
pub use writer::{GgufWriter, TensorToWrite};
