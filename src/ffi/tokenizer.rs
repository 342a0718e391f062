//! Text <-> tokens through a model's tokenizer, special tokens, and chat-template rendering.
//! All of these only read the (immutable) model: any thread may call them concurrently.

use super::guard::{c_str, call_on, invalid, out_ptr, slice, write_array, write_out, write_text};
use super::model::rocmforge_model;
use super::status::{rocmforge_status, FfiError, FfiResult};
use crate::chat::{render, Message, SpecialTokens};
use crate::tokenizer::Tokenizer;
use rocmforge_status::*;
use std::ffi::c_char;

/// Checks a token id from C against the vocabulary.
pub(crate) fn token_id(token: i32, n_vocab: usize) -> FfiResult<u32> {
    if token < 0 || token as usize >= n_vocab {
        return Err(FfiError::new(
            ROCMFORGE_ERR_INVALID_TOKEN,
            format!("token id {token} is outside the vocabulary (size {n_vocab})"),
        ));
    }
    Ok(token as u32)
}

/// Text of `len` bytes (not necessarily NUL-terminated) that must be UTF-8.
///
/// # Safety
/// `text` NULL or readable for `len` bytes.
unsafe fn utf8<'a>(text: *const c_char, len: usize) -> FfiResult<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(text.cast::<u8>(), len, "text") }?;
    std::str::from_utf8(bytes).map_err(|e| invalid(format!("text is not valid UTF-8: {e}")))
}

/// Tokenizes `text_len` bytes of UTF-8 `text` (need not be NUL-terminated). `add_special`
/// adds the model's BOS/EOS as its metadata asks; `parse_special` turns special-token texts
/// such as "<|im_start|>" into their ids instead of plain text.
///
/// Two-call size protocol: `*n_tokens` receives the token count; the ids are written to
/// `tokens` only when `capacity` suffices, else ROCMFORGE_ERR_BUFFER_TOO_SMALL (call with
/// `tokens = NULL, capacity = 0` to ask for the count).
///
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `text` readable for `text_len` bytes; `tokens` NULL or writable for
/// `capacity` ids; `n_tokens` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_tokenize(
    model: *const rocmforge_model,
    text: *const c_char,
    text_len: usize,
    add_special: bool,
    parse_special: bool,
    tokens: *mut i32,
    capacity: usize,
    n_tokens: *mut usize,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        // SAFETY: caller contract.
        let text = unsafe { utf8(text, text_len) }?;
        let n_tokens = out_ptr(n_tokens, "n_tokens")?;
        let ids: Vec<i32> = m
            .model
            .tokenizer()
            .encode(text, add_special, parse_special)
            .into_iter()
            .map(|t| t as i32)
            .collect();
        // SAFETY: caller contract for tokens/capacity/n_tokens.
        unsafe { write_array(&ids, tokens, capacity, n_tokens) }
    })
}

/// The bytes of one token (may be a partial UTF-8 character: concatenate pieces before
/// displaying, or use rocmforge_detokenize). Control tokens render only when `special`.
/// Two-call size protocol on bytes: `*n_bytes` receives the length without the NUL; the bytes
/// and a NUL are written only when `capacity > length`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `buf` NULL or writable for `capacity` bytes; `n_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_token_to_piece(
    model: *const rocmforge_model,
    token: i32,
    special: bool,
    buf: *mut c_char,
    capacity: usize,
    n_bytes: *mut usize,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let tok = m.model.tokenizer();
        let id = token_id(token, tok.n_vocab())?;
        let n_bytes = out_ptr(n_bytes, "n_bytes")?;
        // SAFETY: caller contract.
        unsafe { write_text(&tok.token_to_piece(id, special), buf, capacity, n_bytes) }
    })
}

/// Turns `n` token ids back into text (the inverse of rocmforge_tokenize, with the
/// SentencePiece leading space removed). Control tokens render only when `special`. Same size
/// protocol as rocmforge_token_to_piece. Any invalid id: ROCMFORGE_ERR_INVALID_TOKEN.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `tokens` readable for `n` ids; `buf` NULL or writable for
/// `capacity` bytes; `n_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_detokenize(
    model: *const rocmforge_model,
    tokens: *const i32,
    n: usize,
    special: bool,
    buf: *mut c_char,
    capacity: usize,
    n_bytes: *mut usize,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let tok = m.model.tokenizer();
        // SAFETY: caller contract.
        let tokens = unsafe { slice(tokens, n, "tokens") }?;
        let n_bytes = out_ptr(n_bytes, "n_bytes")?;
        let ids = tokens
            .iter()
            .map(|&t| token_id(t, tok.n_vocab()))
            .collect::<FfiResult<Vec<u32>>>()?;
        // SAFETY: caller contract.
        unsafe { write_text(&tok.decode(&ids, special), buf, capacity, n_bytes) }
    })
}

/// Special tokens a model may define, for rocmforge_token_special.
pub const ROCMFORGE_TOKEN_BOS: i32 = 0;
pub const ROCMFORGE_TOKEN_EOS: i32 = 1;
/// End of turn (e.g. "<|im_end|>").
pub const ROCMFORGE_TOKEN_EOT: i32 = 2;
pub const ROCMFORGE_TOKEN_PAD: i32 = 3;
pub const ROCMFORGE_TOKEN_UNK: i32 = 4;

/// The id of a special token (`which` = ROCMFORGE_TOKEN_*), or ROCMFORGE_ERR_NOT_FOUND when
/// the model has none. Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_token_special(
    model: *const rocmforge_model,
    which: i32,
    out: *mut i32,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let out = out_ptr(out, "out")?;
        let tok: &Tokenizer = m.model.tokenizer();
        let (name, id) = match which {
            ROCMFORGE_TOKEN_BOS => ("BOS", tok.bos()),
            ROCMFORGE_TOKEN_EOS => ("EOS", tok.eos()),
            ROCMFORGE_TOKEN_EOT => ("EOT", tok.eot()),
            ROCMFORGE_TOKEN_PAD => ("PAD", tok.pad()),
            ROCMFORGE_TOKEN_UNK => ("UNK", tok.unk()),
            other => return Err(invalid(format!("unknown special token kind {other}"))),
        };
        let id = id.ok_or_else(|| {
            FfiError::new(
                ROCMFORGE_ERR_NOT_FOUND,
                format!("the model has no {name} token"),
            )
        })?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, id as i32) };
        Ok(())
    })
}

/// Whether generation should stop at `token` (EOS, end of turn, and the like) into `*out`.
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_token_is_eog(
    model: *const rocmforge_model,
    token: i32,
    out: *mut bool,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let tok = m.model.tokenizer();
        let id = token_id(token, tok.n_vocab())?;
        let out = out_ptr(out, "out")?;
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, tok.is_eog(id)) };
        Ok(())
    })
}

/// Formats a conversation with a Jinja chat template, running it as Hugging Face's
/// apply_chat_template does (whatever the template adds on its own, such as a default system
/// message, is kept). `template` NULL uses the model's own (`tokenizer.chat_template`;
/// ROCMFORGE_ERR_NO_CHAT_TEMPLATE when it has none). Messages are `n_messages` pairs
/// `roles[i]`, `contents[i]` (NUL-terminated UTF-8). `add_generation_prompt` appends the
/// opening of the assistant's turn. Template failures: ROCMFORGE_ERR_TEMPLATE with the
/// engine's message. Same size protocol as rocmforge_token_to_piece; the result is meant for
/// rocmforge_tokenize with `parse_special = true`.
///
/// Templates are untrusted input (they come with model files), so a render is bounded: 20
/// million template instructions (plus 2,000 per message), 16 MiB of output (plus 4x the
/// messages' size), and on Linux it runs in a short-lived forked child process with 512 MiB of
/// memory (plus 16x the messages' size) and 5 seconds, so a template that loops for ever or
/// doubles a string until memory runs out returns ROCMFORGE_ERR_TEMPLATE instead of hanging or
/// ending the calling process.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `model` NULL or live; `template` NULL or NUL-terminated; `roles`/`contents` readable arrays
/// of `n_messages` NUL-terminated strings; `buf` NULL or writable for `capacity` bytes;
/// `n_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn rocmforge_chat_apply(
    model: *const rocmforge_model,
    template: *const c_char,
    roles: *const *const c_char,
    contents: *const *const c_char,
    n_messages: usize,
    add_generation_prompt: bool,
    buf: *mut c_char,
    capacity: usize,
    n_bytes: *mut usize,
) -> rocmforge_status {
    call_on(model, "model", |m| {
        let n_bytes = out_ptr(n_bytes, "n_bytes")?;
        let template = if template.is_null() {
            m.model.chat_template().ok_or_else(|| {
                FfiError::new(
                    ROCMFORGE_ERR_NO_CHAT_TEMPLATE,
                    "the model has no chat template (tokenizer.chat_template) and none was given",
                )
            })?
        } else {
            // SAFETY: caller contract.
            unsafe { c_str(template, "template") }?
        };
        // SAFETY: caller contract for both arrays.
        let roles = unsafe { slice(roles, n_messages, "roles") }?;
        // SAFETY: as above.
        let contents = unsafe { slice(contents, n_messages, "contents") }?;
        let mut messages = Vec::with_capacity(n_messages);
        for (i, (&r, &c)) in roles.iter().zip(contents).enumerate() {
            // SAFETY: each entry is a NUL-terminated string per the contract.
            let role = unsafe { c_str(r, &format!("roles[{i}]")) }?;
            // SAFETY: as above.
            let content = unsafe { c_str(c, &format!("contents[{i}]")) }?;
            messages.push(Message { role, content });
        }
        let tok = m.model.tokenizer();
        let text_of = |id: Option<u32>| id.and_then(|t| tok.token_text(t)).unwrap_or("");
        let special = SpecialTokens {
            bos: text_of(tok.bos()),
            eos: text_of(tok.eos()),
        };
        let text = render(template, &messages, add_generation_prompt, &special)?;
        // SAFETY: caller contract.
        unsafe { write_text(text.as_bytes(), buf, capacity, n_bytes) }
    })
}
