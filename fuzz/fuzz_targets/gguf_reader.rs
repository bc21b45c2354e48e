//! Bytes → GGUF reader (one push, and the push loader in two chunkings derived from
//! the input: small chunks over the first 2 KB then large ones, and large ones only) → `Model::from_gguf` when the file parses.
//!
//! Checks: no panic; the push loader with the same options gives exactly the result
//! of one push; without the length known up front (and a tensor bound instead) it
//! accepts exactly the same files;
//! every error is one a corrupt, unsupported or oversized model gives.

#![no_main]

use bitnet_engine::gguf::{GgufFile, GgufLoader, LoadOptions, LoadPhase};
use bitnet_engine::model::{Model, ModelConfig};
use bitnet_engine::tokenizer::VocabSpec;
use bitnet_engine::Error;
use libfuzzer_sys::fuzz_target;

/// Bytes before this go to the loader in the small chunks (the header of a small model
/// and its first tensors); the rest in the large ones, so a run stays cheap.
const SMALL_CHUNKS_UPTO: usize = 2048;

/// The tensor bound of the loader that is not told the length (far above any input).
const MAX_TENSOR_BYTES: u64 = 256 << 20;

/// Feeds `data` to a push loader: `small`-byte chunks up to [`SMALL_CHUNKS_UPTO`], then
/// `large`-byte ones.
fn stream(data: &[u8], opts: LoadOptions, small: usize, large: usize) -> Result<GgufFile, Error> {
    let mut loader = GgufLoader::new(opts);
    let cut = data.len().min(SMALL_CHUNKS_UPTO);
    let chunks = data[..cut]
        .chunks(small.max(1))
        .chain(data[cut..].chunks(large.max(1)));
    for c in chunks {
        loader.push(c)?;
        let p = loader.progress();
        assert!(p.bytes_received <= data.len() as u64);
        if p.phase != LoadPhase::Header {
            assert!(loader.metadata().is_some());
        }
    }
    loader.finish()
}

fn same(a: &Result<GgufFile, Error>, b: &Result<GgufFile, Error>) -> bool {
    match (a, b) {
        (Err(x), Err(y)) => format!("{x:?}") == format!("{y:?}"),
        (Ok(x), Ok(y)) => same_file(x, y),
        _ => false,
    }
}

fn same_file(x: &GgufFile, y: &GgufFile) -> bool {
    // NaN metadata values are not equal to themselves: compare those by their Debug form.
    let (a, b) = (x.metadata.entries(), y.metadata.entries());
    x.version == y.version
        && (a == b || format!("{a:?}") == format!("{b:?}"))
        && x.tensors.len() == y.tensors.len()
        && x.tensors
            .iter()
            .zip(&y.tensors)
            .all(|(s, t)| s.info == t.info && s.data[..] == t.data[..])
}

fn reader_error(e: &Error) -> bool {
    matches!(
        e.kind(),
        "corrupt-model" | "unsupported-model" | "invalid-model" | "out-of-memory"
    )
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    // Chunk sizes from the input: one small, one larger.
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let small = 1 + (h % 61) as usize;
    let large = 64 + ((h >> 8) % 4096) as usize;

    let one = GgufFile::from_bytes(data);
    if let Err(e) = &one {
        assert!(reader_error(e), "reader error of kind {}: {e:?}", e.kind());
    }
    let known = LoadOptions {
        expected_len: Some(len),
        max_tensor_bytes: None,
    };
    let chunked = stream(data, known, small, large);
    assert!(
        same(&one, &chunked),
        "{small}/{large}-byte chunks disagree with one push: {:?} / {:?}",
        one.as_ref().err(),
        chunked.as_ref().err()
    );
    drop(chunked);
    // A caller that does not know the length bounds the tensors instead (as the web
    // engine does): without a bound the loader would reserve whatever the header declares
    // (engine/tests/malformed.rs covers that case; here it would trip -malloc_limit_mb).
    let bounded = LoadOptions {
        expected_len: None,
        max_tensor_bytes: Some(MAX_TENSOR_BYTES),
    };
    let unknown = stream(data, bounded, large, large);
    match (&one, &unknown) {
        (Ok(a), Ok(b)) => assert!(same_file(a, b), "{large}-byte chunks, length unknown"),
        (Err(_), Err(e)) => assert!(reader_error(e), "{e:?}"),
        (a, b) => panic!(
            "length known: {:?}, unknown ({large}-byte chunks): {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
    drop(unknown);

    let Ok(mut file) = one else { return };
    // The tokenizer description and the model configuration are plain metadata reads.
    let _ = VocabSpec::from_metadata(&file.metadata);
    if let Err(e) = ModelConfig::from_metadata(&file.metadata) {
        assert!(reader_error(&e), "{e:?}");
    }
    match Model::from_gguf(&mut file) {
        Ok(m) => assert!(m.weights.size_bytes() > 0),
        Err(e) => assert!(reader_error(&e), "model error of kind {}: {e:?}", e.kind()),
    }
});
