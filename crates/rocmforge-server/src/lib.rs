//! `rocmforge-server`: an OpenAI-compatible HTTP server over ROCmForge's continuous-batching
//! scheduler. Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (whole or as
//! server-sent events), `GET /v1/models`, `GET /health` (ready once the model is loaded),
//! `GET /health/live`, `GET /metrics` (Prometheus text), `POST /tokenize`, `POST /detokenize`.
//! The server keeps no state a replica behind a load balancer would miss, apart from its
//! prefix cache.
//!
//! A library so that `rocmforge_cli serve` (this crate's other binary) runs the same server in
//! its own process: [`Args`] is the server's command line as a clap argument group, [`run`]
//! serves until shutdown.

mod error;
mod generate;
mod metrics;
mod params;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use rocmforge::kv_cache::KvType;
use rocmforge::scheduler::{Scheduler, SchedulerConfig};
use rocmforge::{Model, ModelParams};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The server's options; `rocmforge-server` and `rocmforge_cli serve` parse the same group.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model file.
    #[arg(short, long)]
    model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Model id reported by /v1/models and accepted in requests (default: the file name).
    #[arg(long)]
    alias: Option<String>,
    /// KV cache cells shared by all sequences.
    #[arg(short = 'c', long, default_value_t = 8192)]
    ctx: usize,
    /// Sequences generated at once (each gets ctx / parallel cells).
    #[arg(short = 'p', long, default_value_t = 8)]
    parallel: usize,
    /// Token budget of one batch.
    #[arg(short = 'b', long, default_value_t = 256)]
    batch: usize,
    /// Compute threads (0: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
    /// KV cache type: f16 (default, as llama.cpp), f32, or q8_0 (heads of a multiple of 32).
    #[arg(long, default_value = "f16", value_parser = parse_cache_type)]
    cache_type: KvType,
    /// Requests that may wait; more are answered 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Require `Authorization: Bearer KEY` (also read from ROCMFORGE_API_KEY).
    #[arg(long, env = "ROCMFORGE_API_KEY")]
    api_key: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
}

pub(crate) struct AppState {
    args: Args,
    model_id: String,
    /// Set once the model is loaded: until then /health answers 503.
    engine: OnceLock<Engine>,
    metrics: metrics::Metrics,
}

pub(crate) struct Engine {
    model: Model,
    scheduler: Arc<Scheduler>,
}

type Shared = Arc<AppState>;

impl AppState {
    fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine.get().ok_or_else(|| {
            ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading",
            )
        })
    }

    fn check_key(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.args.api_key else {
            return Ok(());
        };
        let given = (headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            Ok(())
        } else {
            Err(ApiError::status(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (Authorization: Bearer ...)",
            ))
        }
    }

    /// The JSON body, within the size limit, after the API key check.
    async fn body(&self, headers: &HeaderMap, req: Request) -> Result<Value, ApiError> {
        self.check_key(headers)?;
        let bytes = axum::body::to_bytes(req.into_body(), self.args.max_body)
            .await
            .map_err(|_| {
                ApiError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body exceeds {} bytes", self.args.max_body),
                )
            })?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad(format!("malformed JSON body: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::bad("the body must be a JSON object"));
        }
        Ok(v)
    }
}

fn reject(state: &AppState, e: ApiError) -> Response {
    state.metrics.request(metrics::Outcome::Rejected);
    e.into_response()
}

async fn completions(State(s): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    match s.body(&headers, req).await {
        Ok(body) => generate::handle(s, body, false).await,
        Err(e) => reject(&s, e),
    }
}

async fn chat(State(s): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    match s.body(&headers, req).await {
        Ok(body) => generate::handle(s, body, true).await,
        Err(e) => reject(&s, e),
    }
}

async fn models(State(s): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.check_key(&headers)?;
    Ok(Json(json!({
        "object": "list",
        "data": [{"id": s.model_id, "object": "model", "created": 0, "owned_by": "rocmforge"}],
    })))
}

async fn health(State(s): State<Shared>) -> Response {
    match s.engine.get() {
        Some(_) => Json(json!({"status": "ok"})).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response(),
    }
}

async fn live() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

async fn metrics(State(s): State<Shared>) -> Response {
    let stats = s.engine.get().map(|e| e.scheduler.stats());
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(stats),
    )
        .into_response()
}

async fn tokenize(State(s): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    let run = async {
        let body = s.body(&headers, req).await?;
        let e = s.engine()?;
        let text = (body.get("content").and_then(Value::as_str))
            .ok_or_else(|| ApiError::param("content", "'content' must be a string"))?;
        let add_special = body
            .get("add_special")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let tokens = e.model.tokenizer().encode(text, add_special, true);
        Ok::<_, ApiError>(Json(json!({ "tokens": tokens })))
    };
    run.await.into_response()
}

async fn detokenize(State(s): State<Shared>, headers: HeaderMap, req: Request) -> Response {
    let run = async {
        let body = s.body(&headers, req).await?;
        let e = s.engine()?;
        let bad = || ApiError::param("tokens", "'tokens' must be an array of token ids");
        let ids: Vec<u32> = (body
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or_else(bad)?)
        .iter()
        .map(|v| v.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
        let n_vocab = e.model.tokenizer().n_vocab();
        if ids.iter().any(|&t| t as usize >= n_vocab) {
            return Err(ApiError::param(
                "tokens",
                format!("token ids must be below {n_vocab}"),
            ));
        }
        let text = String::from_utf8_lossy(&e.model.tokenizer().decode(&ids, false)).into_owned();
        Ok(Json(json!({ "content": text })))
    };
    run.await.into_response()
}

async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "no such endpoint")
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Serves with `args` until SIGTERM or Ctrl-C; failures are reported on stderr.
pub fn run(args: Args) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rocmforge-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let model_id = args.alias.clone().unwrap_or_else(|| {
        std::path::Path::new(&args.model)
            .file_name()
            .map_or("model".into(), |f| f.to_string_lossy().into_owned())
    });
    let state = Arc::new(AppState {
        args: args.clone(),
        model_id,
        engine: OnceLock::new(),
        metrics: metrics::Metrics::new(),
    });
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::clone(&state));
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Listening before the model is loaded: liveness answers at once, readiness once loaded.
    eprintln!("rocmforge-server: listening on http://{local}");
    let loading = Arc::clone(&state);
    let loader = tokio::task::spawn_blocking(move || {
        let loader = loading;
        let a = &loader.args;
        let model = Model::load(&a.model, ModelParams::default())
            .map_err(|e| format!("cannot load {}: {e}", a.model))?;
        let config = SchedulerConfig {
            n_ctx: a.ctx,
            n_seq: a.parallel,
            n_batch: a.batch,
            n_threads: a.threads,
            max_queue: a.max_queue,
            cache_type: a.cache_type,
            isolated: true,
        };
        let scheduler = Scheduler::new(&model, config).map_err(|e| e.to_string())?;
        let capacity = scheduler.seq_capacity();
        let _ = loader.engine.set(Engine {
            model,
            scheduler: Arc::new(scheduler),
        });
        // Said once /health answers ready (before, a client reading this line could still
        // be told "loading").
        eprintln!(
            "rocmforge-server: model loaded ({} sequences of {capacity} tokens)",
            a.parallel
        );
        Ok::<(), String>(())
    });
    // A model that cannot be loaded ends the process: an orchestrator sees it exit.
    tokio::spawn(async move {
        match loader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("rocmforge-server: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("rocmforge-server: loading failed: {e}");
                std::process::exit(1);
            }
        }
    });
    let deadline = Duration::from_secs(args.shutdown_timeout);
    let for_cancel = Arc::clone(&state);
    let graceful = async move {
        shutdown_signal().await;
        eprintln!("rocmforge-server: shutting down (in-flight requests get {deadline:?})");
        // Streams still open at the deadline are ended by cancelling their requests.
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if let Some(e) = for_cancel.engine.get() {
                let s = Arc::clone(&e.scheduler);
                let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
            }
        });
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(e) = state.engine.get() {
        let s = Arc::clone(&e.scheduler);
        let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
    }
    eprintln!("rocmforge-server: stopped");
    Ok(())
}

/// `--cache-type`: a KV cache type name ("f16", "f32", "q8_0").
fn parse_cache_type(s: &str) -> Result<KvType, String> {
    s.parse().map_err(|e: rocmforge::Error| e.to_string())
}
