//! Continuous batching: many generation requests share one [`Context`], one token at a time.
//!
//! A worker thread owns the context. Each step it builds one [`crate::Batch`] holding the next
//! token of every running sequence plus prompt chunks of admitted requests, up to a token
//! budget, evaluates it, samples one token for every sequence whose logits came back, and sends
//! each request its [`Event`]s. Requests join and leave between steps (iteration-level
//! scheduling, as in Orca and vLLM):
//!
//! - admission: a waiting request gets a sequence slot when one is free and the cache has free
//!   cells for its next prompt chunk;
//! - prefix caching: a finished request's sequence stays in the cache ("idle"); a new request
//!   whose prompt starts with tokens some sequence (idle or running) already holds shares those
//!   cells by a sequence copy (with isolated regions: takes the idle sequence over, or copies
//!   a running one's prefix into its own region) and evaluates only the rest. Idle sequences are evicted, least
//!   recently used first, when their slot or cells are needed;
//! - preemption: when a step does not fit in the free cells, the most recently admitted running
//!   request gives its cells back and waits at the head of the queue; its tokens so far are
//!   recomputed when it returns (its sampler keeps its state, so its output does not change);
//! - cancellation: a request whose [`EventSink`] reports it closed (the receiver was dropped,
//!   the client went away) is dropped and its cells freed at the next step.
//!
//! Per request: its own sampler chain and seed, stop strings, a token limit, end-of-generation
//! tokens, optional log-probabilities. The scheduler is plain Rust (threads and channels); the
//! HTTP server in `crates/rocmforge-server` drives it.

mod stop;
mod worker;

pub use stop::{Pushed, StopText};

use crate::api::{Context, ContextParams, Model};
use crate::kv_cache::KvType;
use crate::sampler::SamplerParams;
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Sizes of the scheduler's context and queue.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// KV cache cells shared by every sequence.
    pub n_ctx: usize,
    /// Sequence slots (running plus idle prefix-cache sequences), 1..=64.
    pub n_seq: usize,
    /// Token budget of one step (decode tokens plus prompt chunks).
    pub n_batch: usize,
    /// Compute threads; 0 = the machine's available parallelism.
    pub n_threads: usize,
    /// Requests that may wait for admission; [`Scheduler::submit`] refuses more.
    pub max_queue: usize,
    /// How the KV cache stores keys and values.
    pub cache_type: KvType,
    /// Give every sequence slot its own region of the cache (`n_ctx / n_seq` cells, rounded
    /// down to the attention chunk), so each request computes exactly the bits it would alone,
    /// whatever runs beside it ([`crate::kv_cache::Cells::set_seq_regions`]). A request is then
    /// limited to its region; it reuses a prefix by taking over the idle sequence that holds
    /// it, or by a copy of a running sequence's prefix into its own region.
    /// Off: one shared pool, prefixes shared across sequences by sequence copy, preemption when
    /// the pool is full; results may then differ in the last bits with the batch's layout.
    pub isolated: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            n_ctx: 8192,
            n_seq: 16,
            n_batch: 512,
            n_threads: 0,
            max_queue: 256,
            cache_type: KvType::default(),
            isolated: true,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Prompt tokens (at least one).
    pub prompt: Vec<u32>,
    pub sampling: SamplerParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation ends before the first of these strings; it is not part of the output.
    pub stop: Vec<String>,
    /// Keep generating through end-of-generation tokens.
    pub ignore_eos: bool,
    /// Return the log-probability of each token and of this many most likely alternatives.
    pub logprobs: Option<usize>,
}

impl Request {
    /// A request with greedy sampling and nothing else set.
    pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
        Request {
            prompt,
            sampling: SamplerParams {
                temperature: 0.0,
                ..SamplerParams::default()
            },
            max_tokens,
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
        }
    }
}

/// Log-probabilities of one generated token (natural log, over the model's raw distribution).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context cannot hold another token.
    Length,
    /// Cancelled by [`Scheduler::shutdown`].
    Cancelled,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens whose cells came from the prefix cache instead of being computed.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// What a request hears from the scheduler, in order: tokens, then `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it released (empty while a stop string or a UTF-8
    /// character is incomplete).
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The end; `text` is what was still held back (released unless a stop string matched).
    Done {
        reason: FinishReason,
        text: String,
        usage: Usage,
    },
    Error(String),
}

/// Where a request's events go. Returning `false` from `send` (or `true` from `is_closed`)
/// cancels the request and frees its cells.
pub trait EventSink: Send {
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone; checked every step so a request that is queued or still
    /// evaluating its prompt is cancelled too.
    fn is_closed(&self) -> bool {
        false
    }
}

impl EventSink for mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        mpsc::Sender::send(self, event).is_ok()
    }
}

/// Counters the worker keeps up to date, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_cells_used: AtomicUsize,
    pub prefix_hits: AtomicU64,
    pub prefix_tokens_reused: AtomicU64,
    pub prompt_tokens_computed: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub preemptions: AtomicU64,
    pub steps: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queued: usize,
    pub running: usize,
    pub kv_cells_used: usize,
    pub kv_cells_total: usize,
    pub prefix_hits: u64,
    pub prefix_tokens_reused: u64,
    pub prompt_tokens_computed: u64,
    pub generated_tokens: u64,
    pub preemptions: u64,
    pub steps: u64,
}

/// Why [`Scheduler::submit`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// `max_queue` requests are already waiting.
    QueueFull,
    /// The request can never run (empty prompt, prompt longer than the context, ...).
    Invalid(String),
    /// The scheduler has shut down.
    Closed,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::QueueFull => write!(f, "the request queue is full"),
            Rejected::Invalid(why) => write!(f, "{why}"),
            Rejected::Closed => write!(f, "the scheduler has shut down"),
        }
    }
}

pub(crate) enum Command {
    Submit(Box<worker::Pending>),
    /// Cancel everything and leave the loop.
    Shutdown,
}

/// The handle: submit requests, read statistics, shut down. Shareable across threads.
pub struct Scheduler {
    tx: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    config: SchedulerConfig,
    /// Most tokens (prompt and completion) one sequence can hold.
    seq_capacity: usize,
    n_vocab: usize,
    worker: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// Creates the context (errors here: out of memory, bad sizes) and starts the worker.
    pub fn new(model: &Model, config: SchedulerConfig) -> Result<Scheduler> {
        if config.n_batch == 0 || config.max_queue == 0 {
            return Err(Error::InvalidArgument(
                "scheduler batch and queue sizes must be at least 1".into(),
            ));
        }
        let ctx = Context::new(
            model,
            ContextParams {
                n_ctx: config.n_ctx,
                n_batch: config.n_batch,
                n_seq_max: config.n_seq,
                n_threads: config.n_threads,
                cache_type: config.cache_type,
                swa_full: false,
            },
        )?;
        let mut ctx = ctx;
        let mut config = config;
        config.n_ctx = ctx.params().n_ctx;
        config.n_batch = ctx.params().n_batch;
        let chunk = crate::backend::numerics::ATTENTION_CHUNK;
        let seq_capacity = if config.isolated {
            let stride = config.n_ctx / config.n_seq / chunk * chunk;
            if stride == 0 {
                return Err(Error::InvalidArgument(format!(
                    "isolated sequences need at least {chunk} cells each: {} cells for {} \
                     sequences",
                    config.n_ctx, config.n_seq
                )));
            }
            ctx.set_seq_regions(Some(stride))?;
            stride
        } else {
            config.n_ctx
        };
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let mut w = worker::Worker::new(ctx, config.clone(), seq_capacity, Arc::clone(&stats), rx);
        let worker = std::thread::Builder::new()
            .name("rocmforge-scheduler".into())
            .spawn(move || w.run())
            .map_err(|e| Error::InvalidArgument(format!("cannot start the scheduler: {e}")))?;
        Ok(Scheduler {
            tx,
            stats,
            n_vocab: model.hparams().n_vocab,
            config,
            seq_capacity,
            worker: parking_lot::Mutex::new(Some(worker)),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Most tokens (prompt and completion) one request can hold.
    pub fn seq_capacity(&self) -> usize {
        self.seq_capacity
    }

    /// Queues a request; its events go to `sink`.
    pub fn submit(&self, request: Request, sink: Box<dyn EventSink>) -> Result<(), Rejected> {
        if request.prompt.is_empty() {
            return Err(Rejected::Invalid("the prompt is empty".into()));
        }
        if request.prompt.len() >= self.seq_capacity {
            return Err(Rejected::Invalid(format!(
                "the prompt has {} tokens; a sequence holds {} (prompt and completion)",
                request.prompt.len(),
                self.seq_capacity
            )));
        }
        if request.max_tokens == 0 {
            return Err(Rejected::Invalid("max_tokens must be at least 1".into()));
        }
        if let Some(&t) = request.prompt.iter().find(|&&t| t as usize >= self.n_vocab) {
            return Err(Rejected::Invalid(format!(
                "token {t} is outside the vocabulary ({} tokens)",
                self.n_vocab
            )));
        }
        let sampler = crate::sampler::SamplerChain::from_params(&request.sampling)
            .map_err(|e| Rejected::Invalid(e.to_string()))?;
        // Counted here, not by the worker, so a burst of submissions sees the queue fill.
        let queued = self.stats.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.config.max_queue {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Rejected::QueueFull);
        }
        let pending = worker::Pending {
            request,
            sampler,
            sink,
        };
        self.tx
            .send(Command::Submit(Box::new(pending)))
            .map_err(|_| {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Rejected::Closed
            })
    }

    /// Queues a request and returns the receiving end of its events; dropping the receiver
    /// cancels the request.
    pub fn submit_channel(&self, request: Request) -> Result<mpsc::Receiver<Event>, Rejected> {
        let (tx, rx) = mpsc::channel();
        self.submit(request, Box::new(tx))?;
        Ok(rx)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            queued: s.queued.load(Ordering::Relaxed),
            running: s.running.load(Ordering::Relaxed),
            kv_cells_used: s.kv_cells_used.load(Ordering::Relaxed),
            kv_cells_total: self.config.n_ctx,
            prefix_hits: s.prefix_hits.load(Ordering::Relaxed),
            prefix_tokens_reused: s.prefix_tokens_reused.load(Ordering::Relaxed),
            prompt_tokens_computed: s.prompt_tokens_computed.load(Ordering::Relaxed),
            generated_tokens: s.generated_tokens.load(Ordering::Relaxed),
            preemptions: s.preemptions.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
        }
    }

    /// Cancels every request (each gets `Done` with [`FinishReason::Cancelled`]) and stops the
    /// worker. Later submissions are refused.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(w) = self.worker.lock().take() {
            let _ = w.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}
