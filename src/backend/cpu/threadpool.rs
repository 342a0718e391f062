//! A persistent pool of worker threads for data-parallel ops.
//!
//! Decode of a small model runs a few hundred short ops per token (each a few microseconds), so
//! the cost of handing work to the threads matters as much as the work: workers spin briefly on a
//! generation counter before they sleep, and the caller thread takes a share of every job itself.
//! A job is a borrowed closure `Fn(thread_index, n_threads)`; `run` returns only after every
//! thread has finished it, which is what makes lending a non-'static closure sound.

use parking_lot::{Condvar, Mutex};
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

type Job<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Busy-wait iterations (`spin_loop` hints) before a waiting thread starts yielding its core.
const SPIN_BEFORE_YIELD: u32 = 1 << 12;
/// Wait iterations (spins, then yields) before an idle worker goes to sleep.
const SPIN_BEFORE_SLEEP: u32 = 1 << 14;

/// Waits for `done` to hold: spins first (the common case is a wait of microseconds), then
/// yields so that a descheduled worker on an oversubscribed machine can get the core back.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < SPIN_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

struct Shared {
    /// Bumped once per job; workers compare it with the last one they ran.
    generation: AtomicUsize,
    /// Workers that have not yet finished the current job.
    remaining: AtomicUsize,
    /// The current job, with its lifetime erased. Written only while no worker reads it
    /// (between jobs), read only between a generation bump and the worker's `remaining` decrement.
    job: UnsafeCell<Option<Job<'static>>>,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    n_threads: usize,
}

// SAFETY: `job` is only written by the thread that owns the pool while all workers are idle
// (remaining == 0), and the closure it points to is `Sync`, so sharing `Shared` is sound.
unsafe impl Sync for Shared {}
// SAFETY: see above; nothing in Shared is tied to a thread.
unsafe impl Send for Shared {}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all: the caller plus `n_threads - 1` workers.
    pub fn new(n_threads: usize) -> std::io::Result<ThreadPool> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            n_threads,
        });
        // The pool exists before its workers do, so that when a spawn fails (out of memory or
        // threads) dropping it shuts down and joins those already started instead of leaking
        // them, parked for ever with their stacks.
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(n_threads - 1),
        };
        for index in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("rocmforge-cpu-{index}"))
                .spawn(move || worker_loop(&shared, index))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `job(thread_index, n_threads)` on every thread of the pool and waits for all.
    /// A panic inside the job on any thread is re-raised here, after all threads have stopped.
    pub fn run(&self, job: &(dyn Fn(usize, usize) + Sync)) {
        let shared = &*self.shared;
        if shared.n_threads == 1 {
            job(0, 1);
            return;
        }
        // SAFETY: no worker reads `job` now: the previous `run` waited for `remaining == 0`.
        // The erased lifetime is sound because we wait below until every worker is done with it.
        unsafe {
            let erased: Job<'static> = std::mem::transmute::<Job<'_>, Job<'static>>(job);
            *shared.job.get() = Some(erased);
        }
        shared
            .remaining
            .store(shared.n_threads - 1, Ordering::Release);
        shared.generation.fetch_add(1, Ordering::AcqRel);
        {
            let _guard = shared.sleep_lock.lock();
            shared.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, shared.n_threads)));
        wait_until(|| shared.remaining.load(Ordering::Acquire) == 0);
        // SAFETY: all workers finished the job; clearing drops the erased borrow.
        unsafe {
            *shared.job.get() = None;
        }
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::AcqRel) {
            panic!("a CPU worker thread panicked");
        }
    }

    /// Splits `0..n_items` into contiguous ranges, one per thread, and runs `f(range)` on each.
    pub fn for_each_range(&self, n_items: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        if n_items == 0 {
            return;
        }
        let n = self.n_threads().min(n_items);
        if n == 1 {
            f(0..n_items);
            return;
        }
        self.run(&|index, n_threads| {
            let range = split_range(n_items, index, n_threads.min(n_items));
            if !range.is_empty() {
                f(range)
            }
        });
    }
}

/// The `index`-th of `parts` near-equal contiguous pieces of `0..n` (empty when index >= parts).
pub fn split_range(n: usize, index: usize, parts: usize) -> std::ops::Range<usize> {
    if index >= parts {
        return n..n;
    }
    let base = n / parts;
    let extra = n % parts;
    let start = index * base + index.min(extra);
    let len = base + usize::from(index < extra);
    start..start + len
}

fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let generation = shared.generation.load(Ordering::Acquire);
            if generation != seen {
                seen = generation;
                break;
            }
            if spins < SPIN_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else if spins < SPIN_BEFORE_SLEEP {
                // Other processes may want this core (an oversubscribed machine): let them run.
                spins += 1;
                std::thread::yield_now();
            } else {
                let mut guard = shared.sleep_lock.lock();
                if shared.generation.load(Ordering::Acquire) == seen
                    && !shared.shutdown.load(Ordering::Acquire)
                {
                    shared
                        .wake
                        .wait_for(&mut guard, std::time::Duration::from_millis(50));
                }
            }
        }
        // SAFETY: the generation bump (Acquire above) happens after the job was stored, and the
        // owner does not touch `job` again until `remaining` reaches zero.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            if catch_unwind(AssertUnwindSafe(|| job(index, shared.n_threads))).is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        shared.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _guard = self.shared.sleep_lock.lock();
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_job_once() {
        let pool = ThreadPool::new(3).unwrap();
        for _ in 0..1000 {
            let hits = AtomicUsize::new(0);
            pool.run(&|_, n| {
                assert_eq!(n, 3);
                hits.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(hits.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn ranges_cover_everything_once() {
        let pool = ThreadPool::new(2).unwrap();
        let sum = AtomicUsize::new(0);
        pool.for_each_range(1001, &|r| {
            sum.fetch_add(r.sum::<usize>(), Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 1000 * 1001 / 2);
        for n in 0..20 {
            let total: usize = (0..3).map(|i| split_range(n, i, 3).len()).sum();
            assert_eq!(total, n);
        }
    }

    #[test]
    fn a_panicking_job_is_reraised_and_the_pool_still_works() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i, _| {
                if i == 1 {
                    panic!("boom")
                }
            })
        }));
        assert!(r.is_err());
        let hits = AtomicUsize::new(0);
        pool.run(&|_, _| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
