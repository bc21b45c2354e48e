//! Models sharded by llama.cpp's `gguf-split`: every part is a complete GGUF file;
//! the first carries the metadata, each carries some of the tensors, and all carry
//! `split.no` / `split.count` / `split.tensors.count`.

use super::{GgufFile, GgufWriter, Metadata, Value};
use crate::error::{Error, Result};

const SPLIT_NO: &str = "split.no";
const SPLIT_COUNT: &str = "split.count";
const SPLIT_TENSORS: &str = "split.tensors.count";

/// How many parts the model in `first` was split into (1 when it was not).
pub fn split_count(first: &GgufFile) -> usize {
    split_count_of(&first.metadata)
}

/// [`split_count`] from a part's metadata alone (known as soon as its header is parsed).
pub fn split_count_of(metadata: &Metadata) -> usize {
    metadata.get_u64(SPLIT_COUNT).unwrap_or(1).max(1) as usize
}

/// Joins the parts of a split model, given in order, into one file: the first
/// part's metadata and every part's tensors. A part missing, repeated, out of
/// order, or from another model is refused.
pub fn merge_split(mut parts: Vec<GgufFile>) -> Result<GgufFile> {
    if parts.is_empty() {
        return Err(Error::InvalidArgument("no model parts were given".into()));
    }
    let count = split_count(&parts[0]);
    if parts.len() != count {
        return Err(Error::InvalidArgument(format!(
            "the model is split into {count} parts, {} were given",
            parts.len()
        )));
    }
    if count == 1 {
        return Ok(parts.remove(0));
    }
    let total = parts[0].metadata.get_u64(SPLIT_TENSORS);
    for (i, p) in parts.iter().enumerate() {
        let no = p.metadata.get_u64(SPLIT_NO);
        let n = p.metadata.get_u64(SPLIT_COUNT);
        if no != Some(i as u64) || n != Some(count as u64) {
            return Err(Error::InvalidArgument(format!(
                "part {} of {count} is not next: it says it is part {} of {}",
                i + 1,
                no.map_or("?".into(), |v| (v + 1).to_string()),
                n.map_or("?".into(), |v| v.to_string()),
            )));
        }
    }
    let mut merged = parts.remove(0);
    let seen = |merged: &GgufFile, name: &str| {
        merged.tensor(name).is_some() || merged.tapped.iter().any(|t| t.name == name)
    };
    let twice = |name: &str| Error::Malformed(format!("tensor '{name}' appears in two parts"));
    for p in parts {
        for t in p.tensors {
            if seen(&merged, &t.info.name) {
                return Err(twice(&t.info.name));
            }
            merged.tensors.push(t);
        }
        for t in p.tapped {
            if seen(&merged, &t.name) {
                return Err(twice(&t.name));
            }
            merged.tapped.push(t);
        }
    }
    let held = merged.tensors.len() + merged.tapped.len();
    if let Some(total) = total {
        if held as u64 != total {
            return Err(Error::Malformed(format!(
                "the parts hold {held} tensors, the first part announces {total}"
            )));
        }
    }
    Ok(merged)
}

/// Splits `file` the way `gguf-split` does: `n` files, the first with all the metadata,
/// the tensors spread in order so the parts are about the same size.
pub fn split_writers(file: &GgufFile, n: usize) -> Result<Vec<GgufWriter<'_>>> {
    if n == 0 || n > file.tensors.len().max(1) || n > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "cannot split {} tensors into {n} parts",
            file.tensors.len()
        )));
    }
    let total: u64 = file.tensors.iter().map(|t| t.info.nbytes).sum();
    let alignment = file.metadata.get_u64("general.alignment");
    let mut parts: Vec<GgufWriter> = (0..n)
        .map(|i| {
            let mut w = GgufWriter::default();
            if let Some(a) = alignment {
                w.alignment = a;
            }
            if i == 0 {
                for (k, v) in file.metadata.entries() {
                    if !k.starts_with("split.") {
                        w.kv(k, v.clone());
                    }
                }
                w.kv(SPLIT_TENSORS, Value::I32(file.tensors.len() as i32));
            }
            w.kv(SPLIT_NO, Value::U16(i as u16));
            w.kv(SPLIT_COUNT, Value::U16(n as u16));
            w
        })
        .collect();
    let (mut part, mut bytes) = (0, 0u64);
    for (i, t) in file.tensors.iter().enumerate() {
        // Move on once this part has its share, keeping a tensor for each later part.
        let left = file.tensors.len() - i;
        if part + 1 < n && (bytes * n as u64 >= total * (part as u64 + 1) || left == n - part - 1) {
            part += 1;
        }
        let dims = t.info.dims.clone();
        parts[part].tensor(&t.info.name, t.info.ty, &dims, t.data.as_slice());
        bytes += t.info.nbytes;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgmlType, GgufWriter, Value};

    fn part(no: u16, count: u16, names: &[&str], meta: bool) -> GgufFile {
        let data = vec![0u8; 16];
        let mut w = GgufWriter::default();
        if meta {
            w.kv("general.architecture", Value::String("bitnet-b1.58".into()));
            w.kv(SPLIT_TENSORS, Value::I32(3));
        }
        w.kv(SPLIT_NO, Value::U16(no));
        w.kv(SPLIT_COUNT, Value::U16(count));
        for n in names {
            w.tensor(n, GgmlType::F32, &[4], &data);
        }
        GgufFile::from_bytes(&w.to_bytes()).unwrap()
    }

    #[test]
    fn parts_in_order_merge_into_one_file() {
        let a = part(0, 2, &["a", "b"], true);
        assert_eq!(split_count(&a), 2);
        let m = merge_split(vec![a, part(1, 2, &["c"], false)]).unwrap();
        let names: Vec<_> = m.tensors.iter().map(|t| t.info.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            m.metadata.get_str("general.architecture"),
            Some("bitnet-b1.58")
        );
    }

    #[test]
    fn a_model_split_and_merged_is_the_same_model() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tiny-b158-I2_S.gguf"
        ))
        .unwrap();
        let file = GgufFile::from_bytes(&bytes).unwrap();
        for n in [1, 2, 3] {
            let parts: Vec<GgufFile> = split_writers(&file, n)
                .unwrap()
                .iter()
                .map(|w| GgufFile::from_bytes(&w.to_bytes()).unwrap())
                .collect();
            assert!(parts.iter().all(|p| !p.tensors.is_empty()));
            assert_eq!(split_count(&parts[0]), n);
            let merged = merge_split(parts).unwrap();
            assert_eq!(merged.tensors.len(), file.tensors.len());
            for t in &file.tensors {
                let m = merged.tensor(&t.info.name).unwrap();
                assert_eq!(m.info.dims, t.info.dims);
                assert_eq!(m.data.as_slice(), t.data.as_slice());
            }
            assert_eq!(
                merged.metadata.get_str("general.architecture"),
                file.metadata.get_str("general.architecture")
            );
        }
    }

    #[test]
    fn missing_swapped_or_foreign_parts_are_refused() {
        let a = || part(0, 2, &["a", "b"], true);
        let b = || part(1, 2, &["c"], false);
        assert!(merge_split(vec![a()]).is_err());
        assert!(merge_split(vec![b(), a()]).is_err());
        assert!(merge_split(vec![a(), part(1, 3, &["c"], false)]).is_err());
        assert!(merge_split(vec![a(), part(1, 2, &["b"], false)]).is_err());
        assert!(merge_split(vec![a(), part(1, 2, &["c", "d"], false)]).is_err());
        assert!(merge_split(vec![a(), b()]).is_ok());
    }
}
