//! The vocabulary: token texts, scores and attributes, merges, special ids and flags, validated
//! from a plain [`VocabSpec`] and completed with llama.cpp's loader conventions.

use std::collections::{BTreeSet, HashMap};

use super::pretokenize::{pre_config, PreConfig};
use crate::error::{Error, Result};

/// Which tokenization algorithm the vocabulary uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `"gpt2"`: byte-level BPE with merges and a regex pre-tokenizer.
    Bpe,
    /// `"llama"`: SentencePiece BPE with scores and `<0xXX>` byte fallback.
    Spm,
}

impl VocabKind {
    /// Maps a `tokenizer.ggml.model` value; anything else is an error naming it.
    pub fn from_model_name(name: &str) -> Result<VocabKind> {
        match name {
            "gpt2" => Ok(VocabKind::Bpe),
            "llama" => Ok(VocabKind::Spm),
            other => Err(Error::Tokenizer(format!(
                "unsupported tokenizer model '{other}' (tokenizer.ggml.model)"
            ))),
        }
    }
}

/// Everything a tokenizer is built from, as plain data (what the GGUF metadata says; `None`
/// where a key is absent).
#[derive(Clone, Debug)]
pub struct VocabSpec {
    pub kind: VocabKind,
    /// `tokenizer.ggml.pre` (BPE only; ignored for SentencePiece).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the token texts, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte; anything else is "undefined" (never rendered).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first (BPE only).
    pub merges: Option<Vec<String>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name`: llama.cpp keys a few per-model token attributes on it (Phi-3).
    pub model_name: Option<String>,
}

/// Token attribute bits (a token may carry several: llama.cpp marks end-of-generation-looking
/// tokens as control on top of their own type).
pub(crate) mod attr {
    pub const UNKNOWN: u8 = 1 << 0;
    pub const UNUSED: u8 = 1 << 1;
    pub const NORMAL: u8 = 1 << 2;
    pub const CONTROL: u8 = 1 << 3;
    pub const USER_DEFINED: u8 = 1 << 4;
    pub const BYTE: u8 = 1 << 5;
    /// Whitespace before the token is dropped when it is cut out of the text.
    pub const LSTRIP: u8 = 1 << 6;
    /// Whitespace after the token is dropped when it is cut out of the text.
    pub const RSTRIP: u8 = 1 << 7;

    pub fn from_token_type(ty: i32) -> u8 {
        match ty {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TokenData {
    pub text: String,
    pub score: f32,
    pub attr: u8,
}

/// BPE merge priorities keyed by the two parts' interned ids, so that a lookup needs no
/// allocation: `rank(left, right)` is the merge's line number in `tokenizer.ggml.merges`.
#[derive(Debug, Default)]
pub(crate) struct MergeRanks {
    part_ids: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl MergeRanks {
    fn new(merges: &[String]) -> MergeRanks {
        let mut m = MergeRanks::default();
        for (rank, line) in merges.iter().enumerate() {
            // Split at the first space after the first character (a part may itself be " "
            // in vocabularies that do not byte-encode); a line without one is ignored.
            let Some(split) = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&line[..split], &line[split + 1..]);
            let l = m.intern(left);
            let r = m.intern(right);
            // The first occurrence wins, as with llama.cpp's map emplace.
            m.ranks.entry((l, r)).or_insert(rank as u32);
        }
        m
    }
    fn intern(&mut self, part: &str) -> u32 {
        let next = self.part_ids.len() as u32;
        *self.part_ids.entry(part.to_owned()).or_insert(next)
    }
    pub(crate) fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let l = *self.part_ids.get(left)?;
        let r = *self.part_ids.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }
}

/// Texts that llama.cpp treats as end-of-generation wherever they appear in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// Texts that llama.cpp takes as the end-of-turn token when `eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// A validated vocabulary.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub kind: VocabKind,
    pub tokens: Vec<TokenData>,
    pub token_to_id: HashMap<String, u32>,
    pub merges: MergeRanks,
    pub pre: Option<PreConfig>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    pub ignore_merges: bool,
    pub eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which they
    /// are cut out of the input text.
    pub special_tokens: Vec<u32>,
}

impl Vocab {
    pub(crate) fn new(spec: VocabSpec) -> Result<Vocab> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(Error::Tokenizer(
                "empty vocabulary (tokenizer.ggml.tokens)".into(),
            ));
        }
        if u32::try_from(n).is_err() {
            return Err(Error::Tokenizer(format!(
                "vocabulary too large: {n} tokens"
            )));
        }
        check_len(
            "tokenizer.ggml.scores",
            spec.scores.as_ref().map(Vec::len),
            n,
        )?;
        check_len(
            "tokenizer.ggml.token_type",
            spec.token_types.as_ref().map(Vec::len),
            n,
        )?;

        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, text) in spec.tokens.into_iter().enumerate() {
            // An empty token text cannot be matched; llama.cpp renames it the same way.
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                text
            };
            if let Some(prev) = token_to_id.insert(text.clone(), i as u32) {
                return Err(Error::Tokenizer(format!(
                    "duplicate token {text:?} in vocabulary (ids {prev} and {i})"
                )));
            }
            let score = spec.scores.as_ref().map_or(0.0, |s| s[i]);
            let attr = spec
                .token_types
                .as_ref()
                .map_or(attr::NORMAL, |t| attr::from_token_type(t[i]));
            tokens.push(TokenData { text, score, attr });
        }

        let (pre, merges) = match spec.kind {
            VocabKind::Bpe => {
                let name = spec.pre.as_deref().unwrap_or("");
                let merges = spec.merges.as_deref().ok_or_else(|| {
                    Error::Tokenizer("BPE vocabulary without tokenizer.ggml.merges".into())
                })?;
                (Some(pre_config(name)?), MergeRanks::new(merges))
            }
            VocabKind::Spm => (None, MergeRanks::default()),
        };

        // llama.cpp's defaults per model kind, then the file's values.
        let (def_bos, def_eos, def_unk) = match spec.kind {
            VocabKind::Spm => (Some(1), Some(2), Some(0)),
            VocabKind::Bpe => (Some(11), Some(11), None),
        };
        let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
        let explicit = |key: &str, id: Option<u32>| -> Result<Option<u32>> {
            match id {
                Some(id) if id as usize >= n => Err(Error::Tokenizer(format!(
                    "tokenizer.ggml.{key} = {id} is outside the vocabulary of {n} tokens"
                ))),
                other => Ok(other),
            }
        };
        let bos = explicit("bos_token_id", spec.bos)?.or(in_range(def_bos));
        let eos = explicit("eos_token_id", spec.eos)?.or(in_range(def_eos));
        let unk = explicit("unknown_token_id", spec.unk)?.or(in_range(def_unk));
        let pad = explicit("padding_token_id", spec.pad)?;
        let mut eot = explicit("eot_token_id", spec.eot)?;
        let mut eom = explicit("eom_token_id", spec.eom)?;

        let (def_add_bos, def_space_prefix, clean_spaces, ignore_merges) = match (spec.kind, &pre) {
            (VocabKind::Spm, _) => (true, true, false, false),
            (VocabKind::Bpe, Some(p)) => (p.add_bos, false, p.clean_spaces, p.ignore_merges),
            (VocabKind::Bpe, None) => (false, false, true, false),
        };
        let add_bos = spec.add_bos.unwrap_or(def_add_bos);
        let add_eos = spec.add_eos.unwrap_or(false);
        let add_space_prefix = spec.add_space_prefix.unwrap_or(def_space_prefix);
        if add_bos && bos.is_none() {
            return Err(Error::Tokenizer(
                "add_bos_token is true, but bos_token_id is not set".into(),
            ));
        }
        if add_eos && eos.is_none() {
            return Err(Error::Tokenizer(
                "add_eos_token is true, but eos_token_id is not set".into(),
            ));
        }

        // Text-based detection, as llama.cpp's loader does: end-of-turn/-message tokens when the
        // file names none, and the end-of-generation set. All of them become control tokens.
        // With several candidates llama.cpp's choice depends on hash-map order; we take the
        // lowest id.
        let find = |texts: &[&str]| -> Vec<u32> {
            let mut ids: Vec<u32> = texts
                .iter()
                .filter_map(|t| token_to_id.get(*t).copied())
                .collect();
            ids.sort_unstable();
            ids
        };
        if eot.is_none() {
            eot = find(EOT_TEXTS).first().copied();
        }
        if eom.is_none() {
            eom = find(&["<|eom_id|>"]).first().copied();
        }
        let mut eog: BTreeSet<u32> = find(EOG_TEXTS).into_iter().collect();
        for id in [eot, eom]
            .into_iter()
            .flatten()
            .chain(eog.iter().copied().collect::<Vec<_>>())
        {
            tokens[id as usize].attr |= attr::CONTROL;
        }
        // gpt-oss: these must always render.
        for id in find(&["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]) {
            tokens[id as usize].attr = attr::USER_DEFINED;
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        let eog_has =
            |eog: &BTreeSet<u32>, t: &str| token_to_id.get(t).is_some_and(|id| eog.contains(id));
        let has_call = eog_has(&eog, "<|call|>") || eog_has(&eog, "<|calls|>");
        if has_call
            && eog_has(&eog, "<|end|>")
            && (eog_has(&eog, "<|return|>") || eog_has(&eog, "<|flush|>"))
        {
            if let Some(&end) = token_to_id.get("<|end|>") {
                eog.remove(&end);
                tokens[end as usize].attr = attr::USER_DEFINED;
            }
        }
        // gemma4 / paddleocr: "</s>" is not an end of generation there.
        if eog_has(&eog, "<|tool_response>") && eog_has(&eog, "</s>") {
            if let Some(&s) = token_to_id.get("</s>") {
                eog.remove(&s);
                tokens[s as usize].attr = attr::NORMAL;
            }
        }

        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                tokens[id as usize].attr & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_tokens.sort_by_key(|&id| std::cmp::Reverse(tokens[id as usize].text.len()));

        // Phi-3: special tokens swallow the whitespace after them, except these three.
        let name = spec.model_name.as_deref().unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                tokens[id as usize].attr |= attr::RSTRIP;
            }
            if let Some(&id) = token_to_id.get("</s>") {
                tokens[id as usize].attr |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&id) = token_to_id.get(t) {
                    tokens[id as usize].attr &= !attr::RSTRIP;
                }
            }
        }

        Ok(Vocab {
            kind: spec.kind,
            tokens,
            token_to_id,
            merges,
            pre,
            bos,
            eos,
            unk,
            pad,
            eot,
            eom,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            ignore_merges,
            eog,
            special_tokens,
        })
    }

    pub(crate) fn text_to_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    pub(crate) fn token(&self, id: u32) -> Option<&TokenData> {
        self.tokens.get(id as usize)
    }
    pub(crate) fn has_attr(&self, id: u32, bits: u8) -> bool {
        self.token(id).is_some_and(|t| t.attr & bits != 0)
    }
}

fn check_len(key: &str, len: Option<usize>, n: usize) -> Result<()> {
    match len {
        Some(len) if len < n => Err(Error::Tokenizer(format!(
            "{key} has {len} entries for {n} tokens"
        ))),
        _ => Ok(()),
    }
}
