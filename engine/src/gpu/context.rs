//! The wgpu device: adapter choice, limits, error capture, and readback. Async throughout,
//! because wgpu on wasm32 (the browser's WebGPU) cannot block; natively the caller blocks.

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Options for opening the device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOptions {
    /// Use subgroup operations when the adapter offers them (the plain path otherwise).
    pub subgroups: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions { subgroups: true }
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub subgroups: bool,
    /// The adapter can time compute passes (timestamp queries).
    pub timestamps: bool,
    pub limits: wgpu::Limits,
    pub info: wgpu::AdapterInfo,
    /// Set by the device-lost callback and the uncaptured-error handler.
    failure: Arc<Mutex<Option<String>>>,
}

pub fn gpu_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Gpu(format!("{what}: {e}"))
}

impl GpuContext {
    pub async fn new(opts: DeviceOptions) -> Result<GpuContext> {
        // `WGPU_BACKEND` (vulkan, gl, …) picks the stack, as in every wgpu program.
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                gpu_err(
                    "no WebGPU/wgpu adapter (natively: install a Vulkan driver, e.g. mesa-vulkan-drivers)",
                    e,
                )
            })?;
        let subgroups = opts.subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        // Ask for everything the adapter can do: the embedding alone is 0.66 GB, and the
        // larger the storage bindings the fewer pieces it is split into.
        let limits = adapter.limits();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bitnet"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("requesting a device", e))?;
        let failure = Arc::new(Mutex::new(None));
        let f = Arc::clone(&failure);
        device.set_device_lost_callback(move |reason, msg| {
            f.lock()
                .unwrap()
                .get_or_insert(format!("device lost ({reason:?}): {msg}"));
        });
        let f = Arc::clone(&failure);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            f.lock().unwrap().get_or_insert(e.to_string());
        }));
        Ok(GpuContext {
            device,
            queue,
            subgroups,
            timestamps,
            limits,
            info: adapter.get_info(),
            failure,
        })
    }

    /// The first device loss or uncaptured error, as a typed error.
    pub fn check(&self) -> Result<()> {
        match self.failure.lock().unwrap().as_ref() {
            Some(msg) => Err(Error::Gpu(msg.clone())),
            None => Ok(()),
        }
    }

    /// The largest buffer one storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Runs `f` (buffer creation, submissions) inside validation and out-of-memory error
    /// scopes, turning what they catch into `Error::Gpu`.
    pub async fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = val.pop().await;
        let o = oom.pop().await;
        if let Some(e) = o {
            return Err(gpu_err(&format!("{what}: out of GPU memory"), e));
        }
        if let Some(e) = v {
            return Err(gpu_err(what, e));
        }
        self.check()?;
        Ok(out)
    }

    /// The device's copy throughput in GB/s (bytes read plus bytes written, per second):
    /// `reps` copies of a `bytes`-long buffer in one submission, after one untimed copy,
    /// timed from submission to the readback of one word that follows them. A benchmark's
    /// yardstick for the card's memory bandwidth, measured in the same run.
    pub async fn copy_bandwidth(&self, bytes: u64, reps: u32) -> Result<f64> {
        let bytes = bytes.min(self.limits.max_buffer_size) / 4 * 4;
        let make = |label, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let src = make("copy source", wgpu::BufferUsages::COPY_SRC);
        let dst = make(
            "copy target",
            wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        );
        let word = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("copy done"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let run = |n: u32| {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            for _ in 0..n {
                enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
            }
            enc.copy_buffer_to_buffer(&dst, 0, &word, 0, 4);
            self.queue.submit([enc.finish()]);
        };
        run(1);
        self.read(&word, 4).await?;
        let t = web_time::Instant::now();
        run(reps);
        self.read(&word, 4).await?;
        let secs = t.elapsed().as_secs_f64();
        Ok(2.0 * bytes as f64 * reps as f64 / secs / 1e9)
    }

    /// Copies `size` bytes of a MAP_READ buffer back to the CPU.
    pub async fn read(&self, buf: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let (tx, rx) = oneshot();
        buf.map_async(wgpu::MapMode::Read, 0..size, move |r| tx.send(r));
        // Natively nothing runs the callback unless the device is polled; on the web the
        // browser does it and this is a no-op.
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err("waiting for the GPU", e))?;
        rx.await
            .ok_or_else(|| Error::Gpu("the readback was dropped".into()))?
            .map_err(|e| gpu_err("mapping the readback buffer", e))?;
        let data = buf
            .get_mapped_range(0..size)
            .map_err(|e| gpu_err("reading the readback buffer", e))?
            .to_vec();
        buf.unmap();
        self.check()?;
        Ok(data)
    }
}

/// A one-value channel whose receiving end is a future (wgpu's map callback → async code),
/// so no async runtime crate is needed.
struct Slot<T> {
    value: Option<T>,
    closed: bool,
    waker: Option<Waker>,
}

pub struct Sender<T>(Arc<Mutex<Slot<T>>>);
pub struct Receiver<T>(Arc<Mutex<Slot<T>>>);

pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Slot {
        value: None,
        closed: false,
        waker: None,
    }));
    (Sender(Arc::clone(&s)), Receiver(s))
}

impl<T> Sender<T> {
    pub fn send(self, v: T) {
        let mut s = self.0.lock().unwrap();
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    /// `None` when the sender was dropped without sending.
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.lock().unwrap();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
