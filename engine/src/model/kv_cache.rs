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

/// Room for `n_layer` layers of `per_layer` values each, none stored yet, or `err()`
/// when the allocator cannot give it. Reserved, not written: the pages become resident as
/// positions are stored, so a 2048-token cache costs a short chat the memory of its own
/// tokens (in wasm a zeroed allocation would be written in full: its allocator clears all
/// it hands out).
fn reserved<T>(n_layer: usize, per_layer: usize, err: impl Fn() -> Error) -> Result<Vec<Vec<T>>> {
    (0..n_layer)
        .map(|_| {
            let mut v = Vec::new();
            v.try_reserve_exact(per_layer).map_err(|_| err())?;
            Ok(v)
        })
        .collect()
}

/// Writes `from` (converted by `f`) at `at` in `to`, first extending `to` to the end of
/// it; positions are stored in order, so the extension covers only the new ones.
fn put<T: Copy + Default>(to: &mut Vec<T>, at: usize, from: &[f32], f: impl Fn(f32) -> T) {
    let end = at + from.len();
    debug_assert!(end <= to.capacity(), "a position past the cache's end");
    if to.len() < end {
        to.resize(end, T::default());
    }
    for (t, &x) in to[at..end].iter_mut().zip(from) {
        *t = f(x);
    }
}

/// `[layer][position][kv_dim]`, keys and values apart.
pub(super) struct KvCache {
    store: Store,
    pub(super) n_ctx: usize,
    kv_dim: usize,
    /// The whole cache's size, reserved at creation.
    bytes: u64,
}

/// Per layer, the keys and values of the positions stored so far.
enum Store {
    F32 { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    F16 { k: Vec<Vec<u16>>, v: Vec<Vec<u16>> },
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
        let per_layer = n_ctx.checked_mul(kv_dim);
        let bytes = per_layer
            .and_then(|n| n.checked_mul(n_layer))
            .and_then(|n| (n as u64).checked_mul(2 * ty.bytes_per_value()));
        let limit = budget.unwrap_or(isize::MAX as u64);
        let (Some(per_layer), Some(bytes)) = (per_layer, bytes) else {
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
        let store = match ty {
            KvType::F32 => Store::F32 {
                k: reserved(n_layer, per_layer, too_big)?,
                v: reserved(n_layer, per_layer, too_big)?,
            },
            KvType::F16 => Store::F16 {
                k: reserved(n_layer, per_layer, too_big)?,
                v: reserved(n_layer, per_layer, too_big)?,
            },
        };
        Ok(KvCache {
            store,
            n_ctx,
            kv_dim,
            bytes,
        })
    }

    /// The whole cache's size (what it may grow to; its stored positions are what is
    /// resident).
    pub(super) fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Keeps the keys and values of the tokens from position `p0` on.
    pub(super) fn store(&mut self, layer: usize, p0: usize, k: &[f32], v: &[f32]) {
        let at = p0 * self.kv_dim;
        match &mut self.store {
            Store::F32 { k: ks, v: vs } => {
                put(&mut ks[layer], at, k, |x| x);
                put(&mut vs[layer], at, v, |x| x);
            }
            Store::F16 { k: ks, v: vs } => {
                let half = |x: f32| f16::from_f32(x).to_bits();
                put(&mut ks[layer], at, k, half);
                put(&mut vs[layer], at, v, half);
            }
        }
    }

    /// One layer's keys and values, from position 0 to the last one stored.
    pub(super) fn layer(&self, layer: usize) -> KvLayer<'_> {
        match &self.store {
            Store::F32 { k, v } => KvLayer::F32(&k[layer], &v[layer]),
            Store::F16 { k, v } => KvLayer::F16(&k[layer], &v[layer]),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This process's resident memory, from the kernel's own count.
    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn a_cache_is_resident_only_where_positions_are_stored() {
        // 1 GiB of f32 keys and values: 32 layers × 4096 positions × 1024 values × 2 × 4.
        let (n_layer, n_ctx, kv_dim) = (32, 4096, 1024);
        let before = resident_bytes();
        let mut cache = KvCache::try_new(KvType::F32, n_layer, n_ctx, kv_dim, None).unwrap();
        assert_eq!(cache.bytes(), 1 << 30);
        let row = vec![1.0f32; kv_dim];
        for layer in 0..n_layer {
            for p in 0..16 {
                cache.store(layer, p, &row, &row);
            }
        }
        // 16 positions of 32 layers are 4 MiB; other tests in this process allocate too,
        // hence the margin, far below the 1 GiB a zero-filled cache would make resident.
        let grown = resident_bytes().saturating_sub(before);
        assert!(
            grown < 192 << 20,
            "a mostly empty cache made {grown} bytes resident"
        );
        // What was stored reads back, and only that.
        match cache.layer(n_layer - 1) {
            KvLayer::F32(k, v) => {
                assert_eq!((k.len(), v.len()), (16 * kv_dim, 16 * kv_dim));
                assert!(k.iter().chain(v).all(|&x| x == 1.0));
            }
            KvLayer::F16(..) => unreachable!(),
        }
    }
}
