//! Bytes of a model file read again after it loaded, from wherever the host keeps it (a
//! file on disk natively, the offline copy in the browser): what the exact head reads
//! its float rows from instead of holding them.

use crate::error::Result;

/// The file a model was loaded from, readable at any offset.
pub trait FileBytes: Send + Sync {
    /// Fills `out` with the file's bytes from `offset` on; an error when they are not all
    /// there.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()>;
}

#[cfg(unix)]
impl FileBytes for std::fs::File {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, out, offset)?;
        Ok(())
    }
}

#[cfg(windows)]
impl FileBytes for std::fs::File {
    fn read_at(&self, mut offset: u64, mut out: &mut [u8]) -> Result<()> {
        while !out.is_empty() {
            let n = std::os::windows::fs::FileExt::seek_read(self, out, offset)?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            offset += n as u64;
            out = &mut out[n..];
        }
        Ok(())
    }
}

/// Elsewhere (wasm32) through a seek and a read, which two threads could interleave: no
/// target of this kind reads one file from two threads.
#[cfg(not(any(unix, windows)))]
impl FileBytes for std::fs::File {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = self;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(out)?;
        Ok(())
    }
}

/// A file held in memory (tests, and hosts that keep the bytes anyway).
impl FileBytes for Vec<u8> {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(out.len())?));
        match bytes {
            Some(b) => {
                out.copy_from_slice(b);
                Ok(())
            }
            None => Err(crate::error::Error::Truncated(format!(
                "{} bytes at offset {offset} of a {}-byte file",
                out.len(),
                self.len()
            ))),
        }
    }
}
