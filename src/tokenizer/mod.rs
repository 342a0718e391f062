//! Text <-> token ids, built from a GGUF file's `tokenizer.ggml.*` metadata, matching
//! llama.cpp's token ids exactly.
//!
//! Two vocabulary kinds are supported: byte-level BPE (`tokenizer.ggml.model = "gpt2"`, with the
//! regex pre-tokenizer named by `tokenizer.ggml.pre`) and SentencePiece (`"llama"`). Encoding runs
//! in three steps: special tokens are cut out of the text ([`special`]), the remaining fragments
//! are pre-tokenized into words ([`pretokenize`], BPE only), and words are merged into tokens
//! ([`bpe`] by merge rank, [`spm`] by score with `<0xXX>` byte fallback). Decoding maps each id
//! back to bytes ([`decode`]); [`StreamDecoder`] turns a stream of pieces into whole characters.
//!
//! # Why not the Hugging Face `tokenizers` crate
//! We need llama.cpp's ids, not Hugging Face's, and the two differ by design in several places:
//! llama.cpp applies a *list* of regexes in sequence (e.g. "smollm": split every digit, then the
//! GPT-2 pattern on each fragment, where a fragment end acts as end of text for `\s+(?!\S)`), runs
//! GPT-2's and Llama 3's patterns through hand-written scanners with their own corner cases, runs
//! the others on a category-collapsed copy of the text, cuts special tokens out longest-first
//! before anything else, and has its own SentencePiece merge loop, special-id defaults, end-of-
//! generation detection and space clean-up. Reproducing those through `tokenizers` would mean
//! fighting its pipeline rather than using it, and it would add a large dependency tree (onig or
//! fancy-regex, serde, rayon, esaxx, ...) that costs minutes to compile on a 2-core builder, for
//! the small part we would use. The algorithms themselves are a few hundred lines, so we write
//! them against llama.cpp's behaviour and check every id against llama.cpp-generated fixtures.
//!
//! Deliberate gaps: WordPiece, Unigram (T5), RWKV and PLaMo-2 vocabularies and the rarer
//! pre-tokenizers are rejected with [`Error::Tokenizer`] naming them; of llama.cpp's per-model
//! token attributes only Phi-3's `rstrip` is applied (the others concern BERT-style models). Codepoint classes come from
//! Unicode 14 (`unicode_table.rs`); llama.cpp's table may be newer, which only matters for
//! codepoints assigned since.

mod bpe;
mod decode;
mod pretokenize;
mod special;
mod spm;
mod unicode;
mod unicode_table;
mod vocab;

pub use decode::StreamDecoder;
pub use vocab::{VocabKind, VocabSpec};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use pretokenize::PreTokenizer;
use special::Fragment;
use vocab::{attr, Vocab};

/// A tokenizer for one model's vocabulary. Immutable after construction; share it freely
/// between threads.
pub struct Tokenizer {
    vocab: Vocab,
    /// The compiled pre-tokenizer (BPE vocabularies only).
    pre: Option<PreTokenizer>,
}

impl std::fmt::Debug for Tokenizer {
    // The vocabulary has tens of thousands of entries: show its shape, not its contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab.kind)
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.vocab.bos)
            .field("eos", &self.vocab.eos)
            .field("eog", &self.vocab.eog)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a model file's `tokenizer.ggml.*` metadata (and `general.name`,
    /// which selects Phi-3's special-token whitespace rule). Absent special ids take
    /// llama.cpp's defaults: BOS 1, EOS 2, UNK 0 for SentencePiece; BOS = EOS = 11 for BPE
    /// (when the vocabulary is that large).
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        Tokenizer::from_spec(spec_from_gguf(g)?)
    }

    /// Builds the tokenizer from plain vocabulary data; every id and length is validated.
    pub fn from_spec(spec: VocabSpec) -> Result<Tokenizer> {
        let vocab = Vocab::new(spec)?;
        let pre = vocab.pre.as_ref().map(PreTokenizer::new).transpose()?;
        Ok(Tokenizer { vocab, pre })
    }

    /// Number of tokens in the vocabulary; valid ids are `0..n_vocab()`.
    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    pub fn kind(&self) -> VocabKind {
        self.vocab.kind
    }

    /// Tokenizes `text`. `add_special` adds BOS (and EOS) as the vocabulary's flags say;
    /// `parse_special` lets control tokens written in the text (e.g. `<|im_start|>`) become
    /// their ids instead of being tokenized as plain text. User-defined tokens are always
    /// matched, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        let fragments = special::partition(v, text, parse_special);
        match (v.kind, &self.pre) {
            (VocabKind::Spm, _) => {
                // A space is prefixed to the first text fragment and to each one that follows a
                // special token.
                let mut prev_is_special = true;
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => {
                            let mut s = String::with_capacity(t.len() * 3 + 3);
                            if v.add_space_prefix && prev_is_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            spm::encode(v, &s.replace(' ', "\u{2581}"), &mut out);
                            prev_is_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_is_special = true;
                        }
                    }
                }
            }
            (VocabKind::Bpe, Some(pre)) => {
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => {
                            for word in pre.split(t) {
                                bpe::encode_word(v, &bpe::byte_encode(word), &mut out);
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            // `from_spec` always builds a pre-tokenizer for BPE vocabularies.
            (VocabKind::Bpe, None) => {}
        }
        if add_special && v.add_eos {
            out.extend(v.eos);
        }
        out
    }

    /// The bytes token `id` stands for (not necessarily valid UTF-8 on its own). Control and
    /// unknown tokens render as their text only when `special`. Out-of-range ids, unused and
    /// undefined tokens render as nothing (an empty vector).
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        decode::token_to_piece(&self.vocab, id, special)
    }

    /// Detokenizes like llama.cpp's `llama_detokenize(.., remove_special = false, special)`:
    /// pieces concatenated, the SentencePiece space prefix of the first token removed, and the
    /// vocabulary's tokenization-space clean-up applied. Invalid ids contribute nothing.
    pub fn decode(&self, ids: &[u32], special: bool) -> Vec<u8> {
        decode::detokenize(&self.vocab, ids, special)
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }
    /// End of turn: `tokenizer.ggml.eot_token_id`, else a token named like `<|im_end|>`,
    /// `<|eot_id|>`, `<|endoftext|>` (lowest id among those present).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.vocab.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.vocab.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.vocab.pad
    }

    /// Whether generation should stop at `id`: EOS, EOT, EOM, and every token whose text
    /// llama.cpp treats as an end of generation (`<|im_end|>`, `<|endoftext|>`, `</s>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }
    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog.iter().copied().collect()
    }

    /// Whether `id` is a control token (never rendered unless asked for).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.has_attr(id, attr::CONTROL)
    }

    /// The token's text as stored in the vocabulary (byte-encoded for BPE, with U+2581 for
    /// spaces in SentencePiece), or `None` for an out-of-range id.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.token(id).map(|t| t.text.as_str())
    }

    /// The id whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.text_to_id(text)
    }

    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
}

/// Reads the `tokenizer.ggml.*` keys into a [`VocabSpec`].
fn spec_from_gguf(g: &GgufFile) -> Result<VocabSpec> {
    const P: &str = "tokenizer.ggml.";
    let key = |k: &str| format!("{P}{k}");
    let model = g
        .get_str(&key("model"))
        .ok_or_else(|| Error::Tokenizer("missing tokenizer.ggml.model".into()))?;
    let kind = VocabKind::from_model_name(model)?;
    let tokens = g
        .get_str_array(&key("tokens"))
        .ok_or_else(|| Error::Tokenizer("missing or non-string tokenizer.ggml.tokens".into()))?
        .to_vec();
    // Scores may be stored as f32 or i32; anything else present is a malformed file.
    let scores = match (
        g.get_f32_array(&key("scores")),
        g.get_i32_array(&key("scores")),
    ) {
        (Some(f), _) => Some(f.to_vec()),
        (None, Some(i)) => Some(i.iter().map(|&v| v as f32).collect()),
        (None, None) if g.get(&key("scores")).is_some() => {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.scores is not an f32/i32 array".into(),
            ))
        }
        (None, None) => None,
    };
    let token_types = match g.get_i32_array(&key("token_type")) {
        Some(t) => Some(t.to_vec()),
        None if g.get(&key("token_type")).is_some() => {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.token_type is not an i32 array".into(),
            ))
        }
        None => None,
    };
    let merges = match g.get_str_array(&key("merges")) {
        Some(m) => Some(m.to_vec()),
        None if g.get(&key("merges")).is_some() => {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.merges is not a string array".into(),
            ))
        }
        None => None,
    };
    // An id key that is present but not a non-negative 32-bit integer is malformed.
    let id = |k: &str| -> Result<Option<u32>> {
        let full = key(k);
        match (g.get(&full), g.get_u32(&full)) {
            (None, _) => Ok(None),
            (Some(_), Some(v)) => Ok(Some(v)),
            (Some(_), None) => Err(Error::Tokenizer(format!("{full} is not a valid token id"))),
        }
    };
    let flag = |k: &str| -> Result<Option<bool>> {
        let full = key(k);
        match (g.get(&full), g.get_bool(&full)) {
            (None, _) => Ok(None),
            (Some(_), Some(v)) => Ok(Some(v)),
            (Some(_), None) => Err(Error::Tokenizer(format!("{full} is not a boolean"))),
        }
    };
    Ok(VocabSpec {
        kind,
        pre: g.get_str(&key("pre")).map(str::to_owned),
        tokens,
        scores,
        token_types,
        merges,
        bos: id("bos_token_id")?,
        eos: id("eos_token_id")?,
        unk: id("unknown_token_id")?,
        pad: id("padding_token_id")?,
        eot: id("eot_token_id")?,
        eom: id("eom_token_id")?,
        add_bos: flag("add_bos_token")?,
        add_eos: flag("add_eos_token")?,
        add_space_prefix: flag("add_space_prefix")?,
        model_name: g.get_str("general.name").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests;
