//! The CPU backend's KV cache: keys and values of every layer and position, in f32
//! (the reference's arithmetic) or f16 (what bitnet.cpp and llama.cpp keep: half the
//! memory, values rounded once when stored).

use crate::error::{Error, Result};
use half::f16;

/// How keys and values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    #[default]
    F32,
    F16,
}

impl KvType {
    pub fn bytes_per_value(self) -> u64 {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    pub fn parse(s: &str) -> Result<KvType> {
        match s {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            other => Err(Error::InvalidArgument(format!(
                "KV cache type '{other}': expected \"f32\" or \"f16\""
            ))),
        }
    }
}

/// `[layer][position][kv_dim]`, keys and values apart.
pub(super) struct KvCache {
    store: Store,
    pub(super) n_ctx: usize,
    kv_dim: usize,
}

enum Store {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<u16>, v: Vec<u16> },
}

/// One layer's keys and values from position 0 on.
#[derive(Clone, Copy)]
pub(super) enum KvLayer<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [u16], &'a [u16]),
}

impl KvCache {
    /// An empty cache, refused with [`Error::OutOfMemory`] past `budget` bytes or when the
    /// allocator cannot give it (the sizes come from a file or a user).
    pub(super) fn try_new(
        ty: KvType,
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
        budget: Option<u64>,
    ) -> Result<KvCache> {
        let what = || {
            format!(
                "the KV cache ({n_layer} layers × {n_ctx} positions × {kv_dim} values, \
                 keys and values in {})",
                match ty {
                    KvType::F32 => "f32",
                    KvType::F16 => "f16",
                }
            )
        };
        let len = n_layer
            .checked_mul(n_ctx)
            .and_then(|n| n.checked_mul(kv_dim));
        let bytes = len.and_then(|n| (n as u64).checked_mul(2 * ty.bytes_per_value()));
        let limit = budget.unwrap_or(isize::MAX as u64);
        let (Some(len), Some(bytes)) = (len, bytes) else {
            return Err(Error::OutOfMemory {
                what: what(),
                needed: u64::MAX,
                limit,
            });
        };
        let too_big = || Error::OutOfMemory {
            what: what(),
            needed: bytes,
            limit,
        };
        if bytes > limit {
            return Err(too_big());
        }
        fn zeroed<T: Clone + Default>(n: usize, err: impl Fn() -> Error) -> Result<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| err())?;
            v.resize(n, T::default());
            Ok(v)
        }
        let store = match ty {
            KvType::F32 => Store::F32 {
                k: zeroed(len, too_big)?,
                v: zeroed(len, too_big)?,
            },
            KvType::F16 => Store::F16 {
                k: zeroed(len, too_big)?,
                v: zeroed(len, too_big)?,
            },
        };
        Ok(KvCache {
            store,
            n_ctx,
            kv_dim,
        })
    }

    pub(super) fn bytes(&self) -> usize {
        match &self.store {
            Store::F32 { k, v } => (k.len() + v.len()) * 4,
            Store::F16 { k, v } => (k.len() + v.len()) * 2,
        }
    }

    /// Keeps the keys and values of the tokens from position `p0` on.
    pub(super) fn store(&mut self, layer: usize, p0: usize, k: &[f32], v: &[f32]) {
        let at = (layer * self.n_ctx + p0) * self.kv_dim;
        match &mut self.store {
            Store::F32 { k: ks, v: vs } => {
                ks[at..at + k.len()].copy_from_slice(k);
                vs[at..at + v.len()].copy_from_slice(v);
            }
            Store::F16 { k: ks, v: vs } => {
                let half = |to: &mut [u16], from: &[f32]| {
                    for (t, &f) in to.iter_mut().zip(from) {
                        *t = f16::from_f32(f).to_bits();
                    }
                };
                half(&mut ks[at..at + k.len()], k);
                half(&mut vs[at..at + v.len()], v);
            }
        }
    }

    /// One layer's keys and values, from position 0 on.
    pub(super) fn layer(&self, layer: usize) -> KvLayer<'_> {
        let at = layer * self.n_ctx * self.kv_dim;
        match &self.store {
            Store::F32 { k, v } => KvLayer::F32(&k[at..], &v[at..]),
            Store::F16 { k, v } => KvLayer::F16(&k[at..], &v[at..]),
        }
    }
}
