//! Push-based GGUF reader.
//!
//! Bytes arrive as arbitrary chunks (the way `fetch` delivers them). The header
//! (metadata and tensor infos) is buffered until it parses; from then on every
//! byte is copied once, straight into the 64-byte-aligned buffer of the tensor
//! it belongs to. The file is never held twice.

use super::buf::AlignedBuf;
use super::types::GgmlType;
use super::value::{Array, Metadata, Value};
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
        use std::io::Read;
        let mut file = std::fs::File::open(path.as_ref())?;
        let len = file.metadata()?.len();
        let mut loader = GgufLoader::new(LoadOptions {
            expected_len: Some(len),
            ..LoadOptions::default()
        });
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            loader.push(&chunk[..n])?;
        }
        loader.finish()
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

struct Header {
    version: u32,
    metadata: Metadata,
    infos: Vec<TensorInfo>,
    data_start: u64,
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
        end: u64,
    },
    Failed,
}

pub struct GgufLoader {
    opts: LoadOptions,
    state: State,
    received: u64,
}

impl GgufLoader {
    pub fn new(opts: LoadOptions) -> GgufLoader {
        GgufLoader {
            opts,
            state: State::Header {
                buf: Vec::new(),
                retry_at: 0,
            },
            received: 0,
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
        self.state = State::Tensors {
            header: Box::new(header),
            order,
            next: 0,
            bufs: (0..n).map(|_| None).collect(),
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
    pub fn finish(mut self) -> Result<GgufFile> {
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
                    ..
                } = *header;
                let tensors = infos
                    .into_iter()
                    .zip(bufs.iter_mut())
                    .map(|(info, buf)| Tensor {
                        data: buf.take().expect("every tensor was stored"),
                        info,
                    })
                    .collect();
                Ok(GgufFile {
                    version,
                    metadata,
                    tensors,
                })
            }
        }
    }
}

/// Fails fast on the first bytes, before buffering a whole header of garbage.
fn check_prefix(buf: &[u8]) -> Result<()> {
    if buf.len() >= 4 && buf[..4] != GGUF_MAGIC {
        return Err(Error::BadMagic([buf[0], buf[1], buf[2], buf[3]]));
    }
    if buf.len() >= 8 {
        let version = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
    }
    Ok(())
}

enum Parse {
    More,
    Fail(Error),
}

impl From<Error> for Parse {
    fn from(e: Error) -> Parse {
        Parse::Fail(e)
    }
}

type PResult<T> = std::result::Result<T, Parse>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: u64) -> PResult<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Parse::More)?;
        if self.buf.len() - self.pos < n {
            return Err(Parse::More);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        Ok(self.bytes(N as u64)?.try_into().unwrap())
    }

    fn u32(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self, what: &'static str, limit: u64) -> PResult<String> {
        let len = self.u64()?;
        bounded(what, len, limit)?;
        let bytes = self.bytes(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Parse::Fail(Error::Malformed(format!("{what} is not valid UTF-8"))))
    }
}

fn bounded(what: &'static str, value: u64, limit: u64) -> PResult<()> {
    if value > limit {
        return Err(Parse::Fail(Error::OutOfRange { what, value, limit }));
    }
    Ok(())
}

/// Parses magic, counts, metadata and tensor infos; returns them and the header length.
fn parse_header(buf: &[u8]) -> PResult<(Header, u64)> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array()?;
    if magic != GGUF_MAGIC {
        return Err(Error::BadMagic(magic).into());
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(Error::UnsupportedVersion(version).into());
    }
    let n_tensors = c.u64()?;
    bounded("tensor count", n_tensors, MAX_TENSORS)?;
    let n_kv = c.u64()?;
    bounded("metadata count", n_kv, MAX_KV)?;

    let mut metadata = Metadata::default();
    for _ in 0..n_kv {
        let key = c.string("metadata key", MAX_KEY_LEN)?;
        let ty = c.u32()?;
        let value = read_value(&mut c, ty, 0).map_err(|e| match e {
            Parse::Fail(Error::Malformed(m)) => {
                Error::Malformed(format!("metadata '{key}': {m}")).into()
            }
            other => other,
        })?;
        if !metadata.insert(key.clone(), value) {
            return Err(Error::Malformed(format!("duplicate metadata key '{key}'")).into());
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => {
            let a = v.as_u64().ok_or_else(|| {
                Error::Malformed(format!("general.alignment has type {}", v.type_name()))
            })?;
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(Error::Malformed(format!(
                    "general.alignment = {a} is not a power of two up to {MAX_ALIGNMENT}"
                ))
                .into());
            }
            a
        }
    };

    let mut infos: Vec<TensorInfo> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for _ in 0..n_tensors {
        let name = c.string("tensor name", MAX_KEY_LEN)?;
        let n_dims = c.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(bad(
                &name,
                format!("has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        let type_id = c.u32()?;
        let offset = c.u64()?;
        let mut n_elements: u64 = 1;
        for &d in &dims {
            if d == 0 {
                return Err(bad(&name, format!("has a zero dimension {dims:?}")));
            }
            n_elements = n_elements
                .checked_mul(d)
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| bad(&name, format!("has too many elements {dims:?}")))?;
        }
        let ty = GgmlType::from_id(type_id, &name)?;
        if dims[0] % ty.block_len() != 0 {
            return Err(bad(
                &name,
                format!(
                    "row length {} is not a multiple of {}'s block of {}",
                    dims[0],
                    ty,
                    ty.block_len()
                ),
            ));
        }
        let nbytes = ty
            .nbytes(n_elements)
            .ok_or_else(|| bad(&name, "its byte size overflows".into()))?;
        if offset % alignment != 0 {
            return Err(bad(
                &name,
                format!("offset {offset} is not aligned to {alignment}"),
            ));
        }
        if offset
            .checked_add(nbytes)
            .is_none_or(|end| end > MAX_ELEMENTS * 4)
        {
            return Err(bad(
                &name,
                format!("offset {offset} + size {nbytes} is out of range"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(Error::Malformed(format!("duplicate tensor name '{name}'")).into());
        }
        infos.push(TensorInfo {
            name,
            ty,
            dims,
            offset,
            nbytes,
        });
    }
    let header_len = c.pos as u64;
    let data_start = header_len.div_ceil(alignment) * alignment;
    Ok((
        Header {
            version,
            metadata,
            infos,
            data_start,
        },
        header_len,
    ))
}

fn bad(name: &str, reason: String) -> Parse {
    Parse::Fail(Error::BadTensor {
        name: name.to_string(),
        reason,
    })
}

fn read_value(c: &mut Cursor, ty: u32, depth: u32) -> PResult<Value> {
    Ok(match ty {
        0 => Value::U8(c.array::<1>()?[0]),
        1 => Value::I8(c.array::<1>()?[0] as i8),
        2 => Value::U16(u16::from_le_bytes(c.array()?)),
        3 => Value::I16(i16::from_le_bytes(c.array()?)),
        4 => Value::U32(c.u32()?),
        5 => Value::I32(i32::from_le_bytes(c.array()?)),
        6 => Value::F32(f32::from_le_bytes(c.array()?)),
        7 => Value::Bool(read_bool(c)?),
        8 => Value::String(c.string("metadata string", MAX_STRING_LEN)?),
        9 => Value::Array(read_array(c, depth)?),
        10 => Value::U64(c.u64()?),
        11 => Value::I64(i64::from_le_bytes(c.array()?)),
        12 => Value::F64(f64::from_le_bytes(c.array()?)),
        other => {
            return Err(Error::Malformed(format!("unknown metadata value type {other}")).into())
        }
    })
}

fn read_bool(c: &mut Cursor) -> PResult<bool> {
    match c.array::<1>()?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::Malformed(format!("boolean byte {b}")).into()),
    }
}

fn read_array(c: &mut Cursor, depth: u32) -> PResult<Array> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::Malformed("metadata arrays nested too deeply".into()).into());
    }
    let ty = c.u32()?;
    let n = c.u64()?;
    bounded("array length", n, MAX_ARRAY_LEN)?;
    // Fixed-size items: check the bytes are there before allocating for them.
    let item = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => 0,
    };
    if item > 0 && ((c.buf.len() - c.pos) as u64) < n * item {
        return Err(Parse::More);
    }
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let raw = c.bytes(n * item)?;
            Array::$variant(
                raw.chunks_exact(std::mem::size_of::<$t>())
                    .map(|b| <$t>::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            )
        }};
    }
    Ok(match ty {
        0 => Array::U8(c.bytes(n)?.to_vec()),
        1 => Array::I8(c.bytes(n)?.iter().map(|&b| b as i8).collect()),
        2 => fixed!(U16, u16),
        3 => fixed!(I16, i16),
        4 => fixed!(U32, u32),
        5 => fixed!(I32, i32),
        6 => fixed!(F32, f32),
        7 => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(read_bool(c)?);
            }
            Array::Bool(v)
        }
        8 => {
            // Each string has at least its 8-byte length: bound the allocation by the bytes present.
            let mut v = Vec::with_capacity((n as usize).min((c.buf.len() - c.pos) / 8));
            for _ in 0..n {
                v.push(c.string("metadata string", MAX_STRING_LEN)?);
            }
            Array::String(v)
        }
        9 => {
            let mut v = Vec::new();
            for _ in 0..n {
                // Each element of an array of arrays carries its own item type and length.
                v.push(read_array(c, depth + 1)?);
            }
            Array::Nested(v)
        }
        10 => fixed!(U64, u64),
        11 => fixed!(I64, i64),
        12 => fixed!(F64, f64),
        other => {
            return Err(
                Error::Malformed(format!("unknown metadata array item type {other}")).into(),
            )
        }
    })
}
