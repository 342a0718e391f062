//! Tiny llama models built in memory: a few KB of GGUF that load, tokenize and evaluate, so the
//! fuzzers start from valid files. The layout follows `tests/common/tiny.rs` (same metadata keys
//! and tensor names, deterministic xorshift weights) with smaller shapes, a choice of
//! SentencePiece or byte-level BPE vocabulary, and an optional chat template.

use rocmforge::gguf::{Array, GgufFile, GgufWriter, Value};
use rocmforge::quant::quantize::quantize_row;
use rocmforge::quant::GgmlType;
use rocmforge::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// `tokenizer.ggml.model = "llama"`: scored pieces with `<0xXX>` byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merges.
    Bpe,
}

#[derive(Debug, Clone)]
pub struct TinySpec {
    pub vocab: Vocab,
    /// Every byte has a token (256 `<0xXX>` tokens or byte characters), or only a handful
    /// (keeps seed files at a few KB; other bytes become `<unk>` or are dropped).
    pub all_bytes: bool,
    /// `tokenizer.ggml.pre` (BPE only).
    pub pre: &'static str,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    /// Type of the matrices (norms are always F32). Q4_0/Q4_1/Q8_0 need `n_embd`, `n_ff` and
    /// the K/V width to be multiples of 32.
    pub weight_type: GgmlType,
    /// No `output.weight`: the output projection reuses `token_embd.weight`.
    pub tied: bool,
    /// `llama.rope.scaling.type = linear` with this factor.
    pub rope_linear: Option<f32>,
    pub chat_template: Option<&'static str>,
}

/// ChatML, as SmolLM2 and Qwen use it.
pub const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Llama 2's [INST] format: special tokens, Python string methods, raise_exception.
pub const LLAMA2: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

impl TinySpec {
    /// SentencePiece, one F32 layer of width 8, untied, Llama 2 template (about 4 KB).
    pub fn spm_small() -> TinySpec {
        TinySpec {
            vocab: Vocab::Spm,
            all_bytes: false,
            pre: "default",
            n_layer: 1,
            n_embd: 8,
            n_head: 2,
            n_head_kv: 1,
            n_ff: 16,
            weight_type: GgmlType::F32,
            tied: false,
            rope_linear: None,
            chat_template: Some(LLAMA2),
        }
    }

    /// Byte-level BPE with GPT-2's pre-tokenizer (a hand-written scanner: pre-tokenizers
    /// with a regex compile it at every load, which would dominate a fuzzer's time), one F16
    /// layer, tied, ChatML.
    pub fn bpe_small() -> TinySpec {
        TinySpec {
            vocab: Vocab::Bpe,
            pre: "gpt-2",
            n_head_kv: 2,
            weight_type: GgmlType::F16,
            tied: true,
            chat_template: Some(CHATML),
            ..TinySpec::spm_small()
        }
    }

    /// Width 32 so block-quantized matrices fit: Q8_0 (SPM) or Q4_1 (BPE), linear RoPE scaling.
    pub fn quantized(vocab: Vocab) -> TinySpec {
        let base = match vocab {
            Vocab::Spm => TinySpec::spm_small(),
            Vocab::Bpe => TinySpec {
                pre: "llama3",
                ..TinySpec::bpe_small()
            },
        };
        TinySpec {
            n_embd: 32,
            n_head: 2,
            n_head_kv: 2,
            n_ff: 32,
            weight_type: match vocab {
                Vocab::Spm => GgmlType::Q8_0,
                Vocab::Bpe => GgmlType::Q4_1,
            },
            tied: true,
            rope_linear: Some(2.0),
            chat_template: None,
            ..base
        }
    }

    /// A complete vocabulary (every byte representable) for the tokenizer fuzzer; the weights
    /// stay as small as `spm_small`'s. BPE uses SmolLM2's "smollm" pre-tokenizer (digits split,
    /// then GPT-2's pattern; no space clean-up, so decoding gives the text back).
    pub fn full_vocab(vocab: Vocab) -> TinySpec {
        let base = match vocab {
            Vocab::Spm => TinySpec::spm_small(),
            Vocab::Bpe => TinySpec {
                pre: "smollm",
                ..TinySpec::bpe_small()
            },
        };
        TinySpec {
            all_bytes: true,
            ..base
        }
    }
}

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the others
/// take the characters from U+0100 on, in byte order (space is 'Ġ', newline 'Ċ').
pub fn byte_to_char(b: u8) -> char {
    let printable = |c: u8| matches!(c, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + n).expect("below U+0200")
}

/// Bytes the small BPE vocabulary can spell: those of "hello world", newline, '!' and the two
/// bytes of 'é' (the others are dropped when encoding).
const SMALL_BYTES: &[u8] = b"helowrd \n!\xC3\xA9";

/// SentencePiece pieces after the special and byte tokens: single characters first, then merged
/// pieces (a piece's score is its merge priority).
#[rustfmt::skip]
const SPM_PIECES: &[&str] = &[
    "\u{2581}", "e", "t", "a", "o", "i", "n", "s", "h", "r", "l", "d", "w", "c", "u", "m",
    ".", ",", "!", "?", "\u{2581}t", "he", "\u{2581}the", "in", "er", "\u{2581}a", "ll",
    "\u{2581}h", "\u{2581}he", "llo", "\u{2581}hello", "\u{2581}w", "or", "ld",
    "\u{2581}wor", "\u{2581}world", "\u{2581}i", "\u{2581}in", "\u{2581}\u{2581}",
];

/// Just enough for "hello world" (the seed generator's check) to merge.
#[rustfmt::skip]
const SPM_PIECES_SMALL: &[&str] = &[
    "\u{2581}", "e", "h", "l", "o", "w", "r", "d", "ll", "llo", "\u{2581}h", "\u{2581}hello",
    "\u{2581}w", "or", "ld", "\u{2581}wor", "\u{2581}world",
];

/// BPE merges in rank order; each result is a token of the vocabulary.
#[rustfmt::skip]
const BPE_MERGES: &[&str] = &[
    "Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "l l", "Ġ h", "Ġh e", "ll o", "Ġhe llo",
    "Ġ w", "o r", "l d", "Ġw or", "Ġwor ld", "Ġ i", "Ġi n", "Ġ Ġ", "Ã ©",
];

#[rustfmt::skip]
const BPE_MERGES_SMALL: &[&str] = &[
    "l l", "ll o", "Ġ w", "o r", "l d", "Ġw or", "Ġwor ld", "Ã ©",
];

/// (token texts, token types, scores, merges) of the vocabulary.
type VocabData = (Vec<String>, Vec<i32>, Vec<f32>, Vec<String>);

fn spm_vocab(all_bytes: bool) -> VocabData {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![2, 3, 3, 3, 3];
    let bytes: Vec<u8> = if all_bytes {
        (0..=255).collect()
    } else {
        b"\n\xC3\xA9".to_vec()
    };
    for b in bytes {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let pieces = if all_bytes {
        SPM_PIECES
    } else {
        SPM_PIECES_SMALL
    };
    let mut scores = vec![0.0; tokens.len()];
    for (i, p) in pieces.iter().enumerate() {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(-(i as f32));
    }
    (tokens, types, scores, Vec::new())
}

fn bpe_vocab(all_bytes: bool) -> VocabData {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    let mut types = vec![3, 3, 3];
    let bytes: Vec<u8> = if all_bytes {
        (0..=255).collect()
    } else {
        SMALL_BYTES.to_vec()
    };
    for b in bytes {
        tokens.push(byte_to_char(b).to_string());
        types.push(1);
    }
    let merges = if all_bytes {
        BPE_MERGES
    } else {
        BPE_MERGES_SMALL
    };
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    let merges = merges.iter().map(|m| m.to_string()).collect();
    (tokens, types, Vec::new(), merges)
}

/// Deterministic values in about ±scale (xorshift).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The model file as bytes.
pub fn build_bytes(spec: &TinySpec) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let mut kv = |k: &str, v: Value| {
        w.add_kv(k, v).expect("unique key");
    };
    kv("general.architecture", "llama".into());
    kv("general.name", "tiny".into());
    kv("llama.block_count", Value::U32(spec.n_layer as u32));
    kv("llama.context_length", Value::U32(256));
    kv("llama.embedding_length", Value::U32(spec.n_embd as u32));
    kv("llama.feed_forward_length", Value::U32(spec.n_ff as u32));
    kv("llama.attention.head_count", Value::U32(spec.n_head as u32));
    kv(
        "llama.attention.head_count_kv",
        Value::U32(spec.n_head_kv as u32),
    );
    kv("llama.rope.freq_base", Value::F32(10000.0));
    kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    if let Some(factor) = spec.rope_linear {
        kv("llama.rope.scaling.type", "linear".into());
        kv("llama.rope.scaling.factor", Value::F32(factor));
    }
    let (tokens, types, scores, merges) = match spec.vocab {
        Vocab::Spm => spm_vocab(spec.all_bytes),
        Vocab::Bpe => bpe_vocab(spec.all_bytes),
    };
    let n_vocab = tokens.len() as u64;
    match spec.vocab {
        Vocab::Spm => {
            kv("tokenizer.ggml.model", "llama".into());
            kv("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
            kv("tokenizer.ggml.bos_token_id", Value::U32(1));
            kv("tokenizer.ggml.eos_token_id", Value::U32(2));
            kv("tokenizer.ggml.unknown_token_id", Value::U32(0));
        }
        Vocab::Bpe => {
            kv("tokenizer.ggml.model", "gpt2".into());
            kv("tokenizer.ggml.pre", spec.pre.into());
            kv("tokenizer.ggml.merges", Value::Array(Array::String(merges)));
            kv("tokenizer.ggml.bos_token_id", Value::U32(1));
            kv("tokenizer.ggml.eos_token_id", Value::U32(2));
            kv("tokenizer.ggml.padding_token_id", Value::U32(0));
            kv("tokenizer.ggml.add_bos_token", Value::Bool(false));
        }
    }
    kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    kv("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    if let Some(t) = spec.chat_template {
        kv("tokenizer.chat_template", t.into());
    }

    let head_dim = (spec.n_embd / spec.n_head) as u64;
    let kv_dim = spec.n_head_kv as u64 * head_dim;
    let (d, ff, v) = (spec.n_embd as u64, spec.n_ff as u64, n_vocab);
    let mut seed = 1u64;
    let mut tensor = |name: String, dims: &[u64], ty: GgmlType, scale: f32, offset: f32| {
        seed += 1;
        let n: u64 = dims.iter().product();
        let x: Vec<f32> = values(n as usize, seed, scale)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        let mut data = Vec::new();
        quantize_row(ty, &x, &mut data).expect("whole blocks");
        w.add_tensor(name, dims, ty, data).expect("valid tensor");
    };
    let wt = spec.weight_type;
    tensor("token_embd.weight".into(), &[d, v], wt, 1.0, 0.0);
    for i in 0..spec.n_layer {
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        tensor(name("attn_norm"), &[d], GgmlType::F32, 0.1, 1.0);
        tensor(name("attn_q"), &[d, d], wt, 0.3, 0.0);
        tensor(name("attn_k"), &[d, kv_dim], wt, 0.3, 0.0);
        tensor(name("attn_v"), &[d, kv_dim], wt, 0.3, 0.0);
        tensor(name("attn_output"), &[d, d], wt, 0.2, 0.0);
        tensor(name("ffn_norm"), &[d], GgmlType::F32, 0.1, 1.0);
        tensor(name("ffn_gate"), &[d, ff], wt, 0.2, 0.0);
        tensor(name("ffn_up"), &[d, ff], wt, 0.2, 0.0);
        tensor(name("ffn_down"), &[ff, d], wt, 0.2, 0.0);
    }
    tensor("output_norm.weight".into(), &[d], GgmlType::F32, 0.1, 1.0);
    if !spec.tied {
        tensor("output.weight".into(), &[d, v], wt, 0.5, 0.0);
    }
    w.to_bytes()
}

/// The model, loaded through `Model::from_gguf` (panics if our own file does not load).
pub fn build_model(spec: &TinySpec) -> Model {
    let gguf = GgufFile::from_bytes(build_bytes(spec)).expect("tiny model parses");
    Model::from_gguf(gguf).expect("tiny model loads")
}
