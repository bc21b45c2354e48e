//! GGUF writer (version 3), used by the synthetic-model generator and by tests
//! that build malformed files.

use super::types::GgmlType;
use super::value::{Array, Value};
use std::io::{self, Write};

pub struct TensorToWrite<'a> {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub data: &'a [u8],
}

pub struct GgufWriter<'a> {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorToWrite<'a>>,
    pub alignment: u64,
}

impl<'a> Default for GgufWriter<'a> {
    fn default() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: super::reader::DEFAULT_ALIGNMENT,
        }
    }
}

impl<'a> GgufWriter<'a> {
    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64], data: &'a [u8]) -> &mut Self {
        self.tensors.push(TensorToWrite {
            name: name.to_string(),
            ty,
            dims: dims.to_vec(),
            data,
        });
        self
    }

    /// Offsets of each tensor in the data section, as they will be written.
    fn offsets(&self) -> Vec<u64> {
        let mut at = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let off = at;
                at = (at + t.data.len() as u64).div_ceil(self.alignment) * self.alignment;
                off
            })
            .collect()
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&value_type(v).to_le_bytes());
            put_value(&mut header, v);
        }
        for (t, off) in self.tensors.iter().zip(self.offsets()) {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&off.to_le_bytes());
        }
        let pad = |len: u64| ((len.div_ceil(self.alignment) * self.alignment) - len) as usize;
        header.resize(header.len() + pad(header.len() as u64), 0);
        w.write_all(&header)?;
        for (i, t) in self.tensors.iter().enumerate() {
            w.write_all(t.data)?;
            if i + 1 < self.tensors.len() {
                w.write_all(&vec![0u8; pad(t.data.len() as u64)])?;
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn array_type(a: &Array) -> u32 {
    match a {
        Array::U8(_) => 0,
        Array::I8(_) => 1,
        Array::U16(_) => 2,
        Array::I16(_) => 3,
        Array::U32(_) => 4,
        Array::I32(_) => 5,
        Array::F32(_) => 6,
        Array::Bool(_) => 7,
        Array::String(_) => 8,
        Array::Nested(_) => 9,
        Array::U64(_) => 10,
        Array::I64(_) => 11,
        Array::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&array_type(a).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|&b| b as u8)),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Nested(v) => v.iter().for_each(|inner| put_array(out, inner)),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
}
