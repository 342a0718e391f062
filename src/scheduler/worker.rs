//! The scheduler's worker thread: admission, prefix reuse, batch building, sampling, events.

use super::stop::{Pushed, StopText};
use super::{
    Command, Event, EventSink, FinishReason, Request, SchedulerConfig, Stats, TokenLogprob, Usage,
};
use crate::api::{Context, Model};
use crate::sampler::SamplerChain;
use crate::tokenizer::StreamDecoder;
use crate::Batch;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// A submitted request on its way to the worker.
pub(crate) struct Pending {
    pub request: Request,
    pub sampler: SamplerChain,
    pub sink: Box<dyn EventSink>,
}

/// A request's generation state; it survives preemption (only its cells are given back).
struct Job {
    pending: Pending,
    /// Prompt then generated tokens: every token the sequence holds or will hold next.
    tokens: Vec<u32>,
    n_generated: usize,
    /// Prompt tokens taken from the prefix cache at first admission.
    cached: usize,
    admitted_before: bool,
    decoder: StreamDecoder,
    stop: StopText,
}

struct Running {
    job: Job,
    /// Sequence id in the context.
    slot: u32,
    /// Tokens of `job.tokens` whose keys and values are in the cache.
    n_past: usize,
    /// Admission order: the newest running request is the one preempted.
    order: u64,
}

/// A sequence id of the context and the tokens its cells hold (exactly, in order from 0).
#[derive(Default)]
struct Slot {
    kv_tokens: Vec<u32>,
    busy: bool,
    last_used: u64,
}

impl Slot {
    fn is_idle(&self) -> bool {
        !self.busy && !self.kv_tokens.is_empty()
    }
    fn is_free(&self) -> bool {
        !self.busy && self.kv_tokens.is_empty()
    }
}

pub(crate) struct Worker {
    ctx: Context,
    model: Model,
    config: SchedulerConfig,
    seq_capacity: usize,
    stats: Arc<Stats>,
    rx: Receiver<Command>,
    slots: Vec<Slot>,
    waiting: VecDeque<Box<Job>>,
    running: Vec<Running>,
    clock: u64,
}

enum Outcome {
    Continue,
    Finished,
    /// The receiver is gone: free the cells instead of keeping them for prefix reuse.
    Cancelled,
}

impl Worker {
    pub(crate) fn new(
        ctx: Context,
        config: SchedulerConfig,
        seq_capacity: usize,
        stats: Arc<Stats>,
        rx: Receiver<Command>,
    ) -> Worker {
        let model = ctx.model().clone();
        let slots = (0..config.n_seq).map(|_| Slot::default()).collect();
        Worker {
            ctx,
            model,
            config,
            seq_capacity,
            stats,
            rx,
            slots,
            waiting: VecDeque::new(),
            running: Vec::new(),
            clock: 0,
        }
    }

    pub(crate) fn run(&mut self) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                if !self.handle(cmd) {
                    return;
                }
            }
            self.drop_closed();
            self.admit();
            if !self.running.is_empty() {
                self.step();
            }
            self.publish();
        }
    }

    /// False on shutdown.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit(p) => {
                let p = *p;
                let stop = StopText::new(&p.request.stop);
                self.waiting.push_back(Box::new(Job {
                    tokens: p.request.prompt.clone(),
                    pending: p,
                    n_generated: 0,
                    cached: 0,
                    admitted_before: false,
                    decoder: StreamDecoder::new(),
                    stop,
                }));
                true
            }
            Command::Shutdown => {
                let jobs: Vec<Job> = (self.running.drain(..).map(|r| r.job))
                    .chain(self.waiting.drain(..).map(|b| *b))
                    .collect();
                for mut job in jobs {
                    finish(&mut job, FinishReason::Cancelled);
                }
                self.stats.queued.store(0, Ordering::SeqCst);
                self.ctx.kv_clear();
                self.publish();
                false
            }
        }
    }

    fn publish(&self) {
        let s = &self.stats;
        s.running.store(self.running.len(), Ordering::Relaxed);
        s.kv_cells_used
            .store(self.ctx.cells().used(), Ordering::Relaxed);
    }

    /// Requests whose receiver went away leave the queue, or give their cells back.
    fn drop_closed(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.pending.sink.is_closed());
        let gone = before - self.waiting.len();
        self.stats.queued.fetch_sub(gone, Ordering::SeqCst);
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].job.pending.sink.is_closed() {
                let r = self.running.remove(i);
                self.release(r.slot);
            } else {
                i += 1;
            }
        }
    }

    fn free_cells(&self) -> usize {
        self.config.n_ctx - self.ctx.cells().used()
    }

    /// Forgets a sequence and frees its slot (cells shared with others stay).
    fn release(&mut self, slot: u32) {
        // The id is one of ours, in range by construction.
        let _ = self.ctx.kv_seq_remove(Some(slot), 0, -1);
        let s = &mut self.slots[slot as usize];
        s.kv_tokens.clear();
        s.busy = false;
    }

    /// The least recently used idle sequence other than `keep`.
    fn lru_idle(&self, keep: &[usize]) -> Option<usize> {
        (self.slots.iter().enumerate())
            .filter(|(i, s)| s.is_idle() && !keep.contains(i))
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i)
    }

    fn admit(&mut self) {
        while let Some(job) = self.waiting.pop_front() {
            match self.admit_one(job) {
                Ok(()) => {
                    self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                }
                Err(job) => {
                    self.waiting.push_front(job);
                    return;
                }
            }
        }
    }

    /// Gives `job` a sequence, sharing the longest prefix some sequence already holds.
    fn admit_one(&mut self, job: Box<Job>) -> Result<(), Box<Job>> {
        // Longest shared prefix, leaving at least one token to evaluate for the logits.
        let cap = job.tokens.len() - 1;
        let mut source: Option<(usize, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            // Isolated sequences share no cells: an idle sequence is taken over, a running
            // one's prefix copied into the new sequence's region (below).
            let l = common_prefix(&s.kv_tokens, &job.tokens).min(cap);
            // A sliding-window ring that moved past the prefix's end no longer holds the
            // window its next token needs: that prefix must be computed again.
            let l = if self.ctx.kv_seq_can_continue_at(i as u32, l as i32) {
                l
            } else {
                0
            };
            if l > 0 && source.is_none_or(|(_, best)| l > best) {
                source = Some((i, l));
            }
        }
        let src = source.map(|(i, _)| i);
        let take_over = src.filter(|&s| self.slots[s].is_idle());
        let target = if let (true, Some(s)) = (self.config.isolated, take_over) {
            s
        } else if let Some(free) = self.slots.iter().position(Slot::is_free) {
            free
        } else if let Some(s) = take_over {
            s
        } else if let Some(lru) = self.lru_idle(&[]) {
            let src_gone = src == Some(lru);
            self.release(lru as u32);
            if src_gone {
                source = None;
            }
            lru
        } else {
            return Err(job);
        };
        let mut reuse = source.map_or(0, |(_, l)| l);
        let keep: Vec<usize> = [Some(target), source.map(|(i, _)| i)]
            .into_iter()
            .flatten()
            .collect();
        // Isolated: the target's region is its own and the prompt fits it (checked at submit).
        let need = if self.config.isolated {
            0
        } else {
            job.tokens.len() - reuse + self.running.len() + 1
        };
        while self.free_cells() < need {
            match self.lru_idle(&keep) {
                Some(lru) => self.release(lru as u32),
                None => break,
            }
        }
        if self.free_cells() < need && !self.running.is_empty() {
            return Err(job);
        }
        let t = target as u32;
        match source {
            Some((s, l)) if s == target => {
                let _ = self.ctx.kv_seq_remove(Some(t), l as i32, -1);
                self.slots[target].kv_tokens.truncate(l);
            }
            Some((s, l)) => {
                // Isolated: a copy into the target's (empty) region, with the bits the request
                // computes alone; a failed copy (a GPU error) just leaves the prompt to compute.
                let copied = if self.config.isolated {
                    self.ctx.kv_seq_copy_into_region(s as u32, t, l).is_ok()
                } else {
                    self.ctx.kv_seq_copy(s as u32, t, 0, l as i32).is_ok()
                };
                if copied {
                    let prefix = self.slots[s].kv_tokens[..l].to_vec();
                    self.slots[target].kv_tokens = prefix;
                } else {
                    reuse = 0;
                }
            }
            None => {}
        }
        let mut job = *job;
        if !job.admitted_before {
            job.cached = reuse;
            job.admitted_before = true;
        }
        if reuse > 0 {
            self.stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
            (self.stats.prefix_tokens_reused).fetch_add(reuse as u64, Ordering::Relaxed);
        }
        self.clock += 1;
        let slot = &mut self.slots[target];
        slot.busy = true;
        slot.last_used = self.clock;
        self.running.push(Running {
            job,
            slot: t,
            n_past: reuse,
            order: self.clock,
        });
        Ok(())
    }

    /// The newest running request gives its cells back and waits at the head of the queue.
    fn preempt_newest(&mut self) {
        let Some(i) = (0..self.running.len()).max_by_key(|&i| self.running[i].order) else {
            return;
        };
        let r = self.running.remove(i);
        self.release(r.slot);
        self.waiting.push_front(Box::new(r.job));
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// How many tokens of each running request this step evaluates: one for every request
    /// that is generating, then prompt chunks within the budget, in admission order.
    fn plan(&self) -> Vec<usize> {
        let mut budget = self.config.n_batch;
        let mut take = vec![0; self.running.len()];
        for (i, r) in self.running.iter().enumerate() {
            if r.job.tokens.len() - r.n_past == 1 && budget > 0 {
                take[i] = 1;
                budget -= 1;
            }
        }
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| self.running[i].order);
        for i in order {
            let left = self.running[i].job.tokens.len() - self.running[i].n_past;
            if left > 1 {
                take[i] = left.min(budget);
                budget -= take[i];
            }
        }
        take
    }

    fn step(&mut self) {
        let take = loop {
            if self.running.is_empty() {
                return;
            }
            let take = self.plan();
            let need: usize = take.iter().sum();
            if self.config.isolated || need <= self.free_cells() {
                break take;
            }
            if let Some(lru) = self.lru_idle(&[]) {
                self.release(lru as u32);
            } else if self.running.len() > 1 {
                self.preempt_newest();
            } else {
                // Alone and still out of cells: the context cannot hold this sequence.
                let r = self.running.remove(0);
                self.retire(r, Outcome::Finished, Some(FinishReason::Length));
            }
        };
        let mut batch = Batch::new();
        // (running index, batch index of its logits)
        let mut want: Vec<(usize, usize)> = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            let n = take[i];
            for k in 0..n {
                let p = r.n_past + k;
                let last = p + 1 == r.job.tokens.len();
                if last {
                    want.push((i, batch.len()));
                }
                batch.push(r.job.tokens[p], p as i32, r.slot, last);
            }
        }
        if batch.is_empty() {
            return;
        }
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.ctx.decode(&batch) {
            let msg = format!("evaluation failed: {e}");
            for mut r in std::mem::take(&mut self.running) {
                r.job.pending.sink.send(Event::Error(msg.clone()));
                self.release(r.slot);
            }
            return;
        }
        let mut prompt_tokens = 0;
        for (i, r) in self.running.iter_mut().enumerate() {
            let n = take[i];
            let fed = &r.job.tokens[r.n_past..r.n_past + n];
            self.slots[r.slot as usize].kv_tokens.extend_from_slice(fed);
            if n > 1 || r.job.n_generated == 0 {
                prompt_tokens += n;
            }
            r.n_past += n;
        }
        (self.stats.prompt_tokens_computed).fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        let mut outcomes: Vec<(usize, Outcome, Option<FinishReason>)> = Vec::new();
        for &(i, bi) in &want {
            let Some(logits) = self.ctx.logits(bi) else {
                continue;
            };
            let r = &mut self.running[i];
            let (outcome, reason) = next_token(r, logits, &self.model, self.seq_capacity);
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            if !matches!(outcome, Outcome::Continue) {
                outcomes.push((i, outcome, reason));
            }
        }
        outcomes.sort_by_key(|o| std::cmp::Reverse(o.0));
        for (i, outcome, reason) in outcomes {
            let r = self.running.remove(i);
            self.retire(r, outcome, reason);
        }
    }

    /// A request leaves: finished ones keep their cells as an idle prefix-cache sequence.
    fn retire(&mut self, mut r: Running, outcome: Outcome, reason: Option<FinishReason>) {
        match outcome {
            Outcome::Cancelled => self.release(r.slot),
            Outcome::Finished | Outcome::Continue => {
                if let Some(reason) = reason {
                    finish(&mut r.job, reason);
                }
                self.clock += 1;
                let s = &mut self.slots[r.slot as usize];
                s.busy = false;
                s.last_used = self.clock;
            }
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Samples the next token of `r` from `logits`, sends its event, and says whether it goes on.
/// A finished request's `Done` event is sent by [`finish`] (for `Stop` by a stop string the
/// reason comes back here; the caller sends it).
fn next_token(
    r: &mut Running,
    logits: &[f32],
    model: &Model,
    capacity: usize,
) -> (Outcome, Option<FinishReason>) {
    let job = &mut r.job;
    let token = match job.pending.sampler.sample(logits) {
        Ok(t) => t,
        Err(e) => {
            job.pending
                .sink
                .send(Event::Error(format!("sampling failed: {e}")));
            return (Outcome::Cancelled, None);
        }
    };
    job.pending.sampler.accept(token);
    job.n_generated += 1;
    let tok = model.tokenizer();
    if !job.pending.request.ignore_eos && tok.is_eog(token) {
        return (Outcome::Finished, Some(FinishReason::Stop));
    }
    job.tokens.push(token);
    let logprob = job
        .pending
        .request
        .logprobs
        .map(|k| logprobs(logits, token, k));
    let text = job.decoder.push(&tok.token_to_piece(token, false));
    let (text, stopped) = match job.stop.push(&text) {
        Pushed::Release(t) => (t, false),
        Pushed::Stop(t) => (t, true),
    };
    let sent = job.pending.sink.send(Event::Token {
        id: token,
        text,
        logprob,
    });
    if !sent {
        return (Outcome::Cancelled, None);
    }
    if stopped {
        job.stop = StopText::new(&[]);
        job.decoder = StreamDecoder::new();
        return (Outcome::Finished, Some(FinishReason::Stop));
    }
    if job.n_generated >= job.pending.request.max_tokens || job.tokens.len() >= capacity {
        return (Outcome::Finished, Some(FinishReason::Length));
    }
    (Outcome::Continue, None)
}

/// Sends `Done` with the text still held back (none after a stop string: [`next_token`]
/// empties the holders when one matches).
fn finish(job: &mut Job, reason: FinishReason) {
    let rest = std::mem::take(&mut job.decoder).finish();
    let text = match job.stop.push(&rest) {
        Pushed::Release(t) => t + &job.stop.finish(),
        Pushed::Stop(t) => t,
    };
    let usage = Usage {
        prompt_tokens: job.pending.request.prompt.len(),
        cached_tokens: job.cached,
        completion_tokens: job.n_generated,
    };
    job.pending.sink.send(Event::Done {
        reason,
        text,
        usage,
    });
}

/// Log-softmax of `logits` at `token`, and the `k` most likely tokens.
fn logprobs(logits: &[f32], token: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let norm = max + sum.ln() as f32;
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.min(idx.len());
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        idx.select_nth_unstable_by(k - 1, by_logit);
        idx.truncate(k);
        idx.sort_by(by_logit);
        top = idx
            .into_iter()
            .map(|t| (t, logits[t as usize] - norm))
            .collect();
    }
    TokenLogprob {
        logprob: logits[token as usize] - norm,
        top,
    }
}
