//! The int8 or int4 head made exact where it decides: the small copy scores every
//! vocabulary row, then each token's best candidates are scored again from the file's own
//! float rows, read on demand from the host's copy of the file. Greedy decoding and top-k
//! sampling see the float head's logits while only the small copy (a half or a quarter
//! of the bytes) is in memory;
//! with a tied embedding the token embeddings come from the float rows too, so the
//! model's input is the file's exactly.

use crate::error::{Error, Result};
use crate::formats::{dense, DenseMatrix, DenseType};
use crate::gguf::{AlignedBuf, FileBytes, GgmlType, TensorInfo};
use crate::kernels::Kernels;
use std::sync::Arc;

/// Candidates rescored per token: more than the sampler's default top-k (40), so greedy
/// and top-k sampling choose among exact logits; the rows below keep their int8 score.
pub const EXACT_CANDIDATES: usize = 64;

/// A float matrix of the model file, its rows read when asked for.
#[derive(Clone)]
pub struct FloatRows {
    source: Arc<dyn FileBytes>,
    /// Where row 0 starts in the file.
    offset: u64,
    ty: DenseType,
    pub rows: usize,
    pub cols: usize,
}

impl std::fmt::Debug for FloatRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatRows")
            .field("offset", &self.offset)
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl FloatRows {
    /// The rows of tensor `info` ([`rows`, `cols`]) in a file whose data section starts at
    /// `data_start`.
    pub fn new(
        source: Arc<dyn FileBytes>,
        info: &TensorInfo,
        data_start: u64,
        rows: usize,
        cols: usize,
    ) -> Result<FloatRows> {
        let ty = match info.ty {
            GgmlType::F32 => DenseType::F32,
            GgmlType::F16 => DenseType::F16,
            GgmlType::BF16 => DenseType::BF16,
            other => {
                return Err(Error::UnsupportedType {
                    name: info.name.clone(),
                    ty: format!("{other} (the exact head reads float rows)"),
                })
            }
        };
        let nbytes = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(ty.bytes_per_value() as u64));
        if nbytes != Some(info.nbytes) {
            return Err(Error::BadTensor {
                name: info.name.clone(),
                reason: format!("{} bytes for {rows} rows of {cols} values", info.nbytes),
            });
        }
        Ok(FloatRows {
            source,
            offset: data_start + info.offset,
            ty,
            rows,
            cols,
        })
    }

    fn row_bytes(&self) -> usize {
        self.cols * self.ty.bytes_per_value()
    }

    /// Row `r` as f32.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) -> Result<()> {
        let mut b = vec![0u8; self.row_bytes()];
        self.read_row(r, &mut b)?;
        dense::decode_float_row(self.ty, &b, &mut out[..self.cols]);
        Ok(())
    }

    fn read_row(&self, r: usize, out: &mut [u8]) -> Result<()> {
        if r >= self.rows {
            return Err(Error::InvalidArgument(format!(
                "row {r} of a {}-row matrix",
                self.rows
            )));
        }
        let at = self.offset + (r * self.row_bytes()) as u64;
        self.source.read_at(at, out)
    }

    /// Scores again, from the float rows, each token's [`EXACT_CANDIDATES`] highest
    /// logits: `x` holds the tokens' final hidden states (`cols` each), `logits` their
    /// `rows` scores each, token-major.
    pub fn rescore(&self, kernels: &dyn Kernels, x: &[f32], logits: &mut [f32]) -> Result<()> {
        let k = EXACT_CANDIDATES.min(self.rows);
        if k == 0 {
            return Ok(());
        }
        let row_len = self.row_bytes();
        let mut data = AlignedBuf::try_zeroed(k * row_len).ok_or_else(|| Error::OutOfMemory {
            what: "the exact head's candidate rows".into(),
            needed: (k * row_len) as u64,
            limit: isize::MAX as u64,
        })?;
        let mut ids: Vec<u32> = Vec::with_capacity(self.rows);
        let mut exact = vec![0f32; k];
        for (scores, x) in logits
            .chunks_exact_mut(self.rows)
            .zip(x.chunks_exact(self.cols))
        {
            ids.clear();
            ids.extend(0..self.rows as u32);
            // The k best, any order among them; read in file order.
            ids.select_nth_unstable_by(k - 1, |&a, &b| {
                scores[b as usize].total_cmp(&scores[a as usize])
            });
            ids.truncate(k);
            ids.sort_unstable();
            for (&r, row) in ids.iter().zip(data.chunks_exact_mut(row_len)) {
                self.read_row(r as usize, row)?;
            }
            let m = DenseMatrix {
                rows: k,
                cols: self.cols,
                ty: self.ty,
                data,
                row_scales: Vec::new(),
                row_sums: Vec::new(),
            };
            kernels.dense_rows(&m, x, 1, 0..k, &mut exact);
            data = m.data;
            for (&r, &v) in ids.iter().zip(&exact) {
                scores[r as usize] = v;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufFile, GgufWriter};
    use crate::model::{ActMode, Backend, CpuBackend, CpuOptions, HeadMode, Logits, Model};
    use crate::model::{EMBD, OUTPUT};
    use crate::synth::{model_bytes, SynthShape};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SHAPE: SynthShape = SynthShape {
        n_vocab: 1500,
        ..SynthShape::TINY
    };
    const TOKENS: [u32; 5] = [1, 200, 1499, 7, 640];

    fn model(bytes: &[u8], head: HeadMode, source: Option<Arc<dyn FileBytes>>) -> Model {
        let mut file = GgufFile::from_bytes(bytes).unwrap();
        let head_name = if file.tensor(OUTPUT).is_some() {
            OUTPUT
        } else {
            EMBD
        };
        let info = file.tensor(head_name).unwrap().info.clone();
        let mut m = Model::from_gguf(&mut file).unwrap();
        m.set_head(head);
        if let Some(s) = source {
            m.read_float_head_from(s, &info, file.data_start).unwrap();
        }
        m
    }

    /// The synthesized model with its own `output.weight` (the embedding's rows in
    /// reverse), so that the int8 head leaves the embedding as it is.
    fn untied(bytes: &[u8]) -> Vec<u8> {
        let file = GgufFile::from_bytes(bytes).unwrap();
        let embd = file.tensor(EMBD).unwrap();
        let row = embd.info.nbytes as usize / SHAPE.n_vocab;
        let output: Vec<u8> = embd.data.chunks(row).rev().flatten().copied().collect();
        let mut w = GgufWriter::default();
        for (k, v) in file.metadata.entries() {
            w.kv(k, v.clone());
        }
        for t in &file.tensors {
            w.tensor(&t.info.name, t.info.ty, &t.info.dims, &t.data);
        }
        w.tensor(OUTPUT, embd.info.ty, &embd.info.dims, &output);
        w.to_bytes()
    }

    fn backend(m: Model) -> CpuBackend {
        CpuBackend::new(
            Arc::new(m),
            CpuOptions {
                act: ActMode::Int8,
                n_ctx: Some(8),
                ..CpuOptions::default()
            },
        )
    }

    fn logits(m: Model) -> Vec<f32> {
        backend(m).forward(&TOKENS, Logits::All).unwrap()
    }

    /// The ids of a row's `k` highest scores.
    fn best(row: &[f32], k: usize) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..row.len()).collect();
        ids.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        ids.truncate(k);
        ids
    }

    /// The exact heads.
    const EXACT: [HeadMode; 2] = [HeadMode::Int8Exact, HeadMode::Int4Exact];

    /// (float head, small head alone, exact head) logits of `bytes`, for an exact `mode`.
    fn three_heads(bytes: &[u8], mode: HeadMode) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let source: Arc<dyn FileBytes> = Arc::new(bytes.to_vec());
        (
            logits(model(bytes, HeadMode::File, None)),
            logits(model(bytes, mode, None)),
            logits(model(bytes, mode, Some(source))),
        )
    }

    fn close(e: f32, f: f32) -> bool {
        // The float head's own kernel on the same rows and hidden state.
        (e - f).abs() <= 1e-5 * f.abs().max(1.0)
    }

    #[test]
    fn the_small_heads_best_candidates_get_the_float_heads_logits_and_the_rest_keep_theirs() {
        let bytes = untied(&model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap());
        for mode in EXACT {
            small_head_candidates_are_exact(&bytes, mode);
        }
    }

    fn small_head_candidates_are_exact(bytes: &[u8], mode: HeadMode) {
        let (float, int8, exact) = three_heads(bytes, mode);
        let v = SHAPE.n_vocab;
        let mut moved = 0f32;
        for t in 0..TOKENS.len() {
            let row = t * v..(t + 1) * v;
            let (f, i, e) = (&float[row.clone()], &int8[row.clone()], &exact[row]);
            let chosen = best(i, EXACT_CANDIDATES);
            for r in 0..v {
                if chosen.contains(&r) {
                    assert!(
                        close(e[r], f[r]),
                        "{mode:?} token {t} row {r}: {} against {}",
                        e[r],
                        f[r]
                    );
                    moved = moved.max((i[r] - f[r]).abs());
                } else {
                    assert_eq!(e[r].to_bits(), i[r].to_bits(), "{mode:?} token {t} row {r}");
                }
            }
            assert_eq!(best(e, 1), best(f, 1), "{mode:?} token {t}: the argmax");
        }
        // The small head alone was measurably off on those rows.
        assert!(
            moved > 1e-3,
            "{mode:?}: the small head moved no candidate ({moved})"
        );
    }

    #[test]
    fn a_tied_embedding_is_read_from_the_float_rows() {
        // The input is the file's own embedding, so the hidden states are the float
        // model's, and so are the candidates' scores.
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        for mode in EXACT {
            let (float, _, exact) = three_heads(&bytes, mode);
            for (t, (f, e)) in float
                .chunks(SHAPE.n_vocab)
                .zip(exact.chunks(SHAPE.n_vocab))
                .enumerate()
            {
                let same = f.iter().zip(e).filter(|(&f, &e)| close(e, f)).count();
                assert!(
                    same >= EXACT_CANDIDATES,
                    "{mode:?} token {t}: {same} rows at the float head's"
                );
                assert_eq!(best(e, 1), best(f, 1), "{mode:?} token {t}: the argmax");
            }
        }
    }

    /// Reads the first `left` calls, then fails as a file that went away would.
    struct Failing {
        bytes: Vec<u8>,
        left: AtomicUsize,
    }

    impl FileBytes for Failing {
        fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<()> {
            if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
                self.left.store(0, Ordering::SeqCst);
                return Err(std::io::Error::other("the file went away").into());
            }
            self.bytes.read_at(offset, out)
        }
    }

    #[test]
    fn a_file_that_cannot_be_read_is_an_error_and_the_tokens_are_not_taken() {
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        // Failing at the embedding (no read succeeds) and at the rescoring (after the
        // tokens' embeddings were read).
        for left in [0, TOKENS.len()] {
            let source = Arc::new(Failing {
                bytes: bytes.clone(),
                left: AtomicUsize::new(left),
            });
            let mode = EXACT[left % 2];
            let mut b = backend(model(&bytes, mode, Some(source)));
            let e = b.forward(&TOKENS, Logits::Last).unwrap_err();
            assert!(matches!(e, Error::Io(_)), "{e}");
            assert_eq!(b.n_past(), 0, "after a failure {left} reads in");
        }
    }

    #[test]
    fn a_head_of_the_wrong_size_or_type_is_refused() {
        let bytes = model_bytes(SHAPE, crate::gguf::GgmlType::I2S, 5).unwrap();
        let file = GgufFile::from_bytes(&bytes).unwrap();
        let info = file.tensor(EMBD).unwrap().info.clone();
        let source: Arc<dyn FileBytes> = Arc::new(bytes);
        let (rows, cols) = (SHAPE.n_vocab, SHAPE.n_embd);
        assert!(FloatRows::new(source.clone(), &info, 0, rows, cols).is_ok());
        let e = FloatRows::new(source.clone(), &info, 0, rows + 1, cols).unwrap_err();
        assert!(matches!(e, Error::BadTensor { .. }), "{e}");
        let ternary = file.tensor("blk.0.attn_q.weight").unwrap().info.clone();
        let e = FloatRows::new(source, &ternary, 0, cols, cols).unwrap_err();
        assert!(matches!(e, Error::UnsupportedType { .. }), "{e}");
    }
}
