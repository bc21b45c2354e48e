//! Threads for the `threads` build (atomics, shared memory): rayon's global pool runs on
//! web workers that instantiate this same module on the same memory. JavaScript starts
//! `n` workers that each call `runPoolThread()` (it never returns: the worker then
//! belongs to the pool), then calls `buildThreadPool(n)`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The pool's size once built; 1 (the caller's thread only) before, and in other builds.
static POOL_THREADS: AtomicUsize = AtomicUsize::new(1);

pub fn available() -> usize {
    POOL_THREADS.load(Ordering::Relaxed)
}

#[cfg(feature = "threads")]
mod pool {
    use super::POOL_THREADS;
    use rayon::ThreadBuilder;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{Mutex, OnceLock};
    use wasm_bindgen::prelude::*;

    /// Pool threads travel from rayon's spawn handler to the waiting workers.
    type Channel = (Mutex<Sender<ThreadBuilder>>, Mutex<Receiver<ThreadBuilder>>);
    static CHANNEL: OnceLock<Channel> = OnceLock::new();

    fn channel_pair() -> &'static Channel {
        CHANNEL.get_or_init(|| {
            let (tx, rx) = channel();
            (Mutex::new(tx), Mutex::new(rx))
        })
    }

    /// Waits (on a worker, which may block) for one of the pool's threads and runs it;
    /// never returns. Workers call this before `buildThreadPool`, which waits until
    /// every thread has started.
    #[wasm_bindgen(js_name = runPoolThread)]
    pub fn run_pool_thread() {
        let thread = channel_pair().1.lock().expect("pool channel").recv();
        thread.expect("pool channel").run();
    }

    /// Builds rayon's global pool of `threads` threads, each handed to a worker waiting in
    /// `runPoolThread`; returns once all of them run.
    #[wasm_bindgen(js_name = buildThreadPool)]
    pub fn build_thread_pool(threads: usize) -> Result<(), JsError> {
        if threads == 0 {
            return Err(JsError::new("a thread pool needs at least one thread"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("bitnet-pool-{i}"))
            .spawn_handler(|t| {
                let tx = channel_pair().0.lock().expect("pool channel");
                tx.send(t).map_err(|e| std::io::Error::other(e.to_string()))
            })
            .build_global()
            .map_err(|e| JsError::new(&format!("cannot build the thread pool: {e}")))?;
        POOL_THREADS.store(threads, Ordering::Relaxed);
        Ok(())
    }
}
