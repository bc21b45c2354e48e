//! Push-based GGUF reader.
//!
//! Bytes arrive as arbitrary chunks (the way `fetch` delivers them). The header
//! (metadata and tensor infos) is buffered until it parses; from then on every
//! byte is copied once, straight into the 64-byte-aligned buffer of the tensor
//! it belongs to. The file is never held twice. A [`TensorTap`] may take one tensor's
//! bytes instead, to re-encode it as it streams (its original is then never held at all).

use super::buf::AlignedBuf;
use super::header::{check_prefix, parse_header, Header, Parse};
use super::types::GgmlType;
use super::value::Metadata;
use crate::error::{Error, Result};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;

// Sanity bounds: far above any real model, far below what would let a hostile
// header exhaust memory or overflow arithmetic.
pub const MAX_TENSORS: u64 = 1 << 16;
pub const MAX_KV: u64 = 1 << 16;
pub const MAX_KEY_LEN: u64 = 1 << 16;
pub const MAX_STRING_LEN: u64 = 1 << 24;
pub const MAX_ARRAY_LEN: u64 = 1 << 26;
pub const MAX_ARRAY_DEPTH: u32 = 4;
pub const MAX_HEADER_BYTES: u64 = 1 << 28;
pub const MAX_DIMS: u32 = 4;
pub const MAX_ELEMENTS: u64 = 1 << 40;
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// Where a tensor's bytes live in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// ggml order: innermost (row length) first.
    pub dims: Vec<u64>,
    /// Relative to the start of the data section.
    pub offset: u64,
    pub nbytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A loaded tensor: its description and its bytes.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub info: TensorInfo,
    pub data: AlignedBuf,
}

/// A fully loaded GGUF file.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<Tensor>,
    /// Tensors whose bytes went to a [`TensorTap`] instead of `tensors`.
    pub tapped: Vec<TensorInfo>,
    /// Where the data section starts in the file (tensor offsets count from here); for
    /// a merged split model, in its first part.
    pub data_start: u64,
}

/// Takes one tensor's bytes as they stream in, in place of the loader's buffer.
pub trait TensorTap {
    /// Once the header is parsed: which of the file's tensors this tap takes, if any.
    fn choose(&mut self, metadata: &Metadata, infos: &[TensorInfo]) -> Result<Option<usize>>;
    /// The chosen tensor's next bytes: every byte once, in order.
    fn write(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<()>;
}

/// The tap of a loader that keeps every tensor.
pub struct NoTap;

impl TensorTap for NoTap {
    fn choose(&mut self, _: &Metadata, _: &[TensorInfo]) -> Result<Option<usize>> {
        Ok(None)
    }
    fn write(&mut self, info: &TensorInfo, _: &[u8]) -> Result<()> {
        Err(Error::InvalidArgument(format!(
            "tensor '{}' was given to a loader without a tap",
            info.name
        )))
    }
}

impl GgufFile {
    pub fn from_bytes(bytes: &[u8]) -> Result<GgufFile> {
        let mut loader = GgufLoader::new(LoadOptions {
            expected_len: Some(bytes.len() as u64),
            ..LoadOptions::default()
        });
        loader.push(bytes)?;
        loader.finish()
    }

    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<GgufFile> {
        Ok(GgufFile::from_path_with_tap(path, NoTap)?.0)
    }

    /// [`from_path`](Self::from_path) through `tap` (see [`TensorTap`]).
    pub fn from_path_with_tap<T: TensorTap>(
        path: impl AsRef<std::path::Path>,
        tap: T,
    ) -> Result<(GgufFile, T)> {
        use std::io::Read;
        let mut file = std::fs::File::open(path.as_ref())?;
        let len = file.metadata()?.len();
        let mut loader = GgufLoader::with_tap(
            LoadOptions {
                expected_len: Some(len),
                ..LoadOptions::default()
            },
            tap,
        );
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            loader.push(&chunk[..n])?;
        }
        loader.finish_with_tap()
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.info.name == name)
    }

    /// Removes and returns a tensor, so its buffer can be repacked or moved without a copy.
    pub fn take_tensor(&mut self, name: &str) -> Option<Tensor> {
        let i = self.tensors.iter().position(|t| t.info.name == name)?;
        Some(self.tensors.swap_remove(i))
    }
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The file's length when known (file size, Content-Length): lets the reader
    /// refuse tensors that point past the end before any data arrives.
    pub expected_len: Option<u64>,
    /// Refuse models whose tensors need more bytes than this (e.g. wasm32's 4 GiB).
    pub max_tensor_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPhase {
    Header,
    Tensors,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    pub phase: LoadPhase,
    pub bytes_received: u64,
    /// Known once the header is parsed: the end of the last tensor.
    pub bytes_expected: Option<u64>,
}

enum State {
    Header {
        buf: Vec<u8>,
        retry_at: usize,
    },
    Tensors {
        header: Box<Header>,
        /// Indices into `infos`, sorted by offset.
        order: Vec<usize>,
        next: usize,
        bufs: Vec<Option<AlignedBuf>>,
        /// The tensor whose bytes go to the tap.
        tapped: Option<usize>,
        end: u64,
    },
    Failed,
}

pub struct GgufLoader<T: TensorTap = NoTap> {
    opts: LoadOptions,
    state: State,
    received: u64,
    tap: T,
}

impl GgufLoader {
    pub fn new(opts: LoadOptions) -> GgufLoader {
        GgufLoader::with_tap(opts, NoTap)
    }
}

impl<T: TensorTap> GgufLoader<T> {
    /// A loader that hands the tensor `tap` chooses to it instead of storing it.
    pub fn with_tap(opts: LoadOptions, tap: T) -> GgufLoader<T> {
        GgufLoader {
            opts,
            state: State::Header {
                buf: Vec::new(),
                retry_at: 0,
            },
            received: 0,
            tap,
        }
    }

    pub fn progress(&self) -> LoadProgress {
        match &self.state {
            State::Header { .. } | State::Failed => LoadProgress {
                phase: LoadPhase::Header,
                bytes_received: self.received,
                bytes_expected: None,
            },
            State::Tensors {
                order, next, end, ..
            } => LoadProgress {
                phase: if *next >= order.len() {
                    LoadPhase::Done
                } else {
                    LoadPhase::Tensors
                },
                bytes_received: self.received,
                bytes_expected: Some(*end),
            },
        }
    }

    /// Metadata, once the header has been parsed (useful to size things early).
    pub fn metadata(&self) -> Option<&Metadata> {
        match &self.state {
            State::Tensors { header, .. } => Some(&header.metadata),
            _ => None,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let result = self.push_inner(chunk);
        if result.is_err() {
            // A failed loader frees what it holds and refuses further input.
            self.state = State::Failed;
        }
        result
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<()> {
        let start = self.received;
        self.received += chunk.len() as u64;
        match &mut self.state {
            State::Failed => Err(Error::InvalidArgument(
                "the loader already failed; start a new one".into(),
            )),
            State::Tensors { .. } => self.store(start, chunk),
            State::Header { buf, retry_at } => {
                buf.extend_from_slice(chunk);
                check_prefix(buf)?;
                if buf.len() < *retry_at {
                    return Ok(());
                }
                match parse_header(buf) {
                    Ok((header, header_len)) => {
                        let rest = std::mem::take(buf).split_off(header_len as usize);
                        self.enter_tensors(header)?;
                        self.store(header_len, &rest)
                    }
                    Err(Parse::More) => {
                        if buf.len() as u64 > MAX_HEADER_BYTES {
                            return Err(Error::OutOfRange {
                                what: "header size",
                                value: buf.len() as u64,
                                limit: MAX_HEADER_BYTES,
                            });
                        }
                        // Re-parse only after the buffer doubles: linear total work
                        // however small the chunks are.
                        *retry_at = buf.len() * 2;
                        Ok(())
                    }
                    Err(Parse::Fail(e)) => Err(e),
                }
            }
        }
    }

    fn enter_tensors(&mut self, header: Header) -> Result<()> {
        let mut order: Vec<usize> = (0..header.infos.len()).collect();
        order.sort_by_key(|&i| header.infos[i].offset);
        let mut total: u64 = 0;
        let mut prev_end = 0u64;
        let mut prev_name = "";
        for &i in &order {
            let t = &header.infos[i];
            if t.offset < prev_end {
                return Err(Error::BadTensor {
                    name: t.name.clone(),
                    reason: format!("its data overlaps tensor '{prev_name}'"),
                });
            }
            prev_end = t.offset + t.nbytes;
            prev_name = &t.name;
            total += t.nbytes;
        }
        let end = header
            .data_start
            .checked_add(prev_end)
            .ok_or_else(|| Error::Malformed("tensor data end overflows".into()))?;
        if let Some(len) = self.opts.expected_len {
            // Name the first tensor cut off (a file without tensors needs no data, nor padding).
            let cut = order
                .iter()
                .map(|&i| &header.infos[i])
                .map(|t| (t, header.data_start + t.offset + t.nbytes))
                .find(|&(_, t_end)| t_end > len);
            if let Some((t, t_end)) = cut {
                return Err(Error::BadTensor {
                    name: t.name.clone(),
                    reason: format!(
                        "its data ends at byte {t_end}, past the end of the {len}-byte file"
                    ),
                });
            }
        }
        if let Some(limit) = self.opts.max_tensor_bytes {
            if total > limit {
                return Err(Error::TooLarge {
                    needed: total,
                    limit,
                });
            }
        }
        let n = header.infos.len();
        let tapped = self
            .tap
            .choose(&header.metadata, &header.infos)?
            .filter(|&i| i < n);
        self.state = State::Tensors {
            header: Box::new(header),
            order,
            next: 0,
            bufs: (0..n).map(|_| None).collect(),
            tapped,
            end,
        };
        Ok(())
    }

    /// Copies `chunk`, which starts at absolute file position `pos`, into tensor buffers.
    fn store(&mut self, mut pos: u64, mut chunk: &[u8]) -> Result<()> {
        let State::Tensors {
            header,
            order,
            next,
            bufs,
            tapped,
            ..
        } = &mut self.state
        else {
            unreachable!("store is only called in the tensor phase");
        };
        while !chunk.is_empty() && *next < order.len() {
            let idx = order[*next];
            let info = &header.infos[idx];
            let t_start = header.data_start + info.offset;
            let t_end = t_start + info.nbytes;
            if pos < t_start {
                let skip = (t_start - pos).min(chunk.len() as u64) as usize;
                chunk = &chunk[skip..];
                pos += skip as u64;
                continue;
            }
            let take = (t_end - pos).min(chunk.len() as u64) as usize;
            if *tapped == Some(idx) {
                self.tap.write(info, &chunk[..take])?;
                chunk = &chunk[take..];
                pos += take as u64;
                if pos == t_end {
                    *next += 1;
                }
                continue;
            }
            let buf = match &mut bufs[idx] {
                Some(buf) => buf,
                slot => {
                    // The size comes from the header: with the file's length unknown and no
                    // tensor limit, nothing else bounds it.
                    let buf = usize::try_from(info.nbytes)
                        .ok()
                        .and_then(AlignedBuf::try_zeroed)
                        .ok_or_else(|| Error::OutOfMemory {
                            what: format!("tensor '{}'", info.name),
                            needed: info.nbytes,
                            limit: self.opts.max_tensor_bytes.unwrap_or(isize::MAX as u64),
                        })?;
                    slot.insert(buf)
                }
            };
            let at = (pos - t_start) as usize;
            buf[at..at + take].copy_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            pos += take as u64;
            if pos == t_end {
                *next += 1;
            }
        }
        Ok(())
    }

    /// Ends the stream: every tensor must be complete.
    pub fn finish(self) -> Result<GgufFile> {
        Ok(self.finish_with_tap()?.0)
    }

    /// [`finish`](Self::finish), handing back the tap with what it took.
    pub fn finish_with_tap(mut self) -> Result<(GgufFile, T)> {
        if let State::Header { buf, .. } = &mut self.state {
            let buf = std::mem::take(buf);
            match parse_header(&buf) {
                Ok((header, header_len)) => {
                    let received = self.received;
                    self.received = header_len;
                    self.enter_tensors(header)?;
                    self.received = received;
                    self.store(header_len, &buf[header_len as usize..])?;
                }
                Err(Parse::More) => {
                    return Err(Error::Truncated(format!(
                        "the header (metadata and tensor list) is incomplete after {} bytes",
                        buf.len()
                    )))
                }
                Err(Parse::Fail(e)) => return Err(e),
            }
        }
        match self.state {
            State::Failed => Err(Error::InvalidArgument(
                "the loader already failed; start a new one".into(),
            )),
            State::Header { .. } => unreachable!("header state was resolved above"),
            State::Tensors {
                header,
                order,
                next,
                mut bufs,
                tapped,
                ..
            } => {
                if next < order.len() {
                    let info = &header.infos[order[next]];
                    return Err(Error::Truncated(format!(
                        "tensor '{}' is incomplete ({} of its {} bytes arrived; the file has {} bytes)",
                        info.name,
                        self.received.saturating_sub(header.data_start + info.offset).min(info.nbytes),
                        info.nbytes,
                        self.received
                    )));
                }
                let Header {
                    version,
                    metadata,
                    infos,
                    data_start,
                    ..
                } = *header;
                let mut tensors = Vec::with_capacity(infos.len());
                let mut taken = Vec::new();
                for (i, (info, buf)) in infos.into_iter().zip(bufs.iter_mut()).enumerate() {
                    if tapped == Some(i) {
                        taken.push(info);
                        continue;
                    }
                    let data = buf.take().expect("every tensor was stored");
                    tensors.push(Tensor { data, info });
                }
                let file = GgufFile {
                    version,
                    metadata,
                    tensors,
                    tapped: taken,
                    data_start,
                };
                Ok((file, self.tap))
            }
        }
    }
}
