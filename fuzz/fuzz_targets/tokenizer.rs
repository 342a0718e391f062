//! Feeds arbitrary text and token ids to the tokenizers: encode with and without special-token
//! parsing, decode the ids back (per piece, whole, streamed), and decode ids taken straight from
//! the bytes, through the Rust API and through the C ABI (`rocmforge_tokenize`,
//! `rocmforge_token_to_piece`, `rocmforge_detokenize`, which take i32 ids and unchecked UTF-8).
//!
//! Input: one control byte, then the text (lossy UTF-8; the C ABI gets the raw bytes). Control
//! bits 0-1 pick the tokenizer: 0 tiny byte-level BPE, 1 tiny SentencePiece (both with every
//! byte in the vocabulary), 2 SmolLM2's real BPE, 3 the real Llama 2 SentencePiece vocabulary
//! (the last two from the model cache, `scripts/fetch-models.sh`; without them, a tiny BPE with
//! the llama3 pre-tokenizer and a tiny SentencePiece with few byte tokens). Bit 2: add BOS/EOS.
//! Bit 3: parse special tokens. Bit 4: render control tokens when decoding. Bit 5: also run the
//! C ABI (half the inputs: it encodes the text again). Bit 6: ask the C ABI for the sizes first
//! (the two-call protocol) instead of passing buffers of the right size at once.
//!
//! Findings: panics, aborts, overflow traps, an id outside the vocabulary, the C ABI disagreeing
//! with the Rust API, and a plain encode (no special tokens) that does not decode back to the
//! text, for vocabularies without space clean-up and texts whose every byte has a token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::ffi::model::{rocmforge_model, rocmforge_model_load};
use rocmforge::ffi::status::rocmforge_status;
use rocmforge::ffi::tokenizer::{
    rocmforge_detokenize, rocmforge_token_to_piece, rocmforge_tokenize,
};
use rocmforge::gguf::GgufFile;
use rocmforge::tokenizer::{StreamDecoder, Tokenizer};
use rocmforge_fuzz::tiny::{self, TinySpec, Vocab};
use rocmforge_fuzz::{real_model, LLAMA_SPM_VOCAB, SMOLLM2};
use std::ffi::CString;
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

/// When `decode(encode(text))` must give back `text` (plain encode, nothing special).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RoundTrip {
    No,
    /// Byte-level BPE without space clean-up: always.
    Bpe,
    /// SentencePiece with a space prefix: unless the text holds U+2581 (it decodes as a space).
    Spm,
}

/// A model handle from `rocmforge_model_load`, kept for the whole process.
struct Handle(*mut rocmforge_model);
// SAFETY: the C ABI documents the tokenizer functions as callable from any thread on a live
// model; the handle is never freed.
unsafe impl Send for Handle {}
// SAFETY: as above (shared reads only).
unsafe impl Sync for Handle {}

struct Slot {
    tok: Tokenizer,
    ffi: Option<Handle>,
    round_trip: RoundTrip,
    /// Bytes with a token of their own (a byte character for BPE, `<0xXX>` for SentencePiece).
    /// A byte without one cannot survive encoding (llama.cpp drops it too), so the round trip
    /// is checked only on texts made of covered bytes.
    covered: [bool; 256],
}

fn slot(tok: Tokenizer, ffi: Option<Handle>, round_trip: RoundTrip) -> Slot {
    let mut covered = [false; 256];
    for (b, c) in covered.iter_mut().enumerate() {
        let b = b as u8;
        let text = match round_trip {
            RoundTrip::Spm => format!("<0x{b:02X}>"),
            _ => tiny::byte_to_char(b).to_string(),
        };
        *c = tok.token_id(&text).is_some();
    }
    Slot {
        tok,
        ffi,
        round_trip,
        covered,
    }
}

static SLOTS: OnceLock<Vec<Slot>> = OnceLock::new();

fn load_ffi(path: &Path) -> Option<Handle> {
    let path = CString::new(path.to_str()?).ok()?;
    let mut model = ptr::null_mut();
    // SAFETY: NUL-terminated path, NULL params (defaults), writable out-pointer.
    let status = unsafe { rocmforge_model_load(path.as_ptr(), ptr::null(), &mut model) };
    (status == rocmforge_status::ROCMFORGE_OK).then_some(Handle(model))
}

fn tiny_slot(spec: &TinySpec, round_trip: RoundTrip) -> Slot {
    let bytes = tiny::build_bytes(spec);
    // The C ABI loads from a path: write the file, load it (mapped), remove it.
    let path = std::env::temp_dir().join(format!(
        "rocmforge-fuzz-{}-{:?}-{}-{}.gguf",
        std::process::id(),
        spec.vocab,
        spec.pre,
        spec.all_bytes
    ));
    std::fs::write(&path, &bytes).expect("write tiny model");
    let ffi = load_ffi(&path);
    let _ = std::fs::remove_file(&path);
    let gguf = GgufFile::from_bytes(bytes).expect("tiny model parses");
    let tok = Tokenizer::from_gguf(&gguf).expect("tiny tokenizer");
    assert!(ffi.is_some(), "the tiny model loads through the C ABI");
    slot(tok, ffi, round_trip)
}

fn real_slot(file: &str, with_ffi: bool, round_trip: RoundTrip) -> Option<Slot> {
    let path = real_model(file)?;
    let gguf = GgufFile::open(&path).ok()?;
    let tok = Tokenizer::from_gguf(&gguf).ok()?;
    let ffi = if with_ffi { load_ffi(&path) } else { None };
    Some(slot(tok, ffi, round_trip))
}

fn slots() -> &'static [Slot] {
    SLOTS.get_or_init(|| {
        let bpe = TinySpec::full_vocab(Vocab::Bpe);
        let spm = TinySpec::full_vocab(Vocab::Spm);
        vec![
            tiny_slot(&bpe, RoundTrip::Bpe),
            tiny_slot(&spm, RoundTrip::Spm),
            real_slot(SMOLLM2, true, RoundTrip::Bpe).unwrap_or_else(|| {
                let llama3 = TinySpec {
                    pre: "llama3",
                    ..bpe.clone()
                };
                tiny_slot(&llama3, RoundTrip::No)
            }),
            // A vocabulary-only file: no weights, so no C handle.
            real_slot(LLAMA_SPM_VOCAB, false, RoundTrip::Spm)
                .unwrap_or_else(|| tiny_slot(&TinySpec::spm_small(), RoundTrip::No)),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let slot = &slots()[usize::from(control & 3)];
    let (add_special, parse_special, special) =
        (control & 4 != 0, control & 8 != 0, control & 16 != 0);
    let tok = &slot.tok;
    let n_vocab = tok.n_vocab();
    let text = String::from_utf8_lossy(rest);

    // Text -> ids -> text.
    let ids = tok.encode(&text, add_special, parse_special);
    for &id in &ids {
        assert!(
            (id as usize) < n_vocab,
            "id {id} outside vocabulary {n_vocab}"
        );
    }
    let decoded = tok.decode(&ids, special);
    let mut pieces = Vec::new();
    let mut stream = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        let piece = tok.token_to_piece(id, special);
        streamed.push_str(&stream.push(&piece));
        pieces.extend_from_slice(&piece);
    }
    streamed.push_str(&stream.finish());
    assert_eq!(streamed, String::from_utf8_lossy(&pieces), "stream decoder");
    if !add_special && !parse_special && !special {
        let covered = text.bytes().all(|b| slot.covered[usize::from(b)]);
        let expect_back = covered
            && match slot.round_trip {
                RoundTrip::No => false,
                RoundTrip::Bpe => true,
                RoundTrip::Spm => !text.contains('\u{2581}'),
            };
        if expect_back {
            assert!(
                decoded == text.as_bytes(),
                "round trip: {text:?} -> {ids:?} -> {:?}",
                String::from_utf8_lossy(&decoded)
            );
        }
    }

    // Ids straight from the bytes: raw u32 (mostly out of range) and reduced into the vocabulary.
    let raw: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let in_range: Vec<u32> = raw.iter().map(|&id| id % n_vocab as u32).collect();
    let in_range_text = tok.decode(&in_range, special);
    for &id in raw.iter().take(8).chain(&in_range) {
        let piece = tok.token_to_piece(id, special);
        if (id as usize) >= n_vocab {
            assert!(piece.is_empty());
            assert!(tok.token_text(id).is_none());
        }
        let _ = (tok.is_eog(id), tok.is_control(id));
    }

    if let (Some(Handle(model)), true) = (&slot.ffi, control & 32 != 0) {
        let size_query = control & 64 != 0;
        let decoded = (&ids[..], &raw[..], &in_range[..], &in_range_text[..]);
        check_ffi(
            *model,
            tok,
            rest,
            add_special,
            parse_special,
            special,
            decoded,
            size_query,
        );
    }
});

/// The C ABI on the same input: tokenize the raw bytes (invalid UTF-8 must be an error), then
/// i32 ids from the bytes through token_to_piece and detokenize (any invalid id: an error).
#[allow(clippy::too_many_arguments)]
fn check_ffi(
    model: *const rocmforge_model,
    tok: &Tokenizer,
    bytes: &[u8],
    add_special: bool,
    parse_special: bool,
    special: bool,
    (ids, raw, in_range, in_range_text): (&[u32], &[u32], &[u32], &[u8]),
    size_query: bool,
) {
    use rocmforge_status::*;
    let n_vocab = tok.n_vocab();
    let valid_utf8 = std::str::from_utf8(bytes).is_ok();
    let tokenize = |out: &mut [i32], n: &mut usize| {
        // SAFETY: live model; `bytes` readable; `out` writable for its length (NULL when
        // empty, which asks for the count).
        unsafe {
            rocmforge_tokenize(
                model,
                bytes.as_ptr().cast(),
                bytes.len(),
                add_special,
                parse_special,
                if out.is_empty() {
                    ptr::null_mut()
                } else {
                    out.as_mut_ptr()
                },
                out.len(),
                n,
            )
        }
    };
    let mut n = usize::MAX;
    if !valid_utf8 {
        assert_eq!(tokenize(&mut [], &mut n), ROCMFORGE_ERR_INVALID_ARGUMENT);
    } else {
        if size_query {
            // The two-call protocol's first call: the count only.
            let expect = if ids.is_empty() {
                ROCMFORGE_OK
            } else {
                ROCMFORGE_ERR_BUFFER_TOO_SMALL
            };
            assert_eq!((tokenize(&mut [], &mut n), n), (expect, ids.len()));
        }
        let mut out = vec![-1i32; ids.len()];
        assert_eq!(tokenize(&mut out, &mut n), ROCMFORGE_OK);
        assert_eq!(n, ids.len());
        assert!(out.iter().map(|&i| i as u32).eq(ids.iter().copied()));
    }

    // i32 ids straight from the bytes: negative and out-of-range ones must be refused.
    let signed: Vec<i32> = raw.iter().map(|&u| u as i32).collect();
    for &id in signed.iter().take(8) {
        let mut buf = [0u8; 64];
        let mut len = 0usize;
        // SAFETY: live model; `buf` writable for 64 bytes; `len` writable.
        let status = unsafe {
            rocmforge_token_to_piece(model, id, special, buf.as_mut_ptr().cast(), 64, &mut len)
        };
        let valid = id >= 0 && (id as usize) < n_vocab;
        match status {
            ROCMFORGE_OK => {
                assert!(valid);
                assert_eq!(&buf[..len], &tok.token_to_piece(id as u32, special)[..]);
                assert_eq!(buf[len], 0);
            }
            ROCMFORGE_ERR_BUFFER_TOO_SMALL => assert!(valid && len >= 64),
            ROCMFORGE_ERR_INVALID_TOKEN => assert!(!valid),
            other => panic!("token_to_piece({id}): {other:?}"),
        }
    }
    let detokenize = |ids: &[i32], buf: &mut [u8], len: &mut usize| {
        // SAFETY: live model; `ids` readable; `buf` writable for its length (NULL when empty).
        unsafe {
            rocmforge_detokenize(
                model,
                ids.as_ptr(),
                ids.len(),
                special,
                if buf.is_empty() {
                    ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
                len,
            )
        }
    };
    let mut len = 0usize;
    if signed.iter().any(|&i| i < 0 || i as usize >= n_vocab) {
        assert_eq!(
            detokenize(&signed, &mut [], &mut len),
            ROCMFORGE_ERR_INVALID_TOKEN
        );
    }
    // Ids reduced into the vocabulary: the Rust `decode` bytes, NUL-terminated (after a size
    // query, or into a buffer of the right size at once).
    let valid: Vec<i32> = in_range.iter().map(|&u| u as i32).collect();
    if size_query {
        assert_eq!(
            (detokenize(&valid, &mut [], &mut len), len),
            (ROCMFORGE_ERR_BUFFER_TOO_SMALL, in_range_text.len())
        );
    }
    let mut buf = vec![0xAAu8; in_range_text.len() + 1];
    assert_eq!(detokenize(&valid, &mut buf, &mut len), ROCMFORGE_OK);
    assert_eq!(&buf[..len], in_range_text);
    assert_eq!(buf[len], 0);
}
