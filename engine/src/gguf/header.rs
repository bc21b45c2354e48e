//! The GGUF header: magic, version, metadata and tensor infos, parsed from a buffer that
//! may hold only part of it (`Parse::More` asks for more bytes). Every count, length and
//! size is bounded before anything is allocated for it.

use super::reader::{
    TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN,
    MAX_DIMS, MAX_ELEMENTS, MAX_KEY_LEN, MAX_KV, MAX_STRING_LEN, MAX_TENSORS,
};
use super::types::GgmlType;
use super::value::{Array, Metadata, Value};
use crate::error::{Error, Result};

pub(super) struct Header {
    pub(super) version: u32,
    pub(super) metadata: Metadata,
    pub(super) infos: Vec<TensorInfo>,
    pub(super) data_start: u64,
}

/// Fails fast on the first bytes, before buffering a whole header of garbage.
pub(super) fn check_prefix(buf: &[u8]) -> Result<()> {
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

pub(super) enum Parse {
    More,
    Fail(Error),
}

impl From<Error> for Parse {
    fn from(e: Error) -> Parse {
        Parse::Fail(e)
    }
}

pub(super) type PResult<T> = std::result::Result<T, Parse>;

pub(super) struct Cursor<'a> {
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

pub(super) fn bounded(what: &'static str, value: u64, limit: u64) -> PResult<()> {
    if value > limit {
        return Err(Parse::Fail(Error::OutOfRange { what, value, limit }));
    }
    Ok(())
}

/// Parses magic, counts, metadata and tensor infos; returns them and the header length.
pub(super) fn parse_header(buf: &[u8]) -> PResult<(Header, u64)> {
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

pub(super) fn bad(name: &str, reason: String) -> Parse {
    Parse::Fail(Error::BadTensor {
        name: name.to_string(),
        reason,
    })
}

pub(super) fn read_value(c: &mut Cursor, ty: u32, depth: u32) -> PResult<Value> {
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

pub(super) fn read_bool(c: &mut Cursor) -> PResult<bool> {
    match c.array::<1>()?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::Malformed(format!("boolean byte {b}")).into()),
    }
}

pub(super) fn read_array(c: &mut Cursor, depth: u32) -> PResult<Array> {
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
