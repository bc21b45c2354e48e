//! `bitnet bench`: prefill and decode tokens/s (medians) and peak memory.

use bitnet_engine::kernels::KernelChoice;
use bitnet_engine::model::{ActMode, CpuOptions};
use bitnet_engine::session::LoadedModel;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    scalar: bool,
    /// LM head: as in the file, the int8 copy, or the int8 copy with exact candidates.
    #[arg(long, value_enum, default_value = "file")]
    head: crate::args::Head,
    /// KV cache: f32 or f16.
    #[arg(long, value_enum, default_value = "f32")]
    kv_cache: crate::args::KvCache,
    /// cpu, or gpu (wgpu; on a software adapter such as lavapipe the speed means nothing).
    #[arg(long, value_enum, default_value = "cpu")]
    backend: crate::backend::BackendKind,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Single-thread read bandwidth right now (GB/s, median of 3 passes over 512 MiB): the
/// machine is shared, so decode speed is best judged against this, measured in the same run.
fn read_bandwidth() -> f64 {
    let buf = vec![1u64; (512 << 20) / 8];
    let mut speeds: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let sum = buf.chunks_exact(8).fold([0u64; 8], |mut acc, c| {
                for (a, &x) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(x);
                }
                acc
            });
            std::hint::black_box(sum);
            (buf.len() * 8) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    speeds.sort_by(f64::total_cmp);
    speeds[1]
}

pub fn run(a: BenchArgs) -> bitnet_engine::Result<()> {
    let load_start = Instant::now();
    let m = LoadedModel::from_path_with(
        &a.model,
        &bitnet_engine::session::LoadSettings {
            head: a.head.mode(),
            ..Default::default()
        },
    )?;
    let load_s = load_start.elapsed().as_secs_f64();
    let n_ctx = a.prompt_tokens + a.gen_tokens + 1;
    let mut backend = crate::backend::make_backend(
        a.backend,
        &m.model,
        CpuOptions {
            act: ActMode::Int8,
            kernels: if a.scalar {
                KernelChoice::Scalar
            } else {
                KernelChoice::Auto
            },
            threads: a.threads,
            n_ctx: Some(n_ctx),
            kv: a.kv_cache.kv_type(),
        },
        // A benchmark of speed: the GPU's correctness is the tests' job.
        Vec::new(),
        a.backend == crate::backend::BackendKind::Gpu,
    )?;
    let (mut prefill, mut decode, mut gpu_runs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs.max(1) {
        let speed = bitnet_engine::bench::measure(backend.as_mut(), a.prompt_tokens, a.gen_tokens)?;
        prefill.push(speed.prefill_tps);
        decode.push(speed.decode_tps);
        gpu_runs.extend(speed.decode_gpu);
    }
    // Read before the bandwidth probe allocates its buffer.
    let peak = peak_rss();
    let bandwidth = read_bandwidth();
    let decode_tps = median(decode.clone());
    // Bytes a decoded token reads: every weight once (the head included).
    let bytes_per_token = m.model.weights.size_bytes() as f64
        - if m.model.weights.output.is_none() {
            0.0
        } else {
            m.model.weights.embd.size_bytes() as f64
        };
    let gpu = if gpu_runs.is_empty() {
        serde_json::Value::Null
    } else {
        gpu_report(&gpu_runs, bytes_per_token, decode_tps)?
    };
    let out = serde_json::json!({
        "model": a.model.display().to_string(),
        "backend": backend.name(),
        "head": format!("{:?}", m.model.weights.head().ty),
        "threads": a.threads,
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "runs": a.runs,
        "prefill_tps": median(prefill.clone()),
        "decode_tps": decode_tps,
        "decode_GBps": bytes_per_token * decode_tps / 1e9,
        "read_bandwidth_GBps": bandwidth,
        "prefill_tps_all": prefill,
        "decode_tps_all": decode,
        "load_s": load_s,
        "weights_bytes": m.model.weights.size_bytes(),
        // f32 K and V per layer and position, on either backend.
        "kv_cache_bytes": 2 * m.model.config.n_layer * n_ctx * m.model.config.kv_dim() * 4,
        "peak_rss_bytes": peak,
        "gpu": gpu,
    });
    println!("{}", serde_json::to_string(&out).unwrap());
    Ok(())
}

/// The GPU's side of a decode: time per token split into GPU time and the rest
/// (submission, readback, the CPU's share), dispatches and submissions per token, bytes
/// read per token, and the fraction of the card's copy bandwidth (measured now, on a
/// second device of the same adapter) that the decode streams.
#[cfg(feature = "gpu")]
fn gpu_report(
    runs: &[bitnet_engine::bench::GpuPerToken],
    bytes_per_token: f64,
    decode_tps: f64,
) -> bitnet_engine::Result<serde_json::Value> {
    use bitnet_engine::gpu::{DeviceOptions, GpuContext};
    let mid = |f: &dyn Fn(&bitnet_engine::bench::GpuPerToken) -> f64| {
        median(runs.iter().map(f).collect())
    };
    let wall_ms = mid(&|r| r.wall_ms);
    let gpu_ms = runs
        .iter()
        .all(|r| r.gpu_ms.is_some())
        .then(|| mid(&|r| r.gpu_ms.unwrap_or(0.0)));
    let ctx = pollster::block_on(GpuContext::new(DeviceOptions::default()))?;
    let copy_gbps = pollster::block_on(ctx.copy_bandwidth(1 << 30, 8))?;
    let streamed_gbps = bytes_per_token * decode_tps / 1e9;
    Ok(serde_json::json!({
        "adapter": ctx.info.name,
        "timestamps": ctx.timestamps,
        "decode_wall_ms_per_token": wall_ms,
        "decode_gpu_ms_per_token": gpu_ms,
        "decode_overhead_ms_per_token": gpu_ms.map(|g| wall_ms - g),
        "dispatches_per_token": mid(&|r| r.dispatches),
        "submissions_per_token": mid(&|r| r.submissions),
        "bytes_per_token": bytes_per_token,
        "decode_GBps": streamed_gbps,
        "copy_GBps": copy_gbps,
        "bandwidth_fraction": streamed_gbps / copy_gbps,
        // The ceiling the roofline puts on decode: every byte once at copy speed.
        "roofline_decode_tps": copy_gbps * 1e9 / bytes_per_token,
    }))
}

#[cfg(not(feature = "gpu"))]
fn gpu_report(
    _: &[bitnet_engine::bench::GpuPerToken],
    _: f64,
    _: f64,
) -> bitnet_engine::Result<serde_json::Value> {
    Ok(serde_json::Value::Null)
}
