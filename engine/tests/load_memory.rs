//! Peak heap while a model loads from a file: the int8 head is built as the file streams
//! in, so its float bytes are never all in memory (peak below the float head's load).

use bitnet_engine::gguf::GgmlType;
use bitnet_engine::model::HeadMode;
use bitnet_engine::session::{LoadSettings, LoadedModel};
use bitnet_engine::synth::{model_bytes, SynthShape};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            // Counted as held twice for the moment of the move: an upper bound.
            let now = LIVE.fetch_add(new, Ordering::Relaxed) + new;
            PEAK.fetch_max(now, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap added while loading `path` with `head`.
fn load_peak(path: &std::path::Path, head: HeadMode) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let m = LoadedModel::from_path_with(
        path,
        &LoadSettings {
            head,
            ..LoadSettings::default()
        },
    )
    .unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(m);
    peak
}

#[test]
fn an_int8_head_load_peaks_below_the_float_head_load_by_the_bytes_it_saves() {
    // A vocabulary large enough that the F16 embedding (the tied head) is most of the file.
    let shape = SynthShape {
        n_vocab: 32768,
        ..SynthShape::TINY
    };
    let bytes = model_bytes(shape, GgmlType::I2S, 1).unwrap();
    let path = std::env::temp_dir().join(format!("load-memory-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let float = load_peak(&path, HeadMode::File);
    let int8 = load_peak(&path, HeadMode::Int8);
    std::fs::remove_file(&path).unwrap();
    let f16_head = shape.n_vocab * shape.n_embd * 2;
    let saved = f16_head / 2;
    println!(
        "peak added by a load: F16 head {float} B, int8 head {int8} B (head F16 {f16_head} B)"
    );
    assert!(
        int8 + saved * 9 / 10 <= float,
        "int8 head load peaked at {int8} B, the F16 one at {float} B: less than {saved} B saved"
    );
}
