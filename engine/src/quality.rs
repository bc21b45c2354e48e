//! Model quality on a text, llama.cpp's `llama-perplexity` way: the tokens are cut into
//! non-overlapping windows of `n_ctx`, each evaluated from an empty cache (its first
//! token replaced by BOS when the model has one), and only the second half of each
//! window is scored, so every scored token has at least `n_ctx / 2` tokens of context.
//! Beside perplexity, a run can be compared with a reference run's logits (the same
//! windows, exact settings): mean KL divergence and top-1 agreement, the figures that
//! tell a harmless approximation from a harmful one.

use crate::error::{Error, Result};
use crate::model::{Backend, Logits};

/// A mean and its standard error, accumulated one value at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl Mean {
    pub fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sum_sq += v * v;
    }
    pub fn count(&self) -> u64 {
        self.n
    }
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        self.sum / self.n as f64
    }
    /// Standard error of the mean (0 with fewer than two values).
    pub fn stderr(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let m = self.mean();
        let var = (self.sum_sq / self.n as f64 - m * m).max(0.0);
        (var / (self.n - 1) as f64).sqrt()
    }
}

/// The result of a perplexity run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of `ppl` (delta method: `ppl · stderr(nll)`, as llama.cpp prints it).
    pub ppl_stderr: f64,
    pub nll: f64,
    pub windows: usize,
    pub scored_tokens: u64,
}

/// How a run compares with a reference run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// Mean KL(reference ‖ this run) per scored token, in nats.
    pub kl_divergence: f64,
    pub kl_divergence_stderr: f64,
    /// Share of scored tokens whose most likely next token is the reference's.
    pub top1_agreement: f64,
}

/// Rows scored in each window of `n_ctx` tokens: positions `n_ctx / 2 ..= n_ctx - 2`,
/// each predicting the token after it.
pub fn scored_per_window(n_ctx: usize) -> usize {
    n_ctx - 1 - n_ctx / 2
}

/// Runs every window of `tokens` through `backend` and scores it. `each` sees the
/// logits of each window's scored rows (`scored_per_window(n_ctx) × n_vocab`, row-major)
/// and the tokens they predict, e.g. to save them or to compare them with a reference.
pub fn perplexity(
    backend: &mut dyn Backend,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    mut each: impl FnMut(&[f32], &[u32]) -> Result<()>,
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(Error::InvalidArgument(format!(
            "ctx must be at least 4 (got {n_ctx})"
        )));
    }
    if n_ctx > backend.n_ctx() {
        return Err(Error::InvalidArgument(format!(
            "ctx {n_ctx} is larger than the backend's KV cache of {}",
            backend.n_ctx()
        )));
    }
    let windows = tokens.len() / n_ctx;
    if windows == 0 {
        return Err(Error::InvalidArgument(format!(
            "the text has {} tokens, fewer than one window of {n_ctx}",
            tokens.len()
        )));
    }
    let n_vocab = backend.n_vocab();
    let first = n_ctx / 2;
    let mut nll = Mean::default();
    for w in 0..windows {
        let mut window = tokens[w * n_ctx..(w + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        backend.truncate(0);
        let logits = backend.forward(&window, Logits::All)?;
        let scored = &logits[first * n_vocab..(n_ctx - 1) * n_vocab];
        let targets = &tokens[w * n_ctx + first + 1..(w + 1) * n_ctx];
        for (row, &t) in scored.chunks_exact(n_vocab).zip(targets) {
            nll.add(-log_softmax_at(row, t as usize));
        }
        each(scored, targets)?;
    }
    let ppl = nll.mean().exp();
    Ok(Perplexity {
        ppl,
        ppl_stderr: ppl * nll.stderr(),
        nll: nll.mean(),
        windows,
        scored_tokens: nll.count(),
    })
}

/// `log softmax(row)[i]`, in f64.
pub fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    row[i] as f64 - log_sum_exp(row)
}

/// `ln Σ exp(row)`, in f64, shifted by the maximum so that nothing overflows.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    row.iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max
}

/// Accumulates KL divergence and top-1 agreement of rows against reference rows.
#[derive(Debug, Clone, Default)]
pub struct Compare {
    kl: Mean,
    same_top1: u64,
}

impl Compare {
    /// Adds rows (`n_vocab` wide, row-major) and the reference's rows for the same tokens.
    pub fn add(&mut self, rows: &[f32], reference: &[f32], n_vocab: usize) -> Result<()> {
        if rows.len() != reference.len() || !rows.len().is_multiple_of(n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "the reference logits do not line up with this run ({} values against {})",
                reference.len(),
                rows.len()
            )));
        }
        for (a, r) in rows
            .chunks_exact(n_vocab)
            .zip(reference.chunks_exact(n_vocab))
        {
            let (la, lr) = (log_softmax(a), log_softmax(r));
            let kl: f64 = lr.iter().zip(&la).map(|(&p, &q)| p.exp() * (p - q)).sum();
            self.kl.add(kl.max(0.0));
            self.same_top1 += u64::from(argmax(a) == argmax(r));
        }
        Ok(())
    }

    pub fn result(&self) -> Agreement {
        Agreement {
            kl_divergence: self.kl.mean(),
            kl_divergence_stderr: self.kl.stderr(),
            top1_agreement: self.same_top1 as f64 / self.kl.count().max(1) as f64,
        }
    }
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let lse = log_sum_exp(row);
    row.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_standard_error() {
        let mut m = Mean::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            m.add(v);
        }
        assert_eq!(m.mean(), 2.5);
        // sqrt(var_population / (n - 1)) = sqrt(1.25 / 3)
        assert!((m.stderr() - (1.25f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn kl_of_identical_rows_is_zero_and_of_different_rows_positive() {
        let a = [1.0f32, 2.0, 3.0, 0.5, -1.0, 0.0];
        let mut same = Compare::default();
        same.add(&a, &a, 3).unwrap();
        assert_eq!(same.result().kl_divergence, 0.0);
        assert_eq!(same.result().top1_agreement, 1.0);
        let b = [3.0f32, 2.0, 1.0, 0.5, -1.0, 0.0];
        let mut diff = Compare::default();
        diff.add(&b, &a, 3).unwrap();
        // Row 0: p = softmax(1,2,3), q = softmax(3,2,1): KL = Σ p (log p − log q).
        let p = log_softmax(&a[..3]);
        let q = log_softmax(&b[..3]);
        let want: f64 = p
            .iter()
            .zip(&q)
            .map(|(&x, &y)| x.exp() * (x - y))
            .sum::<f64>()
            / 2.0;
        assert!((diff.result().kl_divergence - want).abs() < 1e-12);
        assert_eq!(diff.result().top1_agreement, 0.5);
        assert!(diff.add(&b, &a[..3], 3).is_err());
    }
}
