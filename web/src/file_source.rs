//! The model file kept readable in the browser after it loaded: a synchronous access
//! handle on its offline copy (the origin private file system), which the worker opens
//! and hands to the engine. What the exact heads read their candidates' float rows
//! (and a tied embedding's token rows) from, instead of holding them in memory.

use bitnet_engine::gguf::FileBytes;
use bitnet_engine::{Error, Result};
use std::mem::ManuallyDrop;
use std::thread::ThreadId;
use wasm_bindgen::JsCast;
use web_sys::{FileSystemReadWriteOptions, FileSystemSyncAccessHandle};

/// The offline copy of the model, read at any offset.
pub(crate) struct OfflineCopy {
    /// Dropped by hand: on `owner` only.
    handle: ManuallyDrop<FileSystemSyncAccessHandle>,
    /// The file's size when it was opened: reads past it are refused before they reach
    /// the browser.
    size: u64,
    /// The thread that holds the handle: a JS object lives in one worker's heap, and the
    /// threads builds run kernels on other workers.
    owner: ThreadId,
}

// SAFETY: the handle is touched only on the thread that created it (`owner`): `read_at`
// elsewhere returns an error before using it, and `drop` elsewhere leaks it instead of
// closing it. The engine reads the exact head's rows on the thread that runs the model
// (the worker's own), never from the kernels' pool.
unsafe impl Send for OfflineCopy {}
// SAFETY: as for `Send`: every use of the handle happens on `owner`, one call at a time
// (a worker's JavaScript runs on one thread).
unsafe impl Sync for OfflineCopy {}

impl OfflineCopy {
    /// `handle` from `createSyncAccessHandle()` on the copy of the model just loaded, of
    /// `expected_bytes` bytes: a copy of another size is not that file.
    pub(crate) fn new(handle: FileSystemSyncAccessHandle, expected_bytes: u64) -> Result<Self> {
        // Held first, so that the handle is closed on every way out.
        let mut copy = OfflineCopy {
            handle: ManuallyDrop::new(handle),
            size: 0,
            owner: std::thread::current().id(),
        };
        copy.size = copy
            .handle
            .get_size()
            .map_err(|e| io_error("reading its size", &e))? as u64;
        if copy.size != expected_bytes {
            return Err(Error::InvalidArgument(format!(
                "the offline copy has {} bytes but the model that loaded {expected_bytes}",
                copy.size
            )));
        }
        Ok(copy)
    }
}

fn io_error(what: &str, e: &wasm_bindgen::JsValue) -> Error {
    // A DOMException is an Error in every engine; anything else is shown as it is.
    let why = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("{e:?}"));
    Error::Io(std::io::Error::other(format!(
        "the offline copy of the model: {what} failed: {why}"
    )))
}

impl FileBytes for OfflineCopy {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        if std::thread::current().id() != self.owner {
            return Err(Error::InvalidArgument(
                "the offline copy of the model is read on the worker that opened it".into(),
            ));
        }
        let end = offset.checked_add(out.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(Error::Truncated(format!(
                "{} bytes at offset {offset} of a {}-byte offline copy",
                out.len(),
                self.size
            )));
        }
        let opts = FileSystemReadWriteOptions::new();
        opts.set_at(offset as f64);
        let n = self
            .handle
            .read_with_u8_array_and_options(out, &opts)
            .map_err(|e| io_error("a read", &e))?;
        if n as usize != out.len() {
            return Err(Error::Truncated(format!(
                "{n} of {} bytes at offset {offset} of the offline copy (it changed on disk)",
                out.len()
            )));
        }
        Ok(())
    }
}

impl Drop for OfflineCopy {
    fn drop(&mut self) {
        // Closing releases the file's lock, so the copy can be deleted or loaded again.
        // Elsewhere the handle is leaked: its reference belongs to the owner's heap.
        if std::thread::current().id() == self.owner {
            self.handle.close();
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.handle) };
        }
    }
}
