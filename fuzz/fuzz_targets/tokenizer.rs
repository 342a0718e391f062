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
//! Bit 3: parse special tokens. Bit 4: render control tokens when decoding.
//!
//! Findings: panics, aborts, overflow traps, an id outside the vocabulary, the C ABI disagreeing
//! with the Rust API, and for vocabularies that cover every byte, a plain encode (no special
//! tokens) that does not decode back to the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::ffi::model::{rocmforge_model, rocmforge_model_load};
use rocmforge::ffi::status::rocmforge_status;
use rocmforge::ffi::tokenizer::{rocmforge_detokenize, rocmforge_token_to_piece, rocmforge_tokenize};
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
    Slot {
        tok,
        ffi,
        round_trip,
    }
}

fn real_slot(file: &str, with_ffi: bool, round_trip: RoundTrip) -> Option<Slot> {
    let path = real_model(file)?;
    let gguf = GgufFile::open(&path).ok()?;
    let tok = Tokenizer::from_gguf(&gguf).ok()?;
    let ffi = if with_ffi { load_ffi(&path) } else { None };
    Some(Slot {
        tok,
        ffi,
        round_trip,
    })
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
        assert!((id as usize) < n_vocab, "id {id} outside vocabulary {n_vocab}");
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
        let expect_back = match slot.round_trip {
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
    let _ = tok.decode(&raw, special);
    let in_range: Vec<u32> = raw.iter().map(|&id| id % n_vocab as u32).collect();
    let _ = tok.decode(&in_range, special);
    for &id in raw.iter().chain(&in_range).take(64) {
        let piece = tok.token_to_piece(id, special);
        if (id as usize) >= n_vocab {
            assert!(piece.is_empty());
            assert!(tok.token_text(id).is_none());
        }
        let _ = (tok.is_eog(id), tok.is_control(id));
    }

    if let Some(Handle(model)) = &slot.ffi {
        check_ffi(*model, tok, rest, add_special, parse_special, special, &ids, &raw);
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
    ids: &[u32],
    raw: &[u32],
) {
    use rocmforge_status::*;
    let n_vocab = tok.n_vocab();
    let mut n = 0usize;
    // SAFETY: live model; `bytes` readable; NULL buffer with capacity 0 asks for the count.
    let status = unsafe {
        rocmforge_tokenize(
            model,
            bytes.as_ptr().cast(),
            bytes.len(),
            add_special,
            parse_special,
            ptr::null_mut(),
            0,
            &mut n,
        )
    };
    match std::str::from_utf8(bytes) {
        Err(_) => assert_eq!(status, ROCMFORGE_ERR_INVALID_ARGUMENT),
        Ok(_) => {
            assert_eq!(n, ids.len());
            let mut out = vec![-1i32; n];
            // SAFETY: as above, with a buffer of `n` ids.
            let status = unsafe {
                rocmforge_tokenize(
                    model,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    add_special,
                    parse_special,
                    out.as_mut_ptr(),
                    n,
                    &mut n,
                )
            };
            assert_eq!(status, ROCMFORGE_OK);
            assert!(out.iter().map(|&i| i as u32).eq(ids.iter().copied()));
        }
    }

    let signed: Vec<i32> = raw.iter().map(|&u| u as i32).collect();
    for &id in signed.iter().take(16) {
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

    let mut len = 0usize;
    // SAFETY: live model; `signed` readable; NULL buffer asks for the length.
    let status = unsafe {
        rocmforge_detokenize(
            model,
            signed.as_ptr(),
            signed.len(),
            special,
            ptr::null_mut(),
            0,
            &mut len,
        )
    };
    let all_valid = signed.iter().all(|&i| i >= 0 && (i as usize) < n_vocab);
    if !all_valid {
        assert_eq!(status, ROCMFORGE_ERR_INVALID_TOKEN);
        return;
    }
    assert_eq!(status, ROCMFORGE_ERR_BUFFER_TOO_SMALL);
    let mut buf = vec![0xAAu8; len + 1];
    // SAFETY: as above, with a buffer of len + 1 bytes.
    let status = unsafe {
        rocmforge_detokenize(
            model,
            signed.as_ptr(),
            signed.len(),
            special,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(status, ROCMFORGE_OK);
    assert_eq!(&buf[..len], &tok.decode(raw, special)[..]);
}
