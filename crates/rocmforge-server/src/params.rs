//! The generation parameters of a completion or chat request, read from its JSON and checked
//! against OpenAI's ranges.

use crate::error::ApiError;
use rocmforge::sampler::{SamplerParams, RANDOM_SEED};
use serde_json::Value;

/// What both endpoints share.
pub struct GenParams {
    pub sampling: SamplerParams,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// Top alternatives per token, when log-probabilities were asked for.
    pub logprobs: Option<usize>,
    /// Generate through end-of-generation tokens (llama-server's extension).
    pub ignore_eos: bool,
}

fn number(body: &Value, key: &'static str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v
                .as_f64()
                .ok_or_else(|| ApiError::param(key, format!("'{key}' must be a number")))?;
            if !(lo..=hi).contains(&x) {
                return Err(ApiError::param(
                    key,
                    format!("'{key}' is {x}; it must be between {lo} and {hi}"),
                ));
            }
            Ok(Some(x))
        }
    }
}

fn integer(body: &Value, key: &'static str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match number(body, key, lo as f64, hi as f64)? {
        None => Ok(None),
        Some(x) if x.fract() == 0.0 => Ok(Some(x as i64)),
        Some(x) => Err(ApiError::param(
            key,
            format!("'{key}' is {x}; it must be an integer"),
        )),
    }
}

fn boolean(body: &Value, key: &'static str) -> Result<bool, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::param(key, format!("'{key}' must be a boolean"))),
    }
}

impl GenParams {
    /// `chat`: logprobs is a boolean with `top_logprobs`; else an integer (legacy completions).
    pub fn parse(body: &Value, chat: bool) -> Result<GenParams, ApiError> {
        let temperature = number(body, "temperature", 0.0, 2.0)?.unwrap_or(1.0) as f32;
        let top_p = number(body, "top_p", 0.0, 1.0)?.unwrap_or(1.0) as f32;
        let top_k = integer(body, "top_k", 0, 1 << 20)?.unwrap_or(0) as i32;
        let min_p = number(body, "min_p", 0.0, 1.0)?.unwrap_or(0.0) as f32;
        let presence = number(body, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32;
        let frequency = number(body, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32;
        let repeat = number(body, "repeat_penalty", 0.0, 10.0)?.unwrap_or(1.0) as f32;
        let seed = match body.get("seed") {
            None | Some(Value::Null) => RANDOM_SEED,
            Some(v) => match (v.as_u64(), v.as_i64()) {
                (Some(s), _) => s,
                // A negative seed (the CLI's -1) asks for a random one.
                (None, Some(_)) => RANDOM_SEED,
                _ => return Err(ApiError::param("seed", "'seed' must be an integer")),
            },
        };
        let max_tokens = match integer(body, "max_completion_tokens", 1, 1 << 24)? {
            Some(n) => Some(n as usize),
            None => integer(body, "max_tokens", 1, 1 << 24)?.map(|n| n as usize),
        };
        let stop = match body.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if a.len() <= 4 => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::param("stop", "'stop' must hold strings"))?,
            Some(_) => {
                return Err(ApiError::param(
                    "stop",
                    "'stop' must be a string or an array of up to 4 strings",
                ))
            }
        };
        let n = integer(body, "n", 1, 16)?.unwrap_or(1) as usize;
        let stream = boolean(body, "stream")?;
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let logprobs = if chat {
            let top = integer(body, "top_logprobs", 0, 20)?;
            if boolean(body, "logprobs")? {
                Some(top.unwrap_or(0) as usize)
            } else if top.is_some() {
                return Err(ApiError::param(
                    "top_logprobs",
                    "'top_logprobs' needs 'logprobs': true",
                ));
            } else {
                None
            }
        } else {
            integer(body, "logprobs", 0, 5)?.map(|k| k as usize)
        };
        let penalties = presence != 0.0 || frequency != 0.0 || repeat != 1.0;
        Ok(GenParams {
            sampling: SamplerParams {
                seed,
                temperature,
                top_k,
                top_p,
                min_p,
                min_keep: 1,
                penalty_last_n: if penalties { 256 } else { 0 },
                penalty_repeat: repeat,
                penalty_frequency: frequency,
                penalty_presence: presence,
            },
            max_tokens,
            stop,
            n,
            stream,
            include_usage,
            logprobs,
            ignore_eos: boolean(body, "ignore_eos")?,
        })
    }
}
