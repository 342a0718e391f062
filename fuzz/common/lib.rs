//! Shared by the fuzz targets and the seed generator: tiny llama models built in memory with
//! the crate's GGUF writer (a SentencePiece and a byte-level BPE vocabulary, small weights), the
//! state-blob checksum trailer, and the paths of the optional real models.

pub mod tiny;

use rocmforge::{Context, ContextParams, Model};
use std::path::PathBuf;
use tiny::TinySpec;

/// CRC-32 (IEEE) of `bytes`, as the context state trailer stores it (little-endian).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Overwrites the last 4 bytes of `blob` with the CRC-32 of the bytes before them (a blob
/// shorter than 4 bytes is left as it is).
pub fn fix_trailer(blob: &mut [u8]) {
    if let Some(body_len) = blob.len().checked_sub(4) {
        let crc = crc32(&blob[..body_len]);
        blob[body_len..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Whether `blob` already ends with a valid CRC-32 trailer.
pub fn has_trailer(blob: &[u8]) -> bool {
    match blob.len().checked_sub(4) {
        Some(n) => blob[n..] == crc32(&blob[..n]).to_le_bytes(),
        None => false,
    }
}

/// The real-model cache of the main repository (`ROCMFORGE_MODEL_DIR`, else `../.cache/models`).
pub fn model_dir() -> PathBuf {
    std::env::var_os("ROCMFORGE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models"))
}

/// A cached real model file, when `scripts/fetch-models.sh` has fetched it.
pub fn real_model(file: &str) -> Option<PathBuf> {
    let path = model_dir().join(file);
    path.exists().then_some(path)
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// llama.cpp's vocab-only GGUF of the Llama 2 SentencePiece tokenizer (32000 tokens).
pub const LLAMA_SPM_VOCAB: &str = "ggml-vocab-llama-spm.gguf";

/// The model whose saved states the `state_restore` target restores: SentencePiece vocabulary
/// (n_vocab 25), 2 layers, K/V width 4, so a cache cell is 12 + 2 * 2 * 4 * 4 = 76 bytes.
pub fn state_model() -> Model {
    tiny::build_model(&TinySpec {
        n_layer: 2,
        chat_template: None,
        ..TinySpec::spm_small()
    })
}

/// 64 cells, two sequences, one thread.
pub fn state_params() -> ContextParams {
    ContextParams {
        n_ctx: 64,
        n_batch: 16,
        n_seq_max: 2,
        n_threads: 1,
        ..Default::default()
    }
}

/// Sequence 0 holds "hello world" (BOS + 3 tokens); sequence 1 shares its first two positions
/// and adds one token of its own, so some cells belong to both sequences.
pub fn state_fill(ctx: &mut Context) -> rocmforge::Result<()> {
    let ids = ctx.model().tokenizer().encode("hello world", true, false);
    ctx.eval(&ids, 0)?;
    ctx.kv_seq_copy(0, 1, 0, 2)?;
    ctx.kv_seq_remove(Some(1), 2, -1)?;
    let own = ctx.model().tokenizer().encode("!", false, false);
    ctx.eval(&own, 1)?;
    // The last logits are sequence 0's again, as a whole-context save keeps them.
    ctx.eval(&ids[1..2], 0)
}
