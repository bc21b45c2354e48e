//! Token selection: greedy, temperature, top-k, top-p, min-p, repetition penalty
//! over a window, seeded for reproducibility; plus the loop guard that stops a
//! generation stuck repeating itself (BitNet 2B4T's known failure mode).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 means greedy (negative values are refused by `GenerateOptions::validate`).
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub min_p: f32,
    /// 1 disables; > 1 discourages tokens seen in the last `repeat_window` tokens.
    pub repetition_penalty: f32,
    pub repeat_window: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// Chat defaults: mild sampling and a mild repetition penalty, which keeps
    /// BitNet 2B4T out of most n-gram loops without bending its answers.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.1,
            repeat_window: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repeat_window: 0,
            seed: 0,
        }
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            candidates: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token. `history` is every token so far (prompt and generated).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, if l.is_nan() { f32::NEG_INFINITY } else { l })),
        );
        self.pick(history)
    }

    /// How many of the best logits [`Sampler::sample_top`] needs to pick exactly what
    /// [`Sampler::sample`] would from all of them (`None`: all are needed). A penalty > 1 only
    /// lowers seen tokens, so the best `k` after it lie within the best `k + seen` before it.
    pub fn candidates_needed(&self, history: &[u32]) -> Option<usize> {
        let cfg = &self.cfg;
        let base = if cfg.temperature <= 0.0 {
            1
        } else if cfg.top_k > 0 {
            cfg.top_k
        } else {
            return None;
        };
        let seen = self.seen(history).len();
        if seen > 0 && cfg.repetition_penalty < 1.0 {
            return None;
        }
        Some(base + seen)
    }

    /// [`Sampler::sample`] from the best `top` logits only (`(id, logit)`, any order), given
    /// at least [`Sampler::candidates_needed`] of them: the same choice, the same draws.
    pub fn sample_top(&mut self, top: &[(u32, f32)], history: &[u32]) -> u32 {
        self.candidates.clear();
        self.candidates.extend(
            top.iter()
                .map(|&(i, l)| (i, if l.is_nan() { f32::NEG_INFINITY } else { l })),
        );
        // Id order, as with full logits: greedy ties then go to the lower id the same way.
        self.candidates.sort_unstable_by_key(|c| c.0);
        self.pick(history)
    }

    /// Distinct tokens of the repetition window (empty when the penalty is off).
    fn seen(&self, history: &[u32]) -> Vec<u32> {
        let cfg = &self.cfg;
        if cfg.repetition_penalty == 1.0 || cfg.repeat_window == 0 {
            return Vec::new();
        }
        let start = history.len().saturating_sub(cfg.repeat_window);
        let mut seen: Vec<u32> = history[start..].to_vec();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    /// Chooses among `self.candidates`, which are sorted by id.
    fn pick(&mut self, history: &[u32]) -> u32 {
        let seen = self.seen(history);
        let cfg = &self.cfg;
        {
            for t in seen {
                if let Ok(at) = self.candidates.binary_search_by_key(&t, |c| c.0) {
                    let c = &mut self.candidates[at];
                    // llama.cpp / CTRL convention: shrink positive logits, grow negative ones.
                    c.1 = if c.1 > 0.0 {
                        c.1 / cfg.repetition_penalty
                    } else {
                        c.1 * cfg.repetition_penalty
                    };
                }
            }
        }
        if cfg.temperature <= 0.0 {
            return self
                .candidates
                .iter()
                .fold((0u32, f32::NEG_INFINITY), |best, &c| {
                    if c.1 > best.1 {
                        c
                    } else {
                        best
                    }
                })
                .0;
        }
        // Sort descending by logit, ties by id, so the result depends on nothing but the inputs.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if cfg.top_k > 0 && cfg.top_k < self.candidates.len() {
            self.candidates
                .select_nth_unstable_by(cfg.top_k - 1, by_logit);
            self.candidates.truncate(cfg.top_k);
        }
        self.candidates.sort_unstable_by(by_logit);
        // Probabilities at temperature 1 decide top-p and min-p; temperature shapes the draw.
        let max = self.candidates[0].1;
        let probs: Vec<f32> = self.candidates.iter().map(|c| (c.1 - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        let mut keep = self.candidates.len();
        if cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p / total;
                if acc >= cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if cfg.min_p > 0.0 {
            // probs[0] is the largest (= 1 before normalisation).
            keep = keep.min(probs.iter().take_while(|&&p| p >= cfg.min_p).count().max(1));
        }
        self.candidates.truncate(keep);
        let weights: Vec<f32> = self
            .candidates
            .iter()
            .map(|c| ((c.1 - max) / cfg.temperature).exp())
            .collect();
        let sum: f32 = weights.iter().sum();
        let mut r = self.rng.random::<f32>() * sum;
        for (c, w) in self.candidates.iter().zip(&weights) {
            if r < *w {
                return c.0;
            }
            r -= w;
        }
        self.candidates[keep - 1].0
    }
}

/// The `k` best `(id, logit)` in the sampler's order: best first, ties to the lower id,
/// NaN read as -inf.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, if l.is_nan() { f32::NEG_INFINITY } else { l }))
        .collect();
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let k = k.min(c.len());
    if k > 0 && k < c.len() {
        c.select_nth_unstable_by(k - 1, by_logit);
    }
    c.truncate(k);
    c.sort_unstable_by(by_logit);
    c
}

/// Detects a generation stuck in a loop: the newest tokens repeat one period
/// (1 to 64 tokens long) at least `min_repeats` times and cover `min_span` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopGuard {
    pub max_period: usize,
    pub min_repeats: usize,
    pub min_span: usize,
}

impl Default for LoopGuard {
    fn default() -> Self {
        LoopGuard {
            max_period: 64,
            min_repeats: 3,
            min_span: 32,
        }
    }
}

impl LoopGuard {
    /// Whether `generated` ends in a loop.
    pub fn is_looping(&self, generated: &[u32]) -> bool {
        let n = generated.len();
        (1..=self.max_period).any(|p| {
            let span = (p * self.min_repeats).max(self.min_span.div_ceil(p) * p);
            span <= n && (n - span..n - p).all(|i| generated[i] == generated[i + p])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.5, -1.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_takes_the_max() {
        assert_eq!(
            Sampler::new(SamplerConfig::greedy()).sample(&logits(), &[]),
            1
        );
    }

    #[test]
    fn repetition_penalty_moves_greedy_off_a_repeated_token() {
        let cfg = SamplerConfig {
            repetition_penalty: 1.5,
            repeat_window: 4,
            ..SamplerConfig::greedy()
        };
        assert_eq!(Sampler::new(cfg.clone()).sample(&logits(), &[1]), 5);
        // Outside the window, the penalty no longer applies.
        assert_eq!(Sampler::new(cfg).sample(&logits(), &[1, 0, 0, 0, 0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_1_is_greedy() {
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        assert_ne!(
            a,
            draw(&SamplerConfig {
                seed: 8,
                ..cfg.clone()
            })
        );
        assert!(
            a.iter().collect::<std::collections::HashSet<_>>().len() > 2,
            "high temperature explores"
        );
        assert!(draw(&SamplerConfig {
            top_k: 1,
            ..cfg.clone()
        })
        .iter()
        .all(|&t| t == 1));
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        let base = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        };
        let draws = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg);
            (0..400)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<std::collections::HashSet<_>>()
        };
        // p(1)≈0.364, p(5)≈0.329, p(2)≈0.221: top-p 0.65 keeps the first two only.
        assert_eq!(
            draws(SamplerConfig {
                top_p: 0.65,
                ..base.clone()
            }),
            [1, 5].into()
        );
        // min-p 0.5 keeps tokens at least half as likely as the best: 1, 5, 2.
        assert_eq!(
            draws(SamplerConfig {
                min_p: 0.5,
                ..base.clone()
            }),
            [1, 5, 2].into()
        );
        assert!(
            draws(base).contains(&3),
            "without cuts every token can appear"
        );
    }

    #[test]
    fn loop_guard() {
        let g = LoopGuard::default();
        assert!(g.is_looping(&[7; 32]));
        assert!(!g.is_looping(&[7; 31]));
        let cycle: Vec<u32> = (0..40).map(|i| [1, 2, 3, 4, 5][i % 5]).collect();
        assert!(g.is_looping(&cycle));
        let period_20: Vec<u32> = (0..60).map(|i| i as u32 % 20).collect();
        assert!(g.is_looping(&period_20));
        assert!(!g.is_looping(&period_20[..59]));
        let varied: Vec<u32> = (0..200).map(|i| (i * 7919 % 1000) as u32).collect();
        assert!(!g.is_looping(&varied));
    }

    proptest::proptest! {
        /// Sampling from the best `candidates_needed` logits picks what sampling from all
        /// of them picks, draw for draw (the GPU backend's path).
        #[test]
        fn top_candidates_sample_like_full_logits(
            seed in 0u64..1000,
            greedy in proptest::bool::ANY,
            k in 0usize..12,
            penalty in proptest::sample::select(vec![1.0f32, 1.1, 1.5]),
            n_hist in 0usize..40,
        ) {
            let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            // Coarse logits (ties), signs mixed (the penalty treats them differently), one NaN.
            let mut logits: Vec<f32> = (0..200).map(|_| (next() % 40) as f32 / 4.0 - 5.0).collect();
            logits[(next() % 200) as usize] = f32::NAN;
            let history: Vec<u32> = (0..n_hist).map(|_| (next() % 200) as u32).collect();
            let cfg = SamplerConfig {
                temperature: if greedy { 0.0 } else { 0.8 },
                top_k: k,
                repetition_penalty: penalty,
                repeat_window: 16,
                seed,
                ..SamplerConfig::default()
            };
            let (mut full, mut top) = (Sampler::new(cfg.clone()), Sampler::new(cfg));
            for _ in 0..4 {
                let a = full.sample(&logits, &history);
                let b = match top.candidates_needed(&history) {
                    Some(k) => top.sample_top(&super::top_k(&logits, k), &history),
                    None => top.sample(&logits, &history),
                };
                proptest::prop_assert_eq!(a, b);
            }
        }
    }
}
