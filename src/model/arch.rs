//! The architecture registry: what a family file provides ([`Family`]), the handle the rest of
//! the engine carries ([`Architecture`]) and the view of a file a family reads ([`Source`]).
//! The table of families is [`super::FAMILIES`].

use super::Hparams;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// One model family: how its GGUF files map onto the shared description.
pub struct Family {
    /// The `general.architecture` value, also the prefix of the family's keys.
    pub name: &'static str,
    /// Fills in what the family changes in the description, after the keys every family
    /// shares have been read (shapes, RoPE base and scaling, epsilon) and the rest set to the
    /// llama defaults: RoPE style, activation, per-layer windows, RoPEs and optional tensors.
    pub describe: fn(&Source, &mut Hparams) -> Result<()>,
    /// Fused tensors this family's files may hold instead of the separate ones; split by rows
    /// at load, so the backends see separate weights.
    pub fused: Fused,
    /// The family's own chat format as a Jinja template, for files that carry none
    /// (`tokenizer.chat_template` absent); a file's own template always wins.
    pub chat_template: Option<&'static str>,
}

/// Fused layouts a family's files may use (phi3). Either form of each is then accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused {
    /// `blk.N.attn_qkv.weight`: Q | K | V rows.
    pub qkv: bool,
    /// `blk.N.ffn_up.weight` of 2 n_ff rows, gate | up, and no `ffn_gate`.
    pub gate_up: bool,
}

/// A family of [`super::FAMILIES`], the handle the description carries.
#[derive(Clone, Copy)]
pub struct Architecture(&'static Family);

impl Architecture {
    /// The family named by `general.architecture`, or `UnsupportedArchitecture` (whose message
    /// lists the supported ones).
    pub fn from_name(name: &str) -> Result<Architecture> {
        super::FAMILIES
            .iter()
            .find(|f| f.name == name)
            .map(|f| Architecture(f))
            .ok_or_else(|| Error::UnsupportedArchitecture(name.to_string()))
    }

    /// Every architecture this build runs.
    pub fn all() -> impl Iterator<Item = Architecture> {
        super::FAMILIES.iter().map(|f| Architecture(f))
    }

    /// The `general.architecture` names this build runs, for error messages: "llama, ...".
    pub fn supported_names() -> String {
        Self::all()
            .map(Architecture::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    pub fn family(self) -> &'static Family {
        self.0
    }
}

impl PartialEq for Architecture {
    fn eq(&self, other: &Architecture) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Architecture {}

impl std::fmt::Debug for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Architecture({})", self.0.name)
    }
}

/// A file as a family reads it: its keys under the family prefix, and which tensors exist.
pub struct Source<'a> {
    gguf: &'a GgufFile,
    arch: &'static str,
}

impl<'a> Source<'a> {
    pub fn new(gguf: &'a GgufFile, arch: &'static str) -> Source<'a> {
        Source { gguf, arch }
    }

    pub fn gguf(&self) -> &'a GgufFile {
        self.gguf
    }

    /// The full name of the family's key `k`: `<arch>.k`.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    pub fn u64(&self, k: &str) -> Option<u64> {
        self.gguf.get_u64(&self.key(k))
    }

    pub fn f32(&self, k: &str) -> Option<f32> {
        self.gguf.get_f32(&self.key(k))
    }

    pub fn str(&self, k: &str) -> Option<&'a str> {
        self.gguf.get_str(&self.key(k))
    }

    /// An integer key that must be present and in `1..=max`.
    pub fn required(&self, k: &str, max: usize) -> Result<usize> {
        let full = self.key(k);
        let v = self
            .gguf
            .get_u64(&full)
            .ok_or_else(|| Error::InvalidModel(format!("missing or non-integer {full}")))?;
        if v == 0 || v as u128 > max as u128 {
            return Err(Error::InvalidModel(format!(
                "{full} = {v} is out of range 1..={max}"
            )));
        }
        Ok(v as usize)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }

    /// Whether layer `il` has `blk.<il>.<suffix>` (suffix such as "attn_q.bias").
    pub fn layer_has(&self, il: usize, suffix: &str) -> bool {
        self.has_tensor(&format!("blk.{il}.{suffix}"))
    }

    /// Whether layer `il` has any of the Q, K, V biases. Any one of them makes the layer
    /// biased, so that a file with only some of the three is refused for the missing ones
    /// instead of run as if they were zero.
    pub fn layer_has_qkv_bias(&self, il: usize) -> bool {
        ["attn_q.bias", "attn_k.bias", "attn_v.bias"]
            .iter()
            .any(|b| self.layer_has(il, b))
    }
}
