//! A persistent pool of worker threads for data-parallel ops.
//!
//! Decode of a small model runs a few hundred short ops per token (each a few microseconds), so
//! the cost of handing work to the threads matters as much as the work: workers spin briefly on a
//! generation counter before they sleep, and the caller thread takes a share of every job itself.
//! A job is a borrowed closure `Fn(thread_index, n_threads)`; `run` returns only after every
//! thread has finished it, which is what makes lending a non-'static closure sound.
//!
//! When another process takes a core (a game's own threads, a build, a second model), a worker
//! can be off its core for a whole scheduler slice (milliseconds) at any moment; a job that
//! must wait for every worker then waits that long, hundreds of times per token. So the
//! engine's jobs are *chunked* ([`ThreadPool::run_chunks`]): every thread claims chunks from a
//! shared counter until none are left, and once the caller has found none left it closes the
//! job: a worker that had not entered it by then skips it, and the caller waits only for the
//! workers inside. Which thread computes a chunk never changes what it computes, so results
//! are the same bits however the chunks fall.

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

/// [`Shared::ticket`] layout: the job's sequence number above `SEQ_SHIFT`, then the bits below.
const SEQ_SHIFT: u32 = 20;
/// Every worker must run this job (`run`); without it the job is chunked and may be skipped.
const REQUIRED: usize = 1 << 19;
/// The caller has closed a chunked job: workers that have not entered it skip it.
const CLOSED: usize = 1 << 18;
/// Workers inside the current job.
const ACTIVE: usize = CLOSED - 1;

fn seq_of(ticket: usize) -> usize {
    ticket >> SEQ_SHIFT
}

struct Shared {
    /// The current job's ticket: sequence number (bumped once per job; workers compare it with
    /// the last one they saw), REQUIRED, CLOSED and the count of workers inside (ACTIVE). A
    /// worker enters only by incrementing it while its sequence is the one it saw and it is
    /// not closed, so the caller, which closes it with the same atomic, knows exactly whom to
    /// wait for.
    ticket: AtomicUsize,
    /// Workers that have not yet finished the current required job.
    remaining: AtomicUsize,
    /// The current job, with its lifetime erased. Written only while no worker is inside a job
    /// (between jobs), read only by a worker inside the current one (entered through `ticket`).
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
            ticket: AtomicUsize::new(0),
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
        if self.shared.n_threads == 1 {
            job(0, 1);
            return;
        }
        self.dispatch(job, true);
    }

    /// Runs `chunk(&mut scratch, c)` once for every chunk `c` in `0..n_chunks`, on whichever
    /// threads come to claim them (each thread makes its scratch with `init` when it claims
    /// its first chunk). Returns when all chunks are done; a worker that was off its core
    /// meanwhile is not waited for (see the module docs).
    ///
    /// Thread i claims first, in ascending order, the chunks of its own contiguous segment
    /// (the i-th of n_threads), then those left in the others'. So a thread's chunks are
    /// neighbours and what its row kernels prefetch past a chunk's end
    /// ([`crate::quant::dot::PREFETCH_AHEAD_BYTES`] on) is its own next chunk. With one shared
    /// counter the chunks alternated between the threads, and each prefetched the next chunk
    /// into its own L2 for the other thread to read again from memory: two-thread decode of
    /// SmolLM2 Q4_1 (chunks of about 20 KiB) spent 1.8 times the one-thread time in the row
    /// kernel (Zen 4 VM).
    pub fn run_chunks<S>(
        &self,
        n_chunks: usize,
        init: &(dyn Fn() -> S + Sync),
        chunk: &(dyn Fn(&mut S, usize) + Sync),
    ) {
        // Segment k: chunks [k * per, (k + 1) * per), its next unclaimed one in next[k]; a
        // pool larger than MAX_SEGMENTS shares them (thread i starts in segment i % segments).
        let segments = self.shared.n_threads.clamp(1, MAX_SEGMENTS);
        let per = n_chunks.div_ceil(segments);
        let next: [AtomicUsize; MAX_SEGMENTS] = std::array::from_fn(|k| AtomicUsize::new(k * per));
        let claim_all = |thread: usize, _: usize| {
            let mut scratch = None;
            for k in 0..segments {
                let segment = (thread + k) % segments;
                let end = ((segment + 1) * per).min(n_chunks);
                loop {
                    let c = next[segment].fetch_add(1, Ordering::Relaxed);
                    if c >= end {
                        break;
                    }
                    chunk(scratch.get_or_insert_with(init), c);
                }
            }
        };
        if self.shared.n_threads == 1 || n_chunks <= 1 {
            claim_all(0, 1);
            return;
        }
        self.dispatch(&claim_all, false);
    }

    /// Publishes `job`, runs it on this thread, and waits: for every worker (`required`), or
    /// only for those that entered before this thread closed it.
    fn dispatch(&self, job: &(dyn Fn(usize, usize) + Sync), required: bool) {
        let shared = &*self.shared;
        // SAFETY: no worker reads `job` now: the previous job waited until no worker was
        // inside it, and a worker enters a job only through a ticket of the current sequence,
        // which is published below, after this store. The erased lifetime is sound because we
        // wait below until no worker is inside this job, and none can enter after that.
        unsafe {
            let erased: Job<'static> = std::mem::transmute::<Job<'_>, Job<'static>>(job);
            *shared.job.get() = Some(erased);
        }
        if required {
            shared
                .remaining
                .store(shared.n_threads - 1, Ordering::Release);
        }
        let seq = seq_of(shared.ticket.load(Ordering::Relaxed)).wrapping_add(1);
        let kind = if required { REQUIRED } else { 0 };
        shared
            .ticket
            .store(seq << SEQ_SHIFT | kind, Ordering::Release);
        {
            let _guard = shared.sleep_lock.lock();
            shared.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, shared.n_threads)));
        if required {
            wait_until(|| shared.remaining.load(Ordering::Acquire) == 0);
        } else {
            shared.ticket.fetch_or(CLOSED, Ordering::AcqRel);
        }
        wait_until(|| shared.ticket.load(Ordering::Acquire) & ACTIVE == 0);
        // SAFETY: no worker is inside the job and none can enter it any more (all required
        // workers are done, or it is closed); clearing drops the erased borrow.
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

    /// Splits `0..n_items` into contiguous ranges (a few per thread, claimed as in
    /// [`Self::run_chunks`]) and runs `f(range)` on each; the items must be independent.
    pub fn for_each_range(&self, n_items: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        if n_items == 0 {
            return;
        }
        let n_chunks = (self.n_threads() * CHUNKS_PER_THREAD).min(n_items);
        self.run_chunks(n_chunks, &|| (), &|_, c| {
            f(split_range(n_items, c, n_chunks))
        });
    }
}

/// Chunks per thread for the engine's jobs: enough that a thread which falls behind (or off
/// its core) leaves little for the others to wait on, few enough that claiming costs nothing.
pub const CHUNKS_PER_THREAD: usize = 8;

/// Segments of [`ThreadPool::run_chunks`] (one per thread up to this many).
const MAX_SEGMENTS: usize = 64;

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
        let ticket = loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let ticket = shared.ticket.load(Ordering::Acquire);
            if seq_of(ticket) != seen {
                seen = seq_of(ticket);
                break ticket;
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
                if seq_of(shared.ticket.load(Ordering::Acquire)) == seen
                    && !shared.shutdown.load(Ordering::Acquire)
                {
                    shared
                        .wake
                        .wait_for(&mut guard, std::time::Duration::from_millis(50));
                }
            }
        };
        let required = ticket & REQUIRED != 0;
        // Enter the job seen, unless it has been closed or replaced since.
        let entered = shared
            .ticket
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (seq_of(t) == seen && t & CLOSED == 0).then_some(t + 1)
            })
            .is_ok();
        if !entered {
            // A required job cannot be closed or replaced before this worker has run it.
            debug_assert!(!required);
            continue;
        }
        // SAFETY: this worker is inside the current job (counted in ACTIVE under its
        // sequence), so the owner neither clears nor replaces `job` until it leaves.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            if catch_unwind(AssertUnwindSafe(|| job(index, shared.n_threads))).is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        shared.ticket.fetch_sub(1, Ordering::AcqRel);
        if required {
            shared.remaining.fetch_sub(1, Ordering::AcqRel);
        }
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
    fn chunks_run_once_each_between_required_jobs() {
        use std::sync::atomic::AtomicU8;
        // Three threads on a machine with fewer free cores: workers are often off their core,
        // so chunked jobs close without them and later jobs must still be exact.
        let pool = ThreadPool::new(3).unwrap();
        for round in 0..3000usize {
            let n_chunks = round % 41;
            let hits: Vec<AtomicU8> = (0..n_chunks).map(|_| AtomicU8::new(0)).collect();
            let scratches = AtomicUsize::new(0);
            pool.run_chunks(
                n_chunks,
                &|| {
                    scratches.fetch_add(1, Ordering::Relaxed);
                    round
                },
                &|scratch, c| {
                    assert_eq!(*scratch, round);
                    hits[c].fetch_add(1, Ordering::Relaxed);
                },
            );
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            assert!(scratches.load(Ordering::Relaxed) <= 3.min(n_chunks));
            if round % 7 == 0 {
                let threads = AtomicUsize::new(0);
                pool.run(&|_, _| {
                    threads.fetch_add(1, Ordering::Relaxed);
                });
                assert_eq!(threads.load(Ordering::Relaxed), 3);
            }
        }
    }

    #[test]
    fn a_chunked_job_waits_for_a_worker_inside_it() {
        // The worker that claims chunk 0 holds it for a while; the caller takes the rest and
        // must still wait for chunk 0 before returning (the closure borrows this frame).
        let pool = ThreadPool::new(2).unwrap();
        for _ in 0..20 {
            let done = AtomicUsize::new(0);
            pool.run_chunks(16, &|| (), &|_, c| {
                if c == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(done.load(Ordering::Relaxed), 16);
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
