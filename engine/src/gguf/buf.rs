//! A byte buffer whose start is 64-byte aligned, so SIMD kernels (AVX-512, WASM
//! SIMD128, GPU uploads) can read tensors without realigning copies.

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

#[derive(Clone, Default)]
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            lines: vec![Line([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    /// [`zeroed`](Self::zeroed) for sizes that come from a file: `None`, not an abort,
    /// when the allocator cannot give `len` bytes. The memory is not touched here.
    pub fn try_zeroed(len: usize) -> Option<AlignedBuf> {
        let n = len.div_ceil(64);
        if n == 0 {
            return Some(AlignedBuf::default());
        }
        let layout = std::alloc::Layout::array::<Line>(n).ok()?;
        // SAFETY: `layout` has a non-zero size; all-zero bytes are a valid `Line`; the Vec
        // takes ownership of a global-allocator block laid out for exactly `n` Lines.
        unsafe {
            let ptr = std::alloc::alloc_zeroed(layout).cast::<Line>();
            if ptr.is_null() {
                return None;
            }
            Some(AlignedBuf {
                lines: Vec::from_raw_parts(ptr, n, n),
                len,
            })
        }
    }

    pub fn from_slice(bytes: &[u8]) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
        buf
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the buffer and returns the freed capacity to the allocator.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.lines.truncate(len.div_ceil(64));
            self.lines.shrink_to_fit();
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` owns at least `len` initialised bytes laid out contiguously
        // (Line is repr(C) over [u8; 64] with no padding).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_truncatable() {
        let mut b = AlignedBuf::from_slice(&[7u8; 130]);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert_eq!(b.len(), 130);
        b.truncate(65);
        assert_eq!(&b[..], &[7u8; 65][..]);
    }

    #[test]
    fn try_zeroed_is_aligned_and_zero() {
        let b = AlignedBuf::try_zeroed(130).unwrap();
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert_eq!(&b[..], &[0u8; 130][..]);
        assert!(AlignedBuf::try_zeroed(0).unwrap().is_empty());
    }
}
