//! `/v1/completions` and `/v1/chat/completions`: requests to the scheduler, events back as
//! one JSON response or as server-sent events ending in `data: [DONE]`.

use crate::error::ApiError;
use crate::metrics::Outcome;
use crate::params::GenParams;
use crate::{AppState, Engine};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rocmforge::chat::{self, Message, SpecialTokens};
use rocmforge::sampler::RANDOM_SEED;
use rocmforge::scheduler::{
    Event, EventSink, FinishReason, Rejected, Request, TokenLogprob, Usage,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Events into a tokio channel; a dropped receiver (the client went away) cancels.
struct Sink(UnboundedSender<Event>);

impl EventSink for Sink {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(chat: bool) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let kind = if chat { "chatcmpl" } else { "cmpl" };
    format!("{kind}-{:x}{n:06x}", now_secs())
}

/// Prompt tokens of a completion (`prompt`: a string, or an array of one string or of token
/// ids) or of a chat (`messages` through the model's template).
fn prompt_tokens(e: &Engine, body: &Value, chat_api: bool) -> Result<Vec<u32>, ApiError> {
    let tok = e.model.tokenizer();
    if !chat_api {
        return match body.get("prompt") {
            Some(Value::String(s)) => Ok(tok.encode(s, true, true)),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Ok(tok.encode(a[0].as_str().unwrap_or_default(), true, true))
            }
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_u64) => a
                .iter()
                .map(|v| v.as_u64().and_then(|t| u32::try_from(t).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| ApiError::param("prompt", "token ids must fit in 32 bits")),
            _ => Err(ApiError::param(
                "prompt",
                "'prompt' must be a string (one prompt per request)",
            )),
        };
    }
    let msgs = (body.get("messages").and_then(Value::as_array))
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::param("messages", "'messages' must be a non-empty array"))?;
    let mut owned: Vec<(String, String)> = Vec::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str);
        let content = match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            // Content parts: the text ones, joined.
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
            ),
            _ => None,
        };
        match (role, content) {
            (Some(r), Some(c)) => owned.push((r.to_string(), c)),
            _ => {
                return Err(ApiError::param(
                    "messages",
                    "each message needs a string 'role' and 'content'",
                ))
            }
        }
    }
    let messages: Vec<Message<'_>> = (owned.iter())
        .map(|(role, content)| Message { role, content })
        .collect();
    let template =
        (e.model.chat_template()).ok_or_else(|| ApiError::bad("the model has no chat template"))?;
    let piece = |id: Option<u32>| {
        id.map(|t| String::from_utf8_lossy(&tok.token_to_piece(t, true)).into_owned())
            .unwrap_or_default()
    };
    let (bos, eos) = (piece(tok.bos()), piece(tok.eos()));
    let special = SpecialTokens {
        bos: &bos,
        eos: &eos,
    };
    let text = chat::render(template, &messages, true, &special)
        .map_err(|e| ApiError::bad(format!("chat template: {e}")))?;
    Ok(tok.encode(&text, false, true))
}

fn finish_name(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

fn piece(e: &Engine, id: u32) -> String {
    String::from_utf8_lossy(&e.model.tokenizer().token_to_piece(id, false)).into_owned()
}

/// One token's log-probabilities in the shape of the endpoint.
fn logprob_json(e: &Engine, chat_api: bool, id: u32, lp: &TokenLogprob) -> Value {
    let top = lp.top.iter().map(|&(t, l)| (piece(e, t), l));
    if chat_api {
        let s = piece(e, id);
        json!({
            "token": s, "logprob": lp.logprob, "bytes": s.as_bytes(),
            "top_logprobs": top.map(|(t, l)| json!({"token": t, "logprob": l, "bytes": t.as_bytes()})).collect::<Vec<_>>(),
        })
    } else {
        let map: serde_json::Map<String, Value> = top.map(|(t, l)| (t, json!(l))).collect();
        json!({"token": piece(e, id), "logprob": lp.logprob, "top": map})
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

pub async fn handle(state: Arc<AppState>, body: Value, chat_api: bool) -> Response {
    // Rendering a chat template runs a sandboxed child process and encoding a long prompt
    // takes a while: keep both off the async workers' hot path.
    match tokio::task::block_in_place(|| start(&state, &body, chat_api)) {
        Ok((receivers, p)) => {
            if p.stream {
                stream(state, receivers, p, chat_api)
            } else {
                whole(state, receivers, chat_api).await
            }
        }
        Err(e) => {
            state.metrics.request(Outcome::Rejected);
            e.into_response()
        }
    }
}

struct Started {
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    model: String,
    started: Instant,
}

fn start(
    state: &AppState,
    body: &Value,
    chat_api: bool,
) -> Result<(Vec<UnboundedReceiver<Event>>, Started), ApiError> {
    let e = state.engine()?;
    match body.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if *m == state.model_id => {}
        Some(m) => {
            return Err(ApiError::param(
                "model",
                format!("unknown model {m}; this server serves '{}'", state.model_id),
            ))
        }
    }
    let p = GenParams::parse(body, chat_api)?;
    let prompt = prompt_tokens(e, body, chat_api)?;
    let capacity = e.scheduler.seq_capacity();
    if prompt.len() >= capacity {
        return Err(ApiError::param(
            if chat_api { "messages" } else { "prompt" },
            format!(
                "the prompt has {} tokens; this server's context holds {capacity} per request",
                prompt.len()
            ),
        ));
    }
    let max_tokens = p.max_tokens.unwrap_or(capacity - prompt.len());
    let mut receivers = Vec::new();
    for i in 0..p.n {
        let mut sampling = p.sampling;
        if sampling.seed != RANDOM_SEED {
            // Choice i of a seeded request is reproducible on its own, and differs from i+1.
            sampling.seed = sampling.seed.wrapping_add(i as u64);
        }
        let request = Request {
            prompt: prompt.clone(),
            sampling,
            max_tokens,
            stop: p.stop.clone(),
            ignore_eos: p.ignore_eos,
            logprobs: p.logprobs,
        };
        let (tx, rx) = unbounded_channel();
        // On refusal the receivers of earlier choices drop here, which cancels them.
        e.scheduler
            .submit(request, Box::new(Sink(tx)))
            .map_err(|r| match r {
                Rejected::QueueFull => ApiError::status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the request queue is full; retry later",
                ),
                Rejected::Invalid(why) => ApiError::bad(why),
                Rejected::Closed => ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down",
                ),
            })?;
        receivers.push(rx);
    }
    let started = Started {
        stream: p.stream,
        include_usage: p.include_usage,
        logprobs: p.logprobs.is_some(),
        model: state.model_id.clone(),
        started: Instant::now(),
    };
    Ok((receivers, started))
}

/// Per-request latency bookkeeping, and the outcome recorded when the response is dropped
/// (a stream whose client went away counts as cancelled).
struct Tracker {
    state: Arc<AppState>,
    started: Instant,
    last: Vec<Option<Instant>>,
    outcome: Outcome,
}

impl Tracker {
    fn token(&mut self, index: usize) {
        let now = Instant::now();
        match self.last[index] {
            None => (self.state.metrics.ttft).observe((now - self.started).as_secs_f64()),
            Some(t) => self.state.metrics.itl.observe((now - t).as_secs_f64()),
        }
        self.last[index] = Some(now);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.state.metrics.request(self.outcome);
    }
}

async fn whole(
    state: Arc<AppState>,
    receivers: Vec<UnboundedReceiver<Event>>,
    chat_api: bool,
) -> Response {
    let n = receivers.len();
    let mut tracker = Tracker {
        state: Arc::clone(&state),
        started: Instant::now(),
        last: vec![None; n],
        outcome: Outcome::Cancelled,
    };
    let Ok(e) = state.engine() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut choices = Vec::new();
    let mut usage = Usage::default();
    for (index, mut rx) in receivers.into_iter().enumerate() {
        let (mut text, mut lps) = (String::new(), Vec::new());
        let mut reason = FinishReason::Cancelled;
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Token {
                    id,
                    text: t,
                    logprob,
                } => {
                    tracker.token(index);
                    text.push_str(&t);
                    if let Some(lp) = logprob {
                        lps.push(logprob_json(e, chat_api, id, &lp));
                    }
                }
                Event::Done {
                    reason: r,
                    text: t,
                    usage: u,
                } => {
                    text.push_str(&t);
                    reason = r;
                    usage.prompt_tokens = u.prompt_tokens;
                    usage.cached_tokens = usage.cached_tokens.max(u.cached_tokens);
                    usage.completion_tokens += u.completion_tokens;
                }
                Event::Error(msg) => {
                    tracker.outcome = Outcome::Error;
                    return ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, msg)
                        .into_response();
                }
            }
        }
        let logprobs = (!lps.is_empty()).then(|| {
            if chat_api {
                json!({ "content": lps })
            } else {
                json!({
                    "tokens": lps.iter().map(|l| l["token"].clone()).collect::<Vec<_>>(),
                    "token_logprobs": lps.iter().map(|l| l["logprob"].clone()).collect::<Vec<_>>(),
                    "top_logprobs": lps.iter().map(|l| l["top"].clone()).collect::<Vec<_>>(),
                })
            }
        });
        choices.push(if chat_api {
            json!({"index": index, "message": {"role": "assistant", "content": text},
                   "logprobs": logprobs, "finish_reason": finish_name(reason)})
        } else {
            json!({"index": index, "text": text, "logprobs": logprobs,
                   "finish_reason": finish_name(reason)})
        });
    }
    tracker.outcome = Outcome::Ok;
    let object = if chat_api {
        "chat.completion"
    } else {
        "text_completion"
    };
    axum::Json(json!({
        "id": request_id(chat_api),
        "object": object,
        "created": now_secs(),
        "model": state.model_id,
        "choices": choices,
        "usage": usage_json(&usage),
    }))
    .into_response()
}

fn sse(v: &Value) -> axum::body::Bytes {
    format!("data: {v}\n\n").into()
}

fn stream(
    state: Arc<AppState>,
    receivers: Vec<UnboundedReceiver<Event>>,
    p: Started,
    chat_api: bool,
) -> Response {
    let n = receivers.len();
    let merged =
        futures_util::stream::select_all(receivers.into_iter().enumerate().map(|(i, rx)| {
            Box::pin(futures_util::stream::unfold(rx, move |mut rx| async move {
                rx.recv().await.map(|ev| ((i, ev), rx))
            }))
        }));
    let id = request_id(chat_api);
    let created = now_secs();
    let object = if chat_api {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut tracker = Tracker {
        state: Arc::clone(&state),
        started: p.started,
        last: vec![None; n],
        outcome: Outcome::Cancelled,
    };
    let mut usage = Usage::default();
    let mut done = 0;
    let mut role_sent = vec![false; n];
    let model = p.model.clone();
    let chunk = move |index: usize, delta: Value, reason: Option<&str>, lp: Option<Value>| {
        let choice = if chat_api {
            json!({"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason})
        } else {
            json!({"index": index, "text": delta, "logprobs": lp, "finish_reason": reason})
        };
        json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
    };
    let chunk2 = chunk.clone();
    let include_usage = p.include_usage;
    let want_lp = p.logprobs;
    let st = Arc::clone(&state);
    let events = merged.map(move |(index, ev)| {
        let Ok(e) = st.engine() else {
            return axum::body::Bytes::new();
        };
        let delta = |text: String, first: &mut bool| {
            if !chat_api {
                return json!(text);
            }
            if std::mem::replace(first, true) {
                json!({"content": text})
            } else {
                json!({"role": "assistant", "content": text})
            }
        };
        match ev {
            Event::Token { id, text, logprob } => {
                tracker.token(index);
                let lp = logprob.filter(|_| want_lp).map(|lp| {
                    let one = logprob_json(e, chat_api, id, &lp);
                    if chat_api {
                        json!({"content": [one]})
                    } else {
                        json!({"tokens": [one["token"]], "token_logprobs": [one["logprob"]],
                               "top_logprobs": [one["top"]]})
                    }
                });
                sse(&chunk(index, delta(text, &mut role_sent[index]), None, lp))
            }
            Event::Done {
                reason,
                text,
                usage: u,
            } => {
                done += 1;
                usage.prompt_tokens = u.prompt_tokens;
                usage.cached_tokens = usage.cached_tokens.max(u.cached_tokens);
                usage.completion_tokens += u.completion_tokens;
                if done == n {
                    tracker.outcome = Outcome::Ok;
                }
                let d = delta(text, &mut role_sent[index]);
                let mut out = sse(&chunk(index, d, Some(finish_name(reason)), None)).to_vec();
                if done == n && include_usage {
                    let mut last = chunk2(0, json!({}), None, None);
                    last["choices"] = json!([]);
                    last["usage"] = usage_json(&usage);
                    out.extend_from_slice(&sse(&last));
                }
                out.into()
            }
            Event::Error(msg) => {
                tracker.outcome = Outcome::Error;
                sse(&json!({"error": {"message": msg, "type": "server_error"}}))
            }
        }
    });
    let body = events
        .chain(futures_util::stream::once(async {
            axum::body::Bytes::from_static(b"data: [DONE]\n\n")
        }))
        .map(Ok::<_, std::convert::Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
