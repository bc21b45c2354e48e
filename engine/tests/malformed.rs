//! A corpus of malformed GGUF files. Every case asserts one specific typed
//! `Error` variant (and, where there is one, that the message names the
//! offending tensor or key); none may panic. Each hand-built case is also fed
//! to the push loader in several chunkings, which must give the same result as
//! one push.

use bitnet_engine::gguf::{
    Array, GgmlType, GgufFile, GgufLoader, GgufWriter, LoadOptions, Value, MAX_ARRAY_LEN,
    MAX_STRING_LEN, MAX_TENSORS,
};
use bitnet_engine::model::Model;
use bitnet_engine::Error;
use proptest::prelude::*;
use proptest::sample::Index;
use std::path::PathBuf;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Little-endian byte builder for hand-made GGUF files.
#[derive(Clone, Default)]
struct B(Vec<u8>);

impl B {
    /// Magic, version 3 and the two counts.
    fn header(n_tensors: u64, n_kv: u64) -> B {
        B::default().raw(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn raw(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
    fn u8(self, v: u8) -> B {
        self.raw(&[v])
    }
    fn u32(self, v: u32) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn str(self, s: &str) -> B {
        self.bstr(s.as_bytes())
    }
    fn bstr(self, s: &[u8]) -> B {
        self.u64(s.len() as u64).raw(s)
    }
    fn zeros(self, n: usize) -> B {
        self.raw(&vec![0u8; n])
    }
    /// Pads with zeros to a multiple of 32 (the default alignment).
    fn pad(self) -> B {
        let n = self.len().next_multiple_of(32) - self.len();
        self.zeros(n)
    }
    fn kv_u32(self, key: &str, v: u32) -> B {
        self.str(key).u32(4).u32(v)
    }
    fn kv_str(self, key: &str, v: &str) -> B {
        self.str(key).u32(8).str(v)
    }
    /// A tensor info: name, dims, ggml type id, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> B {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    fn bytes(self) -> Vec<u8> {
        self.0
    }
}

const F32: u32 = 0;
const F16: u32 = 1;
const TQ2_0: u32 = 35;
const I2_S: u32 = 36;

/// Deterministic splitmix64, for chunk sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Feeds `bytes` to a loader in the given chunk sizes (the last chunk takes the rest).
fn stream(
    bytes: &[u8],
    expected_len: Option<u64>,
    chunks: impl IntoIterator<Item = usize>,
) -> Result<GgufFile, Error> {
    let mut loader = GgufLoader::new(LoadOptions {
        expected_len,
        max_tensor_bytes: None,
    });
    let mut rest = bytes;
    let mut chunks = chunks.into_iter();
    while !rest.is_empty() {
        let n = chunks.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        loader.push(chunk)?;
        rest = tail;
    }
    loader.finish()
}

/// Random chunk sizes, mostly small (1..=64), sometimes large.
fn random_chunks(seed: u64) -> impl Iterator<Item = usize> {
    let mut rng = Rng(seed);
    std::iter::from_fn(move || {
        Some(if rng.below(8) == 0 {
            1 + rng.below(4096) as usize
        } else {
            1 + rng.below(64) as usize
        })
    })
}

/// A comparable summary of a load result: the error's Debug form, or every
/// tensor's description and bytes.
fn summary(r: &Result<GgufFile, Error>) -> String {
    match r {
        Err(e) => format!("Err({e:?})"),
        Ok(f) => {
            let mut s = format!("Ok(v{}, {} kv", f.version, f.metadata.len());
            for t in &f.tensors {
                s += &format!("; {:?} {:?}", t.info, &t.data[..]);
            }
            s + ")"
        }
    }
}

/// Loads `bytes` with `from_bytes`, checks that the push loader (same options)
/// gives the same result whatever the chunking, and returns the result.
fn load(bytes: &[u8]) -> Result<GgufFile, Error> {
    let one = GgufFile::from_bytes(bytes);
    let want = summary(&one);
    let len = Some(bytes.len() as u64);
    for (what, got) in [
        ("1-byte chunks", stream(bytes, len, std::iter::repeat(1))),
        ("7-byte chunks", stream(bytes, len, std::iter::repeat(7))),
        (
            "random chunks",
            stream(bytes, len, random_chunks(bytes.len() as u64)),
        ),
    ] {
        assert_eq!(summary(&got), want, "{what} disagree with one push");
    }
    one
}

/// Loads a file that must be refused; returns the error.
fn err(bytes: &[u8]) -> Error {
    match load(bytes) {
        Ok(_) => panic!("a malformed file loaded"),
        Err(e) => e,
    }
}

/// Asserts that an error matches a pattern (guards allowed) and returns it.
macro_rules! assert_variant {
    ($e:expr, $($pat:tt)+) => {{
        let e: Error = $e;
        assert!(matches!(&e, $($pat)+), "expected {}, got {:?} ({})", stringify!($($pat)+), e, e);
        e
    }};
}

/// Asserts that the error's message contains every needle.
fn says(e: &Error, needles: &[&str]) {
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} does not mention {n:?}");
    }
}

fn bad_tensor(e: Error, tensor: &str, reason: &str) {
    let e = assert_variant!(e, Error::BadTensor { name, .. } if name == tensor);
    says(&e, &[&format!("'{tensor}'"), reason]);
}

fn malformed(e: Error, needles: &[&str]) {
    let e = assert_variant!(e, Error::Malformed(_));
    says(&e, needles);
}

fn out_of_range(e: Error, what_: &str, value_: u64) {
    assert_variant!(e, Error::OutOfRange { what, value, .. } if *what == what_ && *value == value_);
}

fn truncated(e: Error, needles: &[&str]) {
    let e = assert_variant!(e, Error::Truncated(_));
    says(&e, needles);
}

// ---------------------------------------------------------------------------
// A hand-built file with a mark at every section boundary
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Marks {
    kv0_key: usize,
    kv0_type: usize,
    kv0_value: usize,
    kv1_key: usize,
    kv1_array: usize,
    kv1_item1: usize,
    kv2_key: usize,
    info0: usize,
    info1: usize,
    info1_dims: usize,
    info1_type: usize,
    info1_offset: usize,
    header_end: usize,
    data: usize,
    t0_end: usize,
    t1: usize,
    end: usize,
}

/// Two tensors (`t0`: F32 [4]; `t1`: F16 [8, 2] at offset 32) and three keys
/// (a string, an array of strings, general.alignment).
fn sectioned() -> (Vec<u8>, Marks) {
    let b = B::header(2, 3);
    let kv0_key = b.len();
    let b = b.str("general.architecture");
    let kv0_type = b.len();
    let b = b.u32(8);
    let kv0_value = b.len();
    let b = b.str("tiny");
    let kv1_key = b.len();
    let b = b.str("tokenizer.ggml.tokens").u32(9);
    let kv1_array = b.len();
    let b = b.u32(8).u64(3).str("ab");
    let kv1_item1 = b.len();
    let b = b.str("cde").str("f");
    let kv2_key = b.len();
    let b = b.kv_u32("general.alignment", 32);
    let info0 = b.len();
    let b = b.tensor("t0", &[4], F32, 0);
    let info1 = b.len();
    let b = b.str("t1").u32(2);
    let info1_dims = b.len();
    let b = b.u64(8).u64(2);
    let info1_type = b.len();
    let b = b.u32(F16);
    let info1_offset = b.len();
    let b = b.u64(32);
    let header_end = b.len();
    let b = b.pad();
    let data = b.len();
    let t0: Vec<u8> = (1..=4).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let b = b.raw(&t0);
    let t0_end = b.len();
    let b = b.zeros(16);
    let t1 = b.len();
    let b = b.raw(&[0x3c; 32]);
    let end = b.len();
    let m = Marks {
        kv0_key,
        kv0_type,
        kv0_value,
        kv1_key,
        kv1_array,
        kv1_item1,
        kv2_key,
        info0,
        info1,
        info1_dims,
        info1_type,
        info1_offset,
        header_end,
        data,
        t0_end,
        t1,
        end,
    };
    assert!(m.data > m.header_end, "the case needs real padding: {m:?}");
    assert_eq!((m.t1 - m.data, m.end - m.t1), (32, 32));
    (b.bytes(), m)
}

#[test]
fn sectioned_file_is_valid() {
    let (bytes, _) = sectioned();
    let f = load(&bytes).unwrap();
    assert_eq!(f.metadata.get_str("general.architecture"), Some("tiny"));
    assert_eq!(
        f.metadata.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["ab", "cde", "f"]
    );
    let t0 = f.tensor("t0").unwrap();
    assert_eq!(
        (t0.info.ty, &t0.info.dims[..]),
        (GgmlType::F32, &[4u64][..])
    );
    assert_eq!(&t0.data[..4], &1f32.to_le_bytes());
    let t1 = f.tensor("t1").unwrap();
    assert_eq!(
        (t1.info.ty, &t1.info.dims[..], t1.data.len()),
        (GgmlType::F16, &[8u64, 2][..], 32)
    );
}

// ---------------------------------------------------------------------------
// Magic and version
// ---------------------------------------------------------------------------

#[test]
fn bad_magic() {
    for magic in [*b"GGML", *b"gguf", *b"\0\0\0\0", *b"FUGG"] {
        let mut bytes = sectioned().0;
        bytes[..4].copy_from_slice(&magic);
        assert_variant!(err(&bytes), Error::BadMagic(m) if *m == magic);
    }
    // Refused from the first four bytes, before any header is buffered.
    let mut loader = GgufLoader::new(LoadOptions::default());
    assert_variant!(loader.push(b"GGML").unwrap_err(), Error::BadMagic(_));
    // And a failed loader refuses more input.
    assert_variant!(loader.push(b"more").unwrap_err(), Error::InvalidArgument(_));
    assert_variant!(loader.finish().unwrap_err(), Error::InvalidArgument(_));
}

#[test]
fn unsupported_versions() {
    for version in [0, 1, 4, 5, u32::MAX] {
        let mut bytes = sectioned().0;
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        assert_variant!(err(&bytes), Error::UnsupportedVersion(v) if *v == version);
        // Refused as soon as the eight bytes are in.
        let mut loader = GgufLoader::new(LoadOptions::default());
        assert_variant!(
            loader.push(&bytes[..8]).unwrap_err(),
            Error::UnsupportedVersion(_)
        );
    }
    // Version 2 (u64 counts, like 3) is accepted.
    let mut bytes = sectioned().0;
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(load(&bytes).unwrap().version, 2);
}

// ---------------------------------------------------------------------------
// Truncation in every section
// ---------------------------------------------------------------------------

#[test]
fn truncated_in_each_header_section() {
    let (bytes, m) = sectioned();
    let cuts = [
        ("empty file", 0),
        ("inside the magic", 2),
        ("inside the version", 6),
        ("inside the tensor count", 11),
        ("inside the metadata count", 20),
        ("before the first key", m.kv0_key),
        ("inside a key's length", m.kv0_key + 4),
        ("inside a key", m.kv0_key + 8 + 3),
        ("inside a value type", m.kv0_type + 2),
        ("inside a string value's length", m.kv0_value + 5),
        ("inside a string value", m.kv0_value + 8 + 2),
        ("inside an array key", m.kv1_key + 10),
        ("inside an array's item type", m.kv1_array + 1),
        ("inside an array's length", m.kv1_array + 4 + 3),
        ("inside an array's first item", m.kv1_array + 12 + 9),
        ("inside an array's second item", m.kv1_item1 + 8 + 1),
        ("inside a u32 value", m.kv2_key + 8 + 17 + 4 + 2),
        ("before the tensor infos", m.info0),
        ("inside a tensor name", m.info0 + 9),
        ("inside a tensor's n_dims", m.info1 + 8 + 2 + 1),
        ("inside a tensor's dims", m.info1_dims + 11),
        ("inside a tensor's type", m.info1_type + 3),
        ("inside a tensor's offset", m.info1_offset + 7),
    ];
    for (what, cut) in cuts {
        let prefix = &bytes[..cut];
        let e = err(prefix);
        assert!(
            matches!(e, Error::Truncated(_)),
            "{what} (cut at {cut}): {e:?}"
        );
        says(&e, &["header", &format!("after {cut} bytes")]);
        // The same without knowing the length up front.
        let e = stream(prefix, None, random_chunks(cut as u64)).unwrap_err();
        assert!(matches!(e, Error::Truncated(_)), "{what} (streamed): {e:?}");
    }
}

#[test]
fn truncated_in_padding_and_data_names_the_tensor() {
    let (bytes, m) = sectioned();
    let cuts = [
        ("at the end of the tensor infos", m.header_end, "t0"),
        ("inside the padding", m.header_end + 1, "t0"),
        ("at the start of the data", m.data, "t0"),
        ("inside the first tensor", m.data + 5, "t0"),
        ("in the gap between tensors", m.t0_end + 3, "t1"),
        ("at the start of the second tensor", m.t1, "t1"),
        ("inside the second tensor", m.t1 + 31, "t1"),
    ];
    for (what, cut, tensor) in cuts {
        let prefix = &bytes[..cut];
        // Length known up front: refused when the header parses, naming the tensor cut off.
        let e = err(prefix);
        assert!(
            matches!(&e, Error::BadTensor { name, .. } if name == tensor),
            "{what} (cut at {cut}): {e:?}"
        );
        says(&e, &["past the end", &format!("{cut}-byte file")]);
        // Length unknown: refused at the end of the stream, naming the tensor.
        for chunks in [1usize, 3, 1000] {
            let e = stream(prefix, None, std::iter::repeat(chunks)).unwrap_err();
            assert!(matches!(e, Error::Truncated(_)), "{what} (streamed): {e:?}");
            says(&e, &[&format!("tensor '{tensor}' is incomplete")]);
        }
    }
    assert!(load(&bytes).is_ok());
}

/// Header size of a writer-made file, computed independently of the reader.
fn header_len(kvs: &[(&str, Value)], tensors: &[(&str, GgmlType, &[u64], &[u8])]) -> usize {
    fn value_len(v: &Value) -> usize {
        match v {
            Value::U8(_) | Value::I8(_) | Value::Bool(_) => 1,
            Value::U16(_) | Value::I16(_) => 2,
            Value::U32(_) | Value::I32(_) | Value::F32(_) => 4,
            Value::U64(_) | Value::I64(_) | Value::F64(_) => 8,
            Value::String(s) => 8 + s.len(),
            Value::Array(Array::String(v)) => 12 + v.iter().map(|s| 8 + s.len()).sum::<usize>(),
            Value::Array(Array::U32(v)) => 12 + 4 * v.len(),
            Value::Array(Array::F32(v)) => 12 + 4 * v.len(),
            other => unimplemented!("{other:?}"),
        }
    }
    let kv: usize = kvs
        .iter()
        .map(|(k, v)| 8 + k.len() + 4 + value_len(v))
        .sum();
    let ti: usize = tensors
        .iter()
        .map(|(n, _, d, _)| 8 + n.len() + 4 + 8 * d.len() + 4 + 8)
        .sum();
    24 + kv + ti
}

/// Every prefix of a small valid writer-made file is refused with a precise
/// error, the same in one push and in random chunks, with and without the
/// length known up front.
#[test]
fn truncation_at_every_offset() {
    let a: Vec<u8> = (0..16u32)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..66u8).collect();
    let c: Vec<u8> = vec![0x11; 6];
    let d: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(7)).collect();
    let kvs = [
        ("general.architecture", Value::String("test".into())),
        ("general.name", Value::String("malformed".into())),
        (
            "test.list",
            Value::Array(Array::String(vec!["x".into(), "yz".into(), String::new()])),
        ),
        ("test.ids", Value::Array(Array::U32(vec![1, 2, 3]))),
        ("test.flag", Value::Bool(true)),
        ("test.eps", Value::F32(1e-5)),
    ];
    let tensors: [(&str, GgmlType, &[u64], &[u8]); 4] = [
        ("a", GgmlType::F32, &[8, 2], &a),
        ("b.weight", GgmlType::TQ2_0, &[256], &b),
        ("c", GgmlType::F16, &[3, 1], &c),
        ("d.weight", GgmlType::I2S, &[128, 2], &d),
    ];
    let mut w = GgufWriter::default();
    for (k, v) in &kvs {
        w.kv(k, v.clone());
    }
    for (n, ty, dims, data) in &tensors {
        w.tensor(n, *ty, dims, data);
    }
    let bytes = w.to_bytes();

    let full = load(&bytes).unwrap();
    for (n, ty, dims, data) in &tensors {
        let t = full.tensor(n).unwrap();
        assert_eq!(
            (t.info.ty, &t.info.dims[..], &t.data[..]),
            (*ty, *dims, *data)
        );
    }
    // Where each section starts, checked against what the reader found.
    let header = header_len(&kvs, &tensors);
    let last = full.tensors.iter().max_by_key(|t| t.info.offset).unwrap();
    let data_start = bytes.len() - (last.info.offset + last.info.nbytes) as usize;
    assert_eq!(data_start, header.next_multiple_of(32));
    assert!(data_start > header, "the case needs real padding");
    // The tensor a cut at `p` (past the header) falls in or before.
    let cut_tensor = |p: usize| {
        let mut infos: Vec<_> = full.tensors.iter().map(|t| &t.info).collect();
        infos.sort_by_key(|i| i.offset);
        let i = infos
            .into_iter()
            .find(|i| data_start as u64 + i.offset + i.nbytes > p as u64);
        i.unwrap().name.clone()
    };

    let mut rng = Rng(42);
    for p in 0..bytes.len() {
        let prefix = &bytes[..p];
        let known = GgufFile::from_bytes(prefix);
        let unknown = stream(prefix, None, [p]);
        match (&known, &unknown) {
            (Err(Error::Truncated(k)), Err(Error::Truncated(u))) if p < header => {
                assert!(
                    k.contains("header") && u.contains("header"),
                    "cut at {p}: {k} / {u}"
                );
            }
            (Err(Error::BadTensor { name, reason }), Err(Error::Truncated(u))) if p >= header => {
                let tensor = cut_tensor(p);
                assert_eq!(name, &tensor, "cut at {p}: {reason}");
                assert!(reason.contains("past the end"), "cut at {p}: {reason}");
                assert!(
                    u.contains(&format!("tensor '{tensor}' is incomplete")),
                    "cut at {p}: {u}"
                );
            }
            _ => panic!("cut at {p} (header {header}): {known:?} / {unknown:?}"),
        }
        // Random chunkings give the same result as one push.
        let seed = rng.next();
        let (want_k, want_u) = (summary(&known), summary(&unknown));
        assert_eq!(
            summary(&stream(prefix, Some(p as u64), random_chunks(seed))),
            want_k,
            "cut at {p}"
        );
        assert_eq!(
            summary(&stream(prefix, None, random_chunks(seed))),
            want_u,
            "cut at {p}"
        );
    }
}

// ---------------------------------------------------------------------------
// Absurd counts and sizes
// ---------------------------------------------------------------------------

#[test]
fn absurd_counts() {
    out_of_range(err(&B::header(1 << 40, 0).bytes()), "tensor count", 1 << 40);
    out_of_range(
        err(&B::header(MAX_TENSORS + 1, 0).bytes()),
        "tensor count",
        MAX_TENSORS + 1,
    );
    out_of_range(
        err(&B::header(0, 1 << 40).bytes()),
        "metadata count",
        1 << 40,
    );
    out_of_range(
        err(&B::header(u64::MAX, u64::MAX).bytes()),
        "tensor count",
        u64::MAX,
    );
}

#[test]
fn absurd_lengths() {
    // A key of 2^62 bytes.
    let key = B::header(0, 1).u64(1 << 62).bytes();
    out_of_range(err(&key), "metadata key", 1 << 62);
    // A string value of 2^62 bytes.
    let s = B::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(1 << 62)
        .bytes();
    out_of_range(err(&s), "metadata string", 1 << 62);
    let s = B::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(MAX_STRING_LEN + 1)
        .bytes();
    out_of_range(err(&s), "metadata string", MAX_STRING_LEN + 1);
    // Arrays of 2^62 items, of fixed-size items and of strings.
    for item in [0u32, 4, 8, 10] {
        let a = B::header(0, 1)
            .str("test.list")
            .u32(9)
            .u32(item)
            .u64(1 << 62)
            .bytes();
        out_of_range(err(&a), "array length", 1 << 62);
    }
    let a = B::header(0, 1)
        .str("test.list")
        .u32(9)
        .u32(8)
        .u64(MAX_ARRAY_LEN + 1)
        .bytes();
    out_of_range(err(&a), "array length", MAX_ARRAY_LEN + 1);
    // A plausible array length with the items missing is a truncation, not an allocation.
    let a = B::header(0, 1)
        .str("test.list")
        .u32(9)
        .u32(10)
        .u64(MAX_ARRAY_LEN)
        .bytes();
    truncated(err(&a), &["header"]);
    // One string item of 2^62 bytes inside an array.
    let a = B::header(0, 1)
        .str("test.list")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("ok")
        .u64(1 << 62)
        .bytes();
    out_of_range(err(&a), "metadata string", 1 << 62);
    // A tensor name of 2^62 bytes.
    let n = B::header(1, 0).u64(1 << 62).bytes();
    out_of_range(err(&n), "tensor name", 1 << 62);
}

/// A file with one tensor info, padded, with `data` bytes after.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    B::header(1, 0)
        .tensor(name, dims, ty, offset)
        .pad()
        .zeros(data)
        .bytes()
}

#[test]
fn one_tensor_base_is_valid() {
    let f = load(&one_tensor("t", &[4, 2], F32, 0, 32)).unwrap();
    assert_eq!(f.tensor("t").unwrap().data.len(), 32);
}

#[test]
fn bad_dimensions() {
    for n_dims in [0u32, 5, 64, u32::MAX] {
        let bytes = B::header(1, 0)
            .str("blk.0.attn_q.weight")
            .u32(n_dims)
            .zeros(64)
            .bytes();
        bad_tensor(
            err(&bytes),
            "blk.0.attn_q.weight",
            &format!("{n_dims} dimensions"),
        );
    }
    for dims in [&[0u64][..], &[4, 0], &[0, 4, 4, 4]] {
        bad_tensor(
            err(&one_tensor("z", dims, F32, 0, 64)),
            "z",
            "zero dimension",
        );
    }
    // The element count overflows u64 ...
    let e = err(&one_tensor("huge", &[1 << 32, 1 << 32, 2], F32, 0, 0));
    bad_tensor(e, "huge", "too many elements");
    let e = err(&one_tensor("huge", &[u64::MAX, u64::MAX], F16, 0, 0));
    bad_tensor(e, "huge", "too many elements");
    // ... or only passes the element cap (2^42 > 2^40).
    let e = err(&one_tensor("big", &[1 << 21, 1 << 21], F32, 0, 0));
    bad_tensor(e, "big", "too many elements");
}

#[test]
fn bad_offsets() {
    // Offsets near u64::MAX: offset + size overflows.
    for offset in [u64::MAX - 31, !63, 1 << 63] {
        let e = err(&one_tensor("far", &[8], F32, offset, 64));
        bad_tensor(e, "far", "out of range");
    }
    // Misaligned (the default alignment is 32).
    for offset in [1, 4, 16, 33] {
        let e = err(&one_tensor("mis", &[8], F32, offset, 128));
        bad_tensor(e, "mis", &format!("offset {offset} is not aligned to 32"));
    }
    // Overlapping tensors.
    let bytes = B::header(2, 0)
        .tensor("first", &[16], F32, 0)
        .tensor("second", &[8], F32, 32)
        .pad()
        .zeros(128)
        .bytes();
    let e = err(&bytes);
    bad_tensor(e, "second", "overlaps tensor 'first'");
    // The same data claimed twice.
    let bytes = B::header(2, 0)
        .tensor("x", &[8], F32, 0)
        .tensor("y", &[8], F32, 0)
        .pad()
        .zeros(32)
        .bytes();
    let e = assert_variant!(err(&bytes), Error::BadTensor { reason, .. } if reason.contains("overlaps"));
    says(&e, &["'x'", "'y'"]);
}

#[test]
fn data_past_the_end_is_refused_at_header_time() {
    // 64 bytes of data promised, 63 present.
    let bytes = B::header(2, 0)
        .tensor("ok", &[8], F32, 0)
        .tensor("short", &[8], F32, 32)
        .pad()
        .zeros(63)
        .bytes();
    bad_tensor(err(&bytes), "short", "past the end");
    // A tensor pointing far past the file.
    let bytes = one_tensor("far", &[8], F32, 1 << 30, 32);
    bad_tensor(err(&bytes), "far", "past the end");
    // The push loader refuses it from the header alone, before any data arrives.
    let header_len = B::header(1, 0)
        .tensor("far", &[8], F32, 1 << 30)
        .pad()
        .len();
    let mut loader = GgufLoader::new(LoadOptions {
        expected_len: Some(bytes.len() as u64),
        max_tensor_bytes: None,
    });
    let e = loader.push(&bytes[..header_len]).unwrap_err();
    bad_tensor(e, "far", "past the end");
}

#[test]
fn unsupported_tensor_types() {
    let e = err(&one_tensor("blk.3.ffn_up.weight", &[256, 4], 12, 0, 1024));
    let e = assert_variant!(e, Error::UnsupportedType { name, ty } if name == "blk.3.ffn_up.weight" && ty.contains("Q4_K"));
    says(&e, &["'blk.3.ffn_up.weight'", "Q4_K"]);
    for (id, shown) in [
        (2, "Q4_0"),
        (8, "Q8_0"),
        (37, "TL1"),
        (9999, "9999"),
        (u32::MAX, "4294967295"),
    ] {
        let e = err(&one_tensor("w", &[256], id, 0, 1024));
        let e = assert_variant!(e, Error::UnsupportedType { name, ty } if name == "w" && ty.contains(shown));
        says(&e, &["'w'", shown]);
    }
}

#[test]
fn rows_not_a_whole_number_of_blocks() {
    // TQ2_0: rows must be a multiple of 256 elements.
    for cols in [1, 128, 255, 257, 384] {
        let e = err(&one_tensor(
            "blk.0.ffn_down.weight",
            &[cols, 2],
            TQ2_0,
            0,
            2048,
        ));
        bad_tensor(
            e,
            "blk.0.ffn_down.weight",
            &format!("row length {cols} is not a multiple of TQ2_0's block of 256"),
        );
    }
    // The element count alone is no excuse ([128, 2] holds 256 elements).
    let e = err(&one_tensor("t", &[128, 2], TQ2_0, 0, 66));
    bad_tensor(e, "t", "not a multiple");
    // I2_S: rows of 128.
    let e = err(&one_tensor("i", &[64, 2], I2_S, 0, 64));
    bad_tensor(e, "i", "I2_S's block of 128");
    // TQ1_0 (type 34): rows of 256.
    let e = err(&one_tensor("q", &[32], 34, 0, 64));
    bad_tensor(e, "q", "TQ1_0's block of 256");
}

// ---------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------

#[test]
fn unknown_value_types() {
    for ty in [13u32, 14, 255, u32::MAX] {
        let bytes = B::header(0, 1).str("test.weird").u32(ty).zeros(16).bytes();
        malformed(
            err(&bytes),
            &["'test.weird'", &format!("unknown metadata value type {ty}")],
        );
    }
    // An array of an unknown item type.
    let bytes = B::header(0, 1)
        .str("test.weird")
        .u32(9)
        .u32(13)
        .u64(1)
        .zeros(16)
        .bytes();
    malformed(
        err(&bytes),
        &["'test.weird'", "unknown metadata array item type 13"],
    );
    // Arrays nested past the depth limit.
    let mut b = B::header(0, 1).str("test.deep").u32(9);
    for _ in 0..8 {
        b = b.u32(9).u64(1);
    }
    let bytes = b.u32(0).u64(0).bytes();
    malformed(err(&bytes), &["'test.deep'", "nested too deeply"]);
}

#[test]
fn invalid_bools() {
    for byte in [2u8, 0x80, 0xff] {
        let bytes = B::header(0, 1).str("test.flag").u32(7).u8(byte).bytes();
        malformed(
            err(&bytes),
            &["'test.flag'", &format!("boolean byte {byte}")],
        );
        let bytes = B::header(0, 1)
            .str("test.flags")
            .u32(9)
            .u32(7)
            .u64(3)
            .u8(1)
            .u8(0)
            .u8(byte)
            .bytes();
        malformed(
            err(&bytes),
            &["'test.flags'", &format!("boolean byte {byte}")],
        );
    }
    let ok = B::header(0, 2)
        .str("a")
        .u32(7)
        .u8(1)
        .str("b")
        .u32(9)
        .u32(7)
        .u64(2)
        .u8(0)
        .u8(1)
        .bytes();
    let f = load(&ok).unwrap();
    assert_eq!(f.metadata.get_bool("a"), Some(true));
}

#[test]
fn invalid_utf8() {
    for bad in [
        &b"gen\xffral.name"[..],
        b"\xc3",
        b"\xed\xa0\x80",
        b"ok\0\xc0\x80",
    ] {
        let bytes = B::header(0, 1).bstr(bad).u32(4).u32(1).bytes();
        malformed(err(&bytes), &["metadata key is not valid UTF-8"]);
        let bytes = B::header(0, 1).str("general.name").u32(8).bstr(bad).bytes();
        malformed(
            err(&bytes),
            &["'general.name'", "metadata string is not valid UTF-8"],
        );
        let bytes = B::header(0, 1)
            .str("tokenizer.ggml.tokens")
            .u32(9)
            .u32(8)
            .u64(2)
            .str("a")
            .bstr(bad)
            .bytes();
        malformed(err(&bytes), &["'tokenizer.ggml.tokens'", "not valid UTF-8"]);
        let bytes = B::header(1, 0)
            .bstr(bad)
            .u32(1)
            .u64(4)
            .u32(F32)
            .u64(0)
            .pad()
            .zeros(16)
            .bytes();
        malformed(err(&bytes), &["tensor name is not valid UTF-8"]);
    }
}

#[test]
fn duplicates() {
    let bytes = B::header(0, 3)
        .kv_str("general.name", "a")
        .kv_u32("test.n", 1)
        .kv_str("general.name", "b")
        .bytes();
    malformed(err(&bytes), &["duplicate metadata key 'general.name'"]);
    // A duplicate key is a duplicate whatever its value's type.
    let bytes = B::header(0, 2)
        .kv_u32("test.n", 1)
        .kv_str("test.n", "1")
        .bytes();
    malformed(err(&bytes), &["duplicate metadata key 'test.n'"]);

    let bytes = B::header(2, 0)
        .tensor("blk.0.attn_k.weight", &[8], F32, 0)
        .tensor("blk.0.attn_k.weight", &[8], F32, 32)
        .pad()
        .zeros(64)
        .bytes();
    malformed(
        err(&bytes),
        &["duplicate tensor name 'blk.0.attn_k.weight'"],
    );
}

#[test]
fn bad_alignment() {
    let with = |kv: B| kv.tensor("t", &[8], F32, 0).pad().zeros(32).bytes();
    let h = || B::header(1, 1).str("general.alignment");
    for a in [0u32, 3, 6, 48, 1 << 17, u32::MAX] {
        let e = err(&with(h().u32(4).u32(a)));
        malformed(
            e,
            &["general.alignment", &format!("= {a} is not a power of two")],
        );
    }
    for (ty, value, type_name) in [
        (8u32, B::default().str("32"), "string"),
        (6, B::default().raw(&32f32.to_le_bytes()), "f32"),
        (7, B::default().u8(1), "bool"),
        (9, B::default().u32(4).u64(1).u32(32), "array"),
    ] {
        let e = err(&with(h().u32(ty).raw(&value.0)));
        malformed(e, &["general.alignment", &format!("has type {type_name}")]);
    }
    // A negative signed integer is not an alignment either.
    let e = err(&with(h().u32(5).raw(&(-32i32).to_le_bytes())));
    malformed(e, &["general.alignment", "type i32"]);
    // A valid non-default alignment moves the data section.
    let bytes = B::header(1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("t", &[8], F32, 0);
    let n = bytes.len().next_multiple_of(64) - bytes.len();
    let f = load(&bytes.zeros(n).raw(&[7; 32]).bytes()).unwrap();
    assert_eq!(&f.tensor("t").unwrap().data[..], &[7; 32]);
    // And the offsets must then be aligned to it.
    let bytes = B::header(2, 1)
        .kv_u32("general.alignment", 64)
        .tensor("t", &[8], F32, 0)
        .tensor("u", &[8], F32, 32)
        .zeros(256)
        .bytes();
    bad_tensor(err(&bytes), "u", "not aligned to 64");
}

/// A file with no tensors need not end with padding: it loads, with or without
/// its length known.
#[test]
fn tensorless_file_without_padding() {
    let bytes = B::header(0, 1).kv_str("general.name", "vocab only").bytes();
    assert_ne!(bytes.len() % 32, 0);
    assert!(load(&bytes).unwrap().tensors.is_empty());
    assert!(stream(&bytes, None, [5]).unwrap().tensors.is_empty());
}

// ---------------------------------------------------------------------------
// Model level, on a real fixture rewritten with one defect
// ---------------------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn relu2_tq2() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(fixture("tiny-relu2-TQ2_0.gguf")).unwrap())
}

/// An editable copy of a GGUF file.
struct Parts {
    kvs: Vec<(String, Value)>,
    tensors: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)>,
}

impl Parts {
    fn of(bytes: &[u8]) -> Parts {
        let f = GgufFile::from_bytes(bytes).unwrap();
        Parts {
            kvs: f.metadata.entries().to_vec(),
            tensors: f
                .tensors
                .iter()
                .map(|t| {
                    (
                        t.info.name.clone(),
                        t.info.ty,
                        t.info.dims.clone(),
                        t.data.to_vec(),
                    )
                })
                .collect(),
        }
    }
    fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.kvs.iter_mut().find(|(k, _)| k == key).unwrap().1 = value;
        self
    }
    fn tensor(&mut self, name: &str) -> &mut (String, GgmlType, Vec<u64>, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap()
    }
    fn bytes(&self) -> Vec<u8> {
        let mut w = GgufWriter::default();
        for (k, v) in &self.kvs {
            w.kv(k, v.clone());
        }
        for (n, ty, dims, data) in &self.tensors {
            w.tensor(n, *ty, dims, data);
        }
        w.to_bytes()
    }
    /// Builds the model from the rewritten file, which must itself be a valid GGUF.
    fn model(&self) -> Result<Model, Error> {
        let mut f =
            GgufFile::from_bytes(&self.bytes()).expect("the rewritten file is a valid GGUF");
        Model::from_gguf(&mut f)
    }
    fn model_err(&self) -> Error {
        match self.model() {
            Ok(_) => panic!("a defective model loaded"),
            Err(e) => e,
        }
    }
}

#[test]
fn fixtures_load_and_rewrite() {
    let parts = Parts::of(relu2_tq2());
    let m = parts.model().unwrap();
    assert_eq!((m.config.n_embd, m.config.n_layer), (256, 2));
    let mut f = GgufFile::from_path(fixture("tiny-b158-I2_S.gguf")).unwrap();
    Model::from_gguf(&mut f).unwrap();
}

#[test]
fn unknown_architecture() {
    let mut p = Parts::of(relu2_tq2());
    p.set("general.architecture", Value::String("llama".into()));
    assert_variant!(p.model_err(), Error::UnsupportedArch(a) if a == "llama");
    // Missing altogether.
    p.kvs.retain(|(k, _)| k != "general.architecture");
    let e = assert_variant!(p.model_err(), Error::Model(_));
    says(&e, &["general.architecture"]);
}

#[test]
fn missing_tensor() {
    for name in [
        "blk.1.ffn_down.weight",
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_sub_norm.weight",
    ] {
        let mut p = Parts::of(relu2_tq2());
        p.tensors.retain(|t| t.0 != name);
        let e = assert_variant!(p.model_err(), Error::Model(_));
        says(&e, &[&format!("missing tensor '{name}'")]);
    }
}

#[test]
fn wrong_shapes() {
    // Same element count (so the file itself is consistent), wrong shape.
    let mut p = Parts::of(relu2_tq2());
    p.tensor("blk.0.attn_q.weight").2 = vec![512, 128];
    bad_tensor(
        p.model_err(),
        "blk.0.attn_q.weight",
        "has shape [512, 128], the model needs [256, 256]",
    );
    let mut p = Parts::of(relu2_tq2());
    p.tensor("output_norm.weight").2 = vec![128, 2];
    bad_tensor(p.model_err(), "output_norm.weight", "has shape [128, 2]");
    // A scale tensor must hold one number.
    let mut p = Parts::of(relu2_tq2());
    let t = p.tensor("blk.1.ffn_up.scale");
    (t.1, t.2, t.3) = (GgmlType::F32, vec![2], vec![0; 8]);
    bad_tensor(p.model_err(), "blk.1.ffn_up.scale", "one finite number");
    // A metadata size that disagrees with the tensors.
    let mut p = Parts::of(relu2_tq2());
    p.set("bitnet.feed_forward_length", Value::U32(512));
    assert_variant!(p.model_err(), Error::BadTensor { name, .. } if name == "blk.0.ffn_gate.weight");
}

#[test]
fn wrong_types() {
    // A norm weight stored ternary.
    let mut p = Parts::of(relu2_tq2());
    let t = p.tensor("blk.0.ffn_norm.weight");
    (t.1, t.3) = (GgmlType::TQ2_0, vec![0; 66]);
    let e = assert_variant!(p.model_err(), Error::UnsupportedType { name, ty } if name == "blk.0.ffn_norm.weight" && ty.contains("TQ2_0"));
    says(&e, &["'blk.0.ffn_norm.weight'", "TQ2_0"]);
    // An embedding stored ternary.
    let mut p = Parts::of(relu2_tq2());
    let t = p.tensor("token_embd.weight");
    (t.1, t.3) = (GgmlType::TQ2_0, vec![0; 512 * 66]);
    assert_variant!(p.model_err(), Error::UnsupportedType { name, .. } if name == "token_embd.weight");
}

#[test]
fn max_tensor_bytes() {
    let bytes = relu2_tq2();
    let total: u64 = GgufFile::from_bytes(bytes)
        .unwrap()
        .tensors
        .iter()
        .map(|t| t.info.nbytes)
        .sum();
    let load = |limit: u64, chunk: usize| {
        let mut loader = GgufLoader::new(LoadOptions {
            expected_len: Some(bytes.len() as u64),
            max_tensor_bytes: Some(limit),
        });
        for c in bytes.chunks(chunk) {
            loader.push(c)?;
        }
        loader.finish()
    };
    for chunk in [4096, bytes.len()] {
        let e = load(total - 1, chunk).unwrap_err();
        assert_variant!(e, Error::TooLarge { needed, limit } if *needed == total && *limit == total - 1);
        assert_variant!(
            load(1 << 20 >> 10, chunk).unwrap_err(),
            Error::TooLarge { .. }
        );
        assert!(load(total, chunk).is_ok());
    }
}

/// With the file's length unknown and no tensor limit, a header may declare a tensor
/// larger than the allocator can give (here 2 TiB, within the element bound): when its
/// first bytes arrive the loader fails with an out-of-memory error that names it, instead
/// of aborting the process. (Where the system overcommits without limit the buffer is
/// reserved untouched and the file is truncated instead.) Found by `fuzz/gguf_reader`.
#[test]
fn tensor_beyond_the_allocator_with_the_length_unknown() {
    let bytes = B::header(1, 0)
        .tensor("huge", &[1 << 39], F32, 0)
        .pad()
        .raw(&[0x3c; 64])
        .bytes();
    for chunks in [vec![bytes.len()], vec![7; bytes.len()]] {
        let r = stream(&bytes, None, chunks);
        match r.unwrap_err() {
            Error::OutOfMemory { what, needed, .. } => {
                assert_eq!(what, "tensor 'huge'");
                assert_eq!(needed, 1 << 41);
            }
            e => truncated(e, &["'huge'"]),
        }
    }
}

#[test]
fn fixture_in_random_chunks() {
    let bytes = relu2_tq2();
    let want = GgufFile::from_bytes(bytes).unwrap();
    for seed in 0..3 {
        for len in [Some(bytes.len() as u64), None] {
            let got = stream(bytes, len, random_chunks(seed)).unwrap();
            assert_eq!(got.tensors.len(), want.tensors.len());
            for (a, b) in got.tensors.iter().zip(&want.tensors) {
                assert_eq!(a.info, b.info);
                assert!(a.data[..] == b.data[..], "tensor {}", a.info.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Fuzzing the real fixture: truncations and byte flips never panic
// ---------------------------------------------------------------------------

/// The fixture's header (metadata with its 512-token vocabulary, tensor infos) is ~14 KB.
const HEADER_BIAS: usize = 20_000;

/// Loads, and when that succeeds builds the model: any error must be typed as
/// a corrupt or unsupported model, and nothing may panic.
fn load_and_build(bytes: &[u8]) -> Result<(), Error> {
    let mut f = GgufFile::from_bytes(bytes)?;
    Model::from_gguf(&mut f).map(|_| ())
}

/// Same load result: equal errors, or equal tensors (descriptions and bytes).
fn same(a: &Result<GgufFile, Error>, b: &Result<GgufFile, Error>) -> bool {
    match (a, b) {
        (Err(x), Err(y)) => format!("{x:?}") == format!("{y:?}"),
        (Ok(x), Ok(y)) => {
            x.metadata.entries() == y.metadata.entries()
                && x.tensors.len() == y.tensors.len()
                && x.tensors
                    .iter()
                    .zip(&y.tensors)
                    .all(|(s, t)| s.info == t.info && s.data[..] == t.data[..])
        }
        _ => false,
    }
}

/// The bytes a load of `bytes` needs: up to the end of its last tensor. Its writer pads
/// every tensor to the 32-byte alignment, the last one too, so the file ends in up to 31
/// zero bytes that hold nothing.
fn tensor_bytes_end(bytes: &[u8]) -> usize {
    let f = GgufFile::from_bytes(bytes).unwrap();
    let data = f
        .tensors
        .iter()
        .map(|t| t.info.offset + t.info.nbytes)
        .max()
        .unwrap();
    let padding = (data.div_ceil(32) * 32 - data) as usize;
    let end = bytes.len() - padding;
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "the file's tail is its padding"
    );
    end
}

#[test]
fn a_file_without_its_trailing_padding_loads_whole() {
    let bytes = relu2_tq2();
    let end = tensor_bytes_end(bytes);
    assert!(end < bytes.len(), "the fixture ends in padding");
    let whole = GgufFile::from_bytes(bytes);
    assert!(same(&whole, &GgufFile::from_bytes(&bytes[..end])));
    let short = GgufFile::from_bytes(&bytes[..end - 1]);
    assert!(
        matches!(short, Err(Error::BadTensor { .. })),
        "{:?}",
        short.err()
    );
}

fn typed(e: &Error) -> bool {
    matches!(
        e.kind(),
        "corrupt-model" | "unsupported-model" | "invalid-model"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_truncations_are_refused(at in any::<Index>(), in_header in any::<bool>()) {
        let bytes = relu2_tq2();
        // A cut in the trailing padding drops no tensor byte (see above).
        let cut = at.index(if in_header { HEADER_BIAS } else { tensor_bytes_end(bytes) });
        let e = load_and_build(&bytes[..cut]).unwrap_err();
        prop_assert!(matches!(e, Error::Truncated(_) | Error::BadTensor { .. }), "cut at {}: {:?}", cut, e);
    }

    #[test]
    fn random_byte_flips_never_panic(
        flips in prop::collection::vec((any::<Index>(), any::<bool>(), 1u8..=255), 1..=8),
        seed in any::<u64>(),
    ) {
        let mut bytes = relu2_tq2().to_vec();
        for (at, in_header, mask) in &flips {
            let i = at.index(if *in_header { HEADER_BIAS } else { bytes.len() });
            bytes[i] ^= mask;
        }
        if let Err(e) = load_and_build(&bytes) {
            prop_assert!(typed(&e), "untyped error {:?}", e);
        }
        // The push loader, fed random chunks, agrees with one push.
        let len = Some(bytes.len() as u64);
        let one = GgufFile::from_bytes(&bytes);
        let chunked = stream(&bytes, len, random_chunks(seed));
        prop_assert!(same(&one, &chunked), "{:?} / {:?}", one.as_ref().err(), chunked.as_ref().err());
    }

    #[test]
    fn flips_then_truncation_never_panic(
        flips in prop::collection::vec((any::<Index>(), 1u8..=255), 1..=4),
        cut in any::<Index>(),
    ) {
        let mut bytes = relu2_tq2().to_vec();
        for (at, mask) in &flips {
            let i = at.index(HEADER_BIAS);
            bytes[i] ^= mask;
        }
        let cut = cut.index(bytes.len());
        if let Err(e) = load_and_build(&bytes[..cut]) {
            prop_assert!(typed(&e), "untyped error {:?}", e);
        }
    }
}

/// A KV cache sized by a file or an option: never an overflowed size or an allocator
/// abort, but an out-of-memory error that names the cache.
#[test]
fn kv_cache_past_the_budget_or_the_address_space_is_out_of_memory() {
    use bitnet_engine::model::{CpuBackend, CpuOptions};
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-b158-I2_S.gguf");
    let mut file = GgufFile::from_path(path).unwrap();
    let model = std::sync::Arc::new(Model::from_gguf(&mut file).unwrap());
    let opts = |n_ctx: usize| CpuOptions {
        n_ctx: Some(n_ctx),
        ..Default::default()
    };
    // 2 layers × 4096 positions × 128 values × 2 (keys, values) × 4 bytes = 8 MiB.
    let refused = |n_ctx: usize, budget: Option<u64>| match CpuBackend::try_new(
        model.clone(),
        opts(n_ctx),
        budget,
    ) {
        Ok(_) => panic!("a KV cache of {n_ctx} positions was allocated"),
        Err(e) => e,
    };
    let e = refused(4096, Some(1 << 20));
    assert_eq!(e.kind(), "out-of-memory");
    assert!(
        e.to_string()
            .starts_with("the KV cache (2 layers × 4096 positions"),
        "{e}"
    );
    assert_variant!(e, Error::OutOfMemory { needed, limit, .. } if *needed == 8 << 20 && *limit == 1 << 20);
    // Sizes whose element count or byte count overflows.
    for n_ctx in [usize::MAX / 2, usize::MAX / 1024] {
        let e = refused(n_ctx, None);
        assert_eq!(e.kind(), "out-of-memory", "{n_ctx}: {e}");
    }
    assert!(CpuBackend::try_new(model, opts(4096), Some(8 << 20)).is_ok());
}
