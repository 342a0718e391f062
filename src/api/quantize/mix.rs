//! The quantization mixes of llama.cpp (`llama_ftype`): which type each tensor of a model gets.
//!
//! The rules are llama.cpp's (`llama-quant.cpp`, b11312), restated as facts: a tensor is
//! quantized only if it is a 2-D or 3-D `*weight` that is not a norm or one of a few small
//! special tensors; the output head (and the token embedding when it doubles as the output)
//! takes Q6_K (Q8_0 when its rows are not whole super-blocks); the `_M` mixes give `attn_v`
//! and `ffn_down` more bits in some layers; a type whose block does not divide a tensor's row
//! length falls back to a 32-element type (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K and
//! Q3_K → Q4_0, IQ4_XS → IQ4_NL), and to F16 when even that does not divide. Layers are
//! counted in llama.cpp's order (tensors sorted by layer, then by name), so the counters match
//! its own.

use crate::quant::GgmlType;
use crate::{Error, Result};

/// A target of the quantizer: llama.cpp's file types (`general.file_type` values, stable
/// numbers from `llama_ftype`) that this engine can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FileType {
    AllF32 = 0,
    MostlyF16 = 1,
    MostlyQ4_0 = 2,
    MostlyQ4_1 = 3,
    MostlyQ8_0 = 7,
    MostlyQ5_0 = 8,
    MostlyQ5_1 = 9,
    MostlyQ2K = 10,
    MostlyQ3KS = 11,
    MostlyQ3KM = 12,
    MostlyQ3KL = 13,
    MostlyQ4KS = 14,
    MostlyQ4KM = 15,
    MostlyQ5KS = 16,
    MostlyQ5KM = 17,
    MostlyQ6K = 18,
    MostlyIq4Nl = 25,
    MostlyIq4Xs = 30,
    MostlyBf16 = 32,
}

/// (file type, name as llama-quantize spells it, the type of most tensors)
const FILE_TYPES: &[(FileType, &str, GgmlType)] = &[
    (FileType::MostlyQ4_0, "Q4_0", GgmlType::Q4_0),
    (FileType::MostlyQ4_1, "Q4_1", GgmlType::Q4_1),
    (FileType::MostlyQ5_0, "Q5_0", GgmlType::Q5_0),
    (FileType::MostlyQ5_1, "Q5_1", GgmlType::Q5_1),
    (FileType::MostlyQ2K, "Q2_K", GgmlType::Q2K),
    (FileType::MostlyQ3KS, "Q3_K_S", GgmlType::Q3K),
    (FileType::MostlyQ3KM, "Q3_K_M", GgmlType::Q3K),
    (FileType::MostlyQ3KL, "Q3_K_L", GgmlType::Q3K),
    (FileType::MostlyQ4KS, "Q4_K_S", GgmlType::Q4K),
    (FileType::MostlyQ4KM, "Q4_K_M", GgmlType::Q4K),
    (FileType::MostlyQ5KS, "Q5_K_S", GgmlType::Q5K),
    (FileType::MostlyQ5KM, "Q5_K_M", GgmlType::Q5K),
    (FileType::MostlyQ6K, "Q6_K", GgmlType::Q6K),
    (FileType::MostlyQ8_0, "Q8_0", GgmlType::Q8_0),
    (FileType::MostlyIq4Nl, "IQ4_NL", GgmlType::Iq4Nl),
    (FileType::MostlyIq4Xs, "IQ4_XS", GgmlType::Iq4Xs),
    (FileType::MostlyF16, "F16", GgmlType::F16),
    (FileType::MostlyBf16, "BF16", GgmlType::Bf16),
    (FileType::AllF32, "F32", GgmlType::F32),
];

/// llama-quantize's short names for the `_M` mixes.
const ALIASES: &[(&str, FileType)] = &[
    ("Q3_K", FileType::MostlyQ3KM),
    ("Q4_K", FileType::MostlyQ4KM),
    ("Q5_K", FileType::MostlyQ5KM),
];

/// llama.cpp targets this engine cannot write, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("IQ3_M", "the IQ3 types are not supported by this engine"),
    ("IQ3_S", "the IQ3 types are not supported by this engine"),
    ("IQ3_XS", "the IQ3 types are not supported by this engine"),
    ("IQ3_XXS", "the IQ3 types are not supported by this engine"),
    ("IQ2_M", "the IQ2 types are not supported by this engine"),
    ("IQ2_S", "the IQ2 types are not supported by this engine"),
    ("IQ2_XS", "the IQ2 types are not supported by this engine"),
    ("IQ2_XXS", "the IQ2 types are not supported by this engine"),
    ("IQ1_M", "the IQ1 types are not supported by this engine"),
    ("IQ1_S", "the IQ1 types are not supported by this engine"),
    (
        "TQ1_0",
        "the ternary types are not supported by this engine",
    ),
    (
        "TQ2_0",
        "the ternary types are not supported by this engine",
    ),
    ("MXFP4_MOE", "MXFP4 is not supported by this engine"),
    (
        "Q2_K_S",
        "Q2_K_S needs an importance matrix, which this quantizer does not take",
    ),
    ("COPY", "COPY is not a quantization (copy the file instead)"),
];

impl FileType {
    /// Every target, in the order `names()` lists them.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|e| e.0)
    }

    /// Parses a target as llama-quantize does: a name in any case (`q4_k_m`, `Q4_K`), or the
    /// `llama_ftype` number. Unknown names are `InvalidArgument`; llama.cpp targets this engine
    /// does not support (IQ3_S, ...) are `Unsupported`, naming the type.
    pub fn parse(name: &str) -> Result<FileType> {
        let upper = name.trim().to_ascii_uppercase();
        if let Some(e) = FILE_TYPES.iter().find(|e| e.1 == upper) {
            return Ok(e.0);
        }
        if let Some(a) = ALIASES.iter().find(|a| a.0 == upper) {
            return Ok(a.1);
        }
        if let Ok(id) = upper.parse::<u32>() {
            if let Some(e) = FILE_TYPES.iter().find(|e| e.0 as u32 == id) {
                return Ok(e.0);
            }
        }
        if let Some(u) = UNSUPPORTED.iter().find(|u| u.0 == upper) {
            return Err(Error::Unsupported(format!(
                "quantization type {}: {}",
                u.0, u.1
            )));
        }
        Err(Error::InvalidArgument(format!(
            "unknown quantization type '{name}' (one of: {})",
            Self::names()
        )))
    }

    /// The names `parse` accepts, for messages and help.
    pub fn names() -> String {
        let mut names: Vec<&str> = FILE_TYPES.iter().map(|e| e.1).collect();
        names.extend(ALIASES.iter().map(|a| a.0));
        names.join(", ")
    }

    /// llama-quantize's name for it.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The `general.file_type` value llama.cpp writes for it.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The type most tensors get (llama.cpp's `llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        self.entry().2
    }

    fn entry(self) -> &'static (FileType, &'static str, GgmlType) {
        FILE_TYPES
            .iter()
            .find(|e| e.0 == self)
            .unwrap_or(&FILE_TYPES[0])
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the rules need to know about the model, from its metadata and tensor names.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// `general.architecture`
    pub arch: String,
    /// `{arch}.block_count` (llama.cpp's n_layer, the ffn_* layer count)
    pub n_layer: usize,
    /// query heads per KV head in layer 0 (0 when unknown)
    pub n_gqa: usize,
    /// `{arch}.expert_count` (0 for dense models)
    pub n_expert: usize,
    /// A 70B-class model (80 layers with grouped KV heads), whose attn_v gets more bits.
    pub is_70b: bool,
    /// How many attention-V-like tensors (attn_v, attn_qkv, attn_kv_b) there are.
    pub n_attention_wv: usize,
    /// No `output.weight`: the token embedding doubles as the output head.
    pub tied_embeddings: bool,
}

impl ModelFacts {
    /// The facts of a model with architecture `arch`, `n_layer` blocks, `n_head` query and
    /// `n_head_kv` KV heads in layer 0 (0: unknown), `n_expert` experts and these tensors.
    pub fn new<'a>(
        arch: &str,
        n_layer: usize,
        n_head: u64,
        n_head_kv: u64,
        n_expert: usize,
        tensor_names: impl Iterator<Item = &'a str> + Clone,
    ) -> ModelFacts {
        let mut names = tensor_names.clone();
        ModelFacts {
            arch: arch.to_string(),
            n_layer,
            n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0) as usize,
            n_expert,
            // llama.cpp sizes 80-layer models with grouped KV heads as 70B.
            is_70b: n_layer == 80 && n_head_kv > 0 && n_head_kv < n_head,
            n_attention_wv: count_attention_wv(tensor_names),
            tied_embeddings: !names.any(|n| n == "output.weight"),
        }
    }
}

/// The type of every tensor (name, GGML-ordered dims, current type) under `file_type`: pairs of
/// (index into `tensors`, type) in llama.cpp's order, which its per-category layer counters
/// depend on. The quantizer and `rocmforge_synth` both plan with it, so a synthetic model gets
/// the types llama-quantize would give a real one of its shape.
pub fn plan(
    tensors: &[(&str, &[u64], GgmlType)],
    facts: &ModelFacts,
    file_type: FileType,
    pure: bool,
) -> Vec<(usize, GgmlType)> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| llama_cpp_order(tensors[a].0, tensors[b].0));
    let mut chooser = TypeChooser::new(file_type, pure, facts);
    order
        .into_iter()
        .map(|i| {
            let (name, dims, current) = tensors[i];
            (i, chooser.choose(name, dims, current))
        })
        .collect()
}

/// The categories llama.cpp's rules tell apart, by tensor name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    let has = |s: &str| name.contains(s);
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if has("attn_qkv.weight") {
        Category::AttnQkv
    } else if has("attn_kv_b.weight") {
        Category::AttnKvB
    } else if has("attn_v.weight") {
        Category::AttnV
    } else if has("attn_k.weight") {
        Category::AttnK
    } else if has("attn_q.weight") {
        Category::AttnQ
    } else if has("attn_output.weight") {
        Category::AttnOutput
    } else if has("ffn_up") {
        Category::FfnUp
    } else if has("ffn_gate") {
        Category::FfnGate
    } else if has("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Counts the attention-V-like tensors among `names` (llama.cpp's n_attention_wv).
pub fn count_attention_wv<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.filter(|n| is_attn_v_like(category(n))).count()
}

/// The layer number of a `blk.N.` tensor name.
pub fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let digits = rest.split('.').next()?;
    digits.parse().ok()
}

/// llama.cpp's processing (and output) order: by layer (non-layer tensors first), then name.
pub fn llama_cpp_order(a: &str, b: &str) -> std::cmp::Ordering {
    let layer = |n: &str| layer_of(n).map_or(-1, |l| l as i64);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// Whether llama.cpp quantizes this tensor at all (else it keeps its type and bytes).
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    // Norms, expert routers and a few small tables stay as they are (llama.cpp's list).
    const KEPT: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    // Positional embeddings and token types (BERT-style) keep their precision too.
    if name == "position_embd.weight" || name == "token_types.weight" {
        return false;
    }
    !KEPT.iter().any(|k| name.contains(k))
}

/// Chooses tensor types one by one, in llama.cpp's order (its per-category layer counters).
pub struct TypeChooser<'a> {
    ftype: FileType,
    pure: bool,
    facts: &'a ModelFacts,
    i_attention_wv: usize,
    i_ffn_down: usize,
}

impl<'a> TypeChooser<'a> {
    pub fn new(ftype: FileType, pure: bool, facts: &'a ModelFacts) -> Self {
        TypeChooser {
            ftype,
            pure,
            facts,
            i_attention_wv: 0,
            i_ffn_down: 0,
        }
    }

    /// The type of tensor `name` (dims GGML-ordered: `dims[0]` is the row length) whose file
    /// type is `current`: `current` itself when llama.cpp would not quantize it.
    pub fn choose(&mut self, name: &str, dims: &[u64], current: GgmlType) -> GgmlType {
        if !allows_quantization(name, dims.len()) {
            return current;
        }
        let default = self.ftype.default_type();
        // Plain targets (F32, F16, BF16) apply to every quantizable tensor as they are.
        if default.block_elems() == 1 {
            return default;
        }
        let cat = category(name);
        let mut ty = default;
        if !self.pure {
            ty = self.mix_type(name, dims, cat, default);
        }
        fallback(dims[0], ty)
    }

    /// llama.cpp's per-category choices for the mixes this engine writes.
    fn mix_type(&mut self, name: &str, dims: &[u64], cat: Category, default: GgmlType) -> GgmlType {
        use FileType as F;
        use GgmlType as T;
        let f = self.ftype;
        let facts = self.facts;
        let falcon = facts.arch == "falcon";
        // The first and last eighth of the layers and every third one between (the
        // subtraction runs only when i >= n / 8).
        let use_more_bits =
            |i: usize, n: usize| i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        let mut ty = default;
        if cat == Category::Output || (facts.tied_embeddings && cat == Category::TokenEmbd) {
            if falcon || !dims[0].is_multiple_of(default.block_elems() as u64) {
                ty = T::Q8_0;
            } else if default != T::Q8_0 {
                ty = T::Q6K;
            }
        } else if cat == Category::TokenEmbd {
            // (the IQ and ternary mixes change it; none of ours do)
        } else if is_attn_v_like(cat) {
            let i = self.i_attention_wv;
            if f == F::MostlyQ2K {
                ty = if facts.n_gqa >= 4 { T::Q4K } else { T::Q3K };
            } else if f == F::MostlyQ3KM {
                ty = if i < 2 { T::Q5K } else { T::Q4K };
            } else if f == F::MostlyQ3KL
                || ((f == F::MostlyIq4Nl || f == F::MostlyIq4Xs) && facts.n_gqa >= 4)
            {
                ty = T::Q5K;
            } else if (f == F::MostlyQ4KM || f == F::MostlyQ5KM)
                && use_more_bits(i, facts.n_attention_wv)
            {
                ty = T::Q6K;
            } else if f == F::MostlyQ4KS && i < 4 {
                ty = T::Q5K;
            }
            if facts.is_70b && (ty == T::Q3K || ty == T::Q4K) {
                ty = T::Q5K;
            }
            if facts.n_expert == 8 {
                ty = T::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttnK {
            if facts.n_expert == 8 {
                ty = T::Q8_0;
            }
        } else if cat == Category::FfnDown {
            // Dense models count ffn_down tensors; MoE models read the layer from the name
            // (their experts' tensors are not in layer order).
            let mut i = self.i_ffn_down;
            if facts.n_expert > 1 {
                i = layer_of(name).unwrap_or(i);
            }
            let n = facts.n_layer;
            if f == F::MostlyQ2K {
                ty = T::Q3K;
            } else if f == F::MostlyQ3KM {
                ty = if i < n / 16 {
                    T::Q5K
                } else if !falcon || use_more_bits(i, n) {
                    T::Q4K
                } else {
                    T::Q3K
                };
            } else if f == F::MostlyQ3KL {
                ty = if falcon { T::Q4K } else { T::Q5K };
            } else if f == F::MostlyQ4KM {
                if falcon {
                    ty = if i < n / 16 {
                        T::Q6K
                    } else if use_more_bits(i, n) {
                        T::Q5K
                    } else {
                        T::Q4K
                    };
                } else if use_more_bits(i, n) {
                    ty = T::Q6K;
                }
            } else if i < n / 8 && (f == F::MostlyIq4Nl || f == F::MostlyIq4Xs) {
                // (llama.cpp: only without an importance matrix, which we never have)
                ty = T::Q5K;
            } else if f == F::MostlyQ5KM && use_more_bits(i, n) {
                ty = T::Q6K;
            } else if f == F::MostlyQ4KS && !falcon && i < n / 8 {
                ty = T::Q5K;
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttnOutput {
            if !falcon {
                if facts.n_expert == 8 {
                    if matches!(f, F::MostlyQ2K | F::MostlyQ3KS | F::MostlyQ3KM)
                        || matches!(f, F::MostlyQ4KS | F::MostlyQ4KM)
                        || matches!(f, F::MostlyIq4Nl | F::MostlyIq4Xs)
                    {
                        ty = T::Q5K;
                    }
                } else if f == F::MostlyQ2K {
                    ty = T::Q3K;
                } else if f == F::MostlyQ3KM {
                    ty = T::Q4K;
                } else if f == F::MostlyQ3KL {
                    ty = T::Q5K;
                }
            } else if f == F::MostlyQ3KL {
                ty = T::Q4K;
            }
        } else if cat == Category::AttnQkv {
            if f == F::MostlyQ3KM || f == F::MostlyQ3KL {
                ty = T::Q4K;
            } else if f == F::MostlyQ4KM {
                ty = T::Q5K;
            } else if f == F::MostlyQ5KM {
                ty = T::Q6K;
            }
        }
        ty
    }
}

/// llama.cpp's fallback when `ty`'s block does not divide the row length `cols`.
pub fn fallback(cols: u64, ty: GgmlType) -> GgmlType {
    if cols.is_multiple_of(ty.block_elems() as u64) {
        return ty;
    }
    let to = match ty {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        GgmlType::Iq4Xs => GgmlType::Iq4Nl,
        other => other,
    };
    if cols.is_multiple_of(to.block_elems() as u64) {
        to
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n_layer: usize, tied: bool) -> ModelFacts {
        ModelFacts {
            arch: "llama".into(),
            n_layer,
            n_gqa: 4,
            n_expert: 0,
            is_70b: false,
            n_attention_wv: n_layer,
            tied_embeddings: tied,
        }
    }

    #[test]
    fn names_parse_like_llama_quantize() {
        assert_eq!(FileType::parse("q4_k_m").unwrap(), FileType::MostlyQ4KM);
        assert_eq!(FileType::parse("Q4_K").unwrap(), FileType::MostlyQ4KM);
        assert_eq!(FileType::parse("15").unwrap(), FileType::MostlyQ4KM);
        assert_eq!(FileType::parse("bf16").unwrap().id(), 32);
        assert_eq!(FileType::parse("iq4_xs").unwrap().id(), 30);
        assert_eq!(FileType::parse("25").unwrap(), FileType::MostlyIq4Nl);
        let e = FileType::parse("IQ3_S").unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("IQ3_S"), "{e}");
        let e = FileType::parse("Q9_X").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        for f in FileType::all() {
            assert_eq!(FileType::parse(f.name()).unwrap(), f);
            assert_eq!(FileType::parse(&f.id().to_string()).unwrap(), f);
        }
    }

    #[test]
    fn q4_k_m_gives_more_bits_to_attn_v_and_ffn_down_in_llama_cpps_layers() {
        // 32 layers: use_more_bits is layers 0..4, 28..32 and every third from 6.
        let facts = facts(32, false);
        let mut c = TypeChooser::new(FileType::MostlyQ4KM, false, &facts);
        let mut names: Vec<String> = (0..32)
            .flat_map(|i| {
                ["attn_norm", "attn_q", "attn_v", "ffn_down"].map(|k| format!("blk.{i}.{k}.weight"))
            })
            .collect();
        names.extend(["output.weight".into(), "token_embd.weight".into()]);
        names.sort_by(|a, b| llama_cpp_order(a, b));
        let mut bumped = Vec::new();
        for n in &names {
            let dims: &[u64] = if n.contains("norm") {
                &[4096]
            } else {
                &[4096, 4096]
            };
            let ty = c.choose(n, dims, GgmlType::F16);
            match n.as_str() {
                "output.weight" => assert_eq!(ty, GgmlType::Q6K),
                "token_embd.weight" => assert_eq!(ty, GgmlType::Q4K),
                _ if n.contains("norm") => assert_eq!(ty, GgmlType::F16),
                _ if n.contains("attn_q") => assert_eq!(ty, GgmlType::Q4K),
                _ if ty == GgmlType::Q6K => bumped.push(layer_of(n).unwrap()),
                _ => assert_eq!(ty, GgmlType::Q4K, "{n}"),
            }
        }
        // (attn_v and ffn_down of each such layer)
        let want: Vec<usize> = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
            .into_iter()
            .flat_map(|i| [i, i])
            .collect();
        assert_eq!(bumped, want);
    }

    #[test]
    fn rows_that_are_not_whole_super_blocks_fall_back() {
        assert_eq!(fallback(576, GgmlType::Q4K), GgmlType::Q5_0);
        assert_eq!(fallback(576, GgmlType::Q5K), GgmlType::Q5_1);
        assert_eq!(fallback(576, GgmlType::Q6K), GgmlType::Q8_0);
        assert_eq!(fallback(576, GgmlType::Q3K), GgmlType::Q4_0);
        assert_eq!(fallback(100, GgmlType::Q4K), GgmlType::F16);
        assert_eq!(fallback(100, GgmlType::Q8_0), GgmlType::F16);
        assert_eq!(fallback(512, GgmlType::Q4K), GgmlType::Q4K);
        assert_eq!(fallback(576, GgmlType::Iq4Xs), GgmlType::Iq4Nl);
        assert_eq!(fallback(100, GgmlType::Iq4Xs), GgmlType::F16);
        // A tied embedding of 576 columns is the output head: Q8_0, not Q6_K's fallback.
        let facts = facts(30, true);
        let mut c = TypeChooser::new(FileType::MostlyQ4KM, false, &facts);
        assert_eq!(
            c.choose("token_embd.weight", &[576, 49152], GgmlType::F32),
            GgmlType::Q8_0
        );
        // Pure: one type for every matrix, still with the fallback; 1-D tensors kept.
        let mut c = TypeChooser::new(FileType::MostlyQ4KM, true, &facts);
        assert_eq!(
            c.choose("output.weight", &[512, 10], GgmlType::F32),
            GgmlType::Q4K
        );
        assert_eq!(
            c.choose("blk.0.attn_v.weight", &[576, 10], GgmlType::F32),
            GgmlType::Q5_0
        );
        assert_eq!(
            c.choose("blk.0.attn_norm.weight", &[576], GgmlType::F32),
            GgmlType::F32
        );
    }
}
