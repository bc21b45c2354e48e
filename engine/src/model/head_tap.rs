//! The int8 or int4 LM head built while the file streams in, so the float head (0.66 GB
//! for 2B4T) is never in memory beside it: a [`TensorTap`] for the GGUF loader.

use super::weights::{EMBD, OUTPUT};
use super::{HeadMode, ModelConfig};
use crate::error::{Error, Result};
use crate::formats::{DenseMatrix, RowQuantizer};
use crate::gguf::{split_count_of, GgmlType, Metadata, TensorInfo, TensorTap};

pub struct HeadTap {
    mode: HeadMode,
    builder: Option<RowQuantizer>,
}

impl HeadTap {
    pub fn new(mode: HeadMode) -> HeadTap {
        HeadTap {
            mode,
            builder: None,
        }
    }

    /// The head it built, if it took one.
    pub fn into_head(self) -> Result<Option<DenseMatrix>> {
        self.builder.map(RowQuantizer::finish).transpose()
    }
}

impl TensorTap for HeadTap {
    fn choose(&mut self, metadata: &Metadata, infos: &[TensorInfo]) -> Result<Option<usize>> {
        let Some(to) = self.mode.small_type() else {
            return Ok(None);
        };
        let find = |name: &str| infos.iter().position(|t| t.name == name);
        // In one part of a split model an absent `output.weight` may sit in another part,
        // so only in a whole file is the embedding known to be the head.
        let tied_known = split_count_of(metadata) == 1;
        let Some(i) = find(OUTPUT).or(if tied_known { find(EMBD) } else { None }) else {
            return Ok(None);
        };
        let t = &infos[i];
        let float = matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        // Only the shape the model will accept ([n_embd, n_vocab]), so a header cannot make
        // the tap allocate for a tensor that would be refused anyway; anything else is left
        // to the weights' own checks and their errors.
        let Ok(cfg) = ModelConfig::from_metadata(metadata) else {
            return Ok(None);
        };
        let mut dims = t.dims.clone();
        while dims.len() > 2 && dims.last() == Some(&1) {
            dims.pop();
        }
        if !float || dims != [cfg.n_embd as u64, cfg.n_vocab as u64] || cfg.n_embd == 0 {
            return Ok(None);
        }
        let (cols, rows) = (cfg.n_embd, cfg.n_vocab);
        self.builder = Some(RowQuantizer::new(&t.name, t.ty, rows, cols, to)?);
        Ok(Some(i))
    }

    fn write(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<()> {
        match &mut self.builder {
            Some(b) => b.write(bytes),
            None => Err(Error::InvalidArgument(format!(
                "tensor '{}' reached the head tap, which did not choose it",
                info.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{split_writers, GgufFile, GgufLoader, LoadOptions};
    use crate::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits, Model};
    use crate::synth::{model_bytes, SynthShape};
    use std::sync::Arc;

    const SHAPE: SynthShape = SynthShape {
        n_vocab: 1500,
        ..SynthShape::TINY
    };

    /// Streams `bytes` through a loader with a head tap, `chunk` bytes at a time.
    fn stream(bytes: &[u8], chunk: usize, mode: HeadMode) -> (GgufFile, Option<DenseMatrix>) {
        let mut loader = GgufLoader::with_tap(LoadOptions::default(), HeadTap::new(mode));
        for c in bytes.chunks(chunk) {
            loader.push(c).unwrap();
        }
        let (file, tap) = loader.finish_with_tap().unwrap();
        (file, tap.into_head().unwrap())
    }

    fn logits(model: Model) -> Vec<f32> {
        let mut b = CpuBackend::new(
            Arc::new(model),
            CpuOptions {
                act: ActMode::Int8,
                n_ctx: Some(8),
                ..CpuOptions::default()
            },
        );
        b.forward(&[1, 200, 1499, 7], Logits::All).unwrap()
    }

    #[test]
    fn the_streamed_small_head_is_the_in_place_one_and_the_float_head_is_never_stored() {
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        for mode in [HeadMode::Int8, HeadMode::Int4Exact] {
            let in_place = || {
                let mut m = Model::from_gguf(&mut GgufFile::from_bytes(&bytes).unwrap()).unwrap();
                m.set_head(mode);
                m
            };
            let want = in_place();
            let want_logits = logits(in_place());
            for chunk in [997, 1 << 16] {
                let (mut file, head) = stream(&bytes, chunk, mode);
                assert!(
                    file.tensor(EMBD).is_none(),
                    "the float embedding was stored"
                );
                assert_eq!(file.tapped.len(), 1);
                let got = Model::from_gguf_with_head(&mut file, head).unwrap();
                let (g, w) = (got.weights.head(), want.weights.head());
                assert_eq!(Some(g.ty), mode.small_type());
                assert_eq!(g.data.as_slice(), w.data.as_slice());
                assert_eq!((&g.row_scales, &g.row_sums), (&w.row_scales, &w.row_sums));
                assert_eq!(logits(got), want_logits);
            }
        }
        // The file's head: nothing is taken.
        let (file, head) = stream(&bytes, 4096, HeadMode::File);
        assert!(head.is_none() && file.tapped.is_empty() && file.tensor(EMBD).is_some());
    }

    #[test]
    fn a_split_model_taps_no_embedding_whose_head_may_be_in_another_part() {
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        let file = GgufFile::from_bytes(&bytes).unwrap();
        let parts: Vec<Vec<u8>> = split_writers(&file, 2)
            .unwrap()
            .iter()
            .map(|w| w.to_bytes())
            .collect();
        let files: Vec<GgufFile> = parts
            .iter()
            .map(|p| {
                let (f, head) = stream(p, 1 << 12, HeadMode::Int8);
                assert!(head.is_none() && f.tapped.is_empty());
                f
            })
            .collect();
        assert!(crate::gguf::merge_split(files)
            .unwrap()
            .tensor(EMBD)
            .is_some());
    }

    #[test]
    fn a_head_of_the_wrong_shape_is_not_tapped_and_gets_the_shape_error() {
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        let file = GgufFile::from_bytes(&bytes).unwrap();
        // The embedding's values as one long row: a huge row the tap must not allocate.
        let mut w = crate::gguf::GgufWriter::default();
        for (k, v) in file.metadata.entries() {
            w.kv(k, v.clone());
        }
        for t in &file.tensors {
            let dims = if t.info.name == EMBD {
                vec![t.info.n_elements(), 1]
            } else {
                t.info.dims.clone()
            };
            w.tensor(&t.info.name, t.info.ty, &dims, &t.data);
        }
        let (mut file, head) = stream(&w.to_bytes(), 4096, HeadMode::Int8);
        assert!(head.is_none() && file.tapped.is_empty());
        let e = Model::from_gguf_with_head(&mut file, head)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(EMBD) && e.contains("shape"), "{e}");
    }
}
