//! `rocmforge_synth`: writes GGUF models of real shapes with random weights, for GPU tests and
//! benchmarks on machines where only small files can be carried.
//!
//! rocmforge_synth --shape SHAPE --type TYPE --vocab VOCAB.gguf --out OUT.gguf [--seed N]
//!                 [--layers N]
//!   SHAPE: llama3-8b | llama2-7b | smollm2-135m | tiny | llama3-mini
//!   TYPE:  q4_0 | q4_1 | q5_0 | q5_1 | q8_0 | q2_k | q3_k | q4_k | q5_k | q6_k | iq4_nl | iq4_xs |
//!          f16 | f32 (every matrix,
//!          embedding and output included), or q4_k_m: llama.cpp's Q4_K_M choice of types
//!          (Q6_K for the output, and for attn_v / ffn_down in a third of the layers and the
//!          first and last eighth, Q4_K elsewhere). As llama.cpp does, a K-quant matrix whose
//!          rows are not whole super-blocks of 256 falls back to Q5_0 (Q4_K), Q5_1 (Q5_K) or
//!          Q8_0 (Q6_K; Q2_K and Q3_K fall back to Q4_0 here; IQ4_XS to IQ4_NL). K-quant, IQ4 and
//!          Q5 weights are noise
//!          quantized by our test quantizers; Q2_K and Q3_K are random bytes under scales
//!          chosen for the usual spread (as before they had quantizers, so files of the same
//!          arguments keep their bytes).
//! rocmforge_synth --extract-vocab MODEL.gguf --out VOCAB.gguf [--pre NAME]
//!   keeps only the tokenizer metadata of MODEL (a few MB) and its `general.architecture` (so
//!   llama.cpp loads it as a vocabulary-only file), to carry a real vocabulary; `--pre`
//!   replaces its `tokenizer.ggml.pre` (one vocabulary under another pre-tokenizer name, to
//!   compare a name's tokenization with llama.cpp's).
//!
//! Weights are uniform noise with standard deviation about 0.02 (the usual initialisation
//! scale, which keeps activations in a sane range); norms are 1. Rows are generated from a seed
//! and their index, so the same arguments always write the same file.

use half::f16;
use rocmforge::gguf::{GgufFile, GgufWriter, Value};
use rocmforge::quant::GgmlType;
use std::path::Path;
use std::process::ExitCode;

/// Standard deviation of every weight matrix.
const WEIGHT_STD: f32 = 0.02;

struct Shape {
    n_layer: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    rope_base: f32,
    n_ctx_train: usize,
    tied_output: bool,
}

fn shape(name: &str) -> Option<Shape> {
    let s = |n_layer, n_embd, n_ff, n_head, n_head_kv, rope_base, n_ctx_train, tied_output| Shape {
        n_layer,
        n_embd,
        n_ff,
        n_head,
        n_head_kv,
        rope_base,
        n_ctx_train,
        tied_output,
    };
    match name {
        "llama3-8b" => Some(s(32, 4096, 14336, 32, 8, 500000.0, 8192, false)),
        "llama2-7b" => Some(s(32, 4096, 11008, 32, 32, 10000.0, 4096, false)),
        "smollm2-135m" => Some(s(30, 576, 1536, 9, 3, 100000.0, 8192, true)),
        "tiny" => Some(s(2, 128, 256, 4, 2, 10000.0, 2048, false)),
        // Llama 3's head size (128) and grouping (4 query heads per KV head), small
        "llama3-mini" => Some(s(2, 1024, 2048, 8, 2, 500000.0, 8192, false)),
        _ => None,
    }
}

fn ggml_type(name: &str) -> Option<GgmlType> {
    match name.to_ascii_lowercase().as_str() {
        "q4_0" => Some(GgmlType::Q4_0),
        "q4_1" => Some(GgmlType::Q4_1),
        "q5_0" => Some(GgmlType::Q5_0),
        "q5_1" => Some(GgmlType::Q5_1),
        "q8_0" => Some(GgmlType::Q8_0),
        "q2_k" => Some(GgmlType::Q2K),
        "q3_k" => Some(GgmlType::Q3K),
        "q4_k" => Some(GgmlType::Q4K),
        "q5_k" => Some(GgmlType::Q5K),
        "q6_k" => Some(GgmlType::Q6K),
        "iq4_nl" => Some(GgmlType::Iq4Nl),
        "iq4_xs" => Some(GgmlType::Iq4Xs),
        "f16" => Some(GgmlType::F16),
        "f32" => Some(GgmlType::F32),
        _ => None,
    }
}

/// splitmix64: a fast, well-mixed generator; one per row, seeded from (seed, tensor, row).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, tensor: u64, row: u64) -> Rng {
        let mut r = Rng(seed
            ^ tensor.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes one row of random weights of type `ty` into `out` (its exact byte size).
fn fill_row(ty: GgmlType, rng: &mut Rng, out: &mut [u8]) {
    // Per-block scales vary by +-25% so kernels see different scales side by side.
    let jitter = |rng: &mut Rng| 0.75 + 0.5 * rng.unit();
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => {
            let block = ty.block_bytes();
            for b in out.chunks_mut(block) {
                rng.fill(b);
                let (d, rest) = b.split_at_mut(2);
                match ty {
                    // (q - 8) uniform over -8..7: rms 4.64
                    GgmlType::Q4_0 => d.copy_from_slice(
                        &f16::from_f32(WEIGHT_STD / 4.64 * jitter(rng)).to_le_bytes(),
                    ),
                    // q * d + m with m = -7.5 d: zero mean, rms 4.61
                    GgmlType::Q4_1 => {
                        let scale = WEIGHT_STD / 4.61 * jitter(rng);
                        d.copy_from_slice(&f16::from_f32(scale).to_le_bytes());
                        rest[..2].copy_from_slice(&f16::from_f32(-7.5 * scale).to_le_bytes());
                    }
                    // q uniform over -127..127 (a GGML quantizer never writes -128): rms 73.6
                    _ => {
                        for q in rest.iter_mut().filter(|q| **q == 0x80) {
                            *q = 0x81;
                        }
                        let scale = WEIGHT_STD / 73.6 * jitter(rng);
                        d.copy_from_slice(&f16::from_f32(scale).to_le_bytes());
                    }
                }
            }
        }
        GgmlType::Q5_0
        | GgmlType::Q5_1
        | GgmlType::Q4K
        | GgmlType::Q5K
        | GgmlType::Q6K
        | GgmlType::Iq4Nl
        | GgmlType::Iq4Xs => {
            // Noise of the same spread, each block of 32 scaled by its own jitter, through the
            // registry's quantizer (ggml_type only names types that have one).
            let n = out.len() / ty.block_bytes() * ty.block_elems();
            let mut x = vec![0f32; n];
            for block in x.chunks_mut(32) {
                let scale = WEIGHT_STD * 3f32.sqrt() * jitter(rng);
                for v in block {
                    *v = (rng.unit() * 2.0 - 1.0) * scale;
                }
            }
            let quantize = ty.format().and_then(|f| f.quantize);
            if let Some(quantize) = quantize {
                quantize(&x, out);
            }
        }
        GgmlType::Q2K | GgmlType::Q3K => {
            // Random quants, scales and masks (every byte pattern is a valid block) under a
            // super-block factor that gives about WEIGHT_STD: Q2_K's weights (d sc q - dmin m,
            // sc and m uniform over 0..=15, q over 0..=3) have mean 11.25 d - 7.5 dmin (zero with
            // dmin = 1.5 d) and rms about 14 d; Q3_K's (d (sc - 32) q, q over -4..=3) about 42 d.
            let block = ty.block_bytes();
            for b in out.chunks_mut(block) {
                rng.fill(b);
                if ty == GgmlType::Q2K {
                    let d = WEIGHT_STD / 14.0 * jitter(rng);
                    b[80..82].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                    b[82..84].copy_from_slice(&f16::from_f32(1.5 * d).to_le_bytes());
                } else {
                    let d = WEIGHT_STD / 42.0 * jitter(rng);
                    b[108..110].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                }
            }
        }
        GgmlType::F16 => {
            for v in out.chunks_mut(2) {
                let x = (rng.unit() * 2.0 - 1.0) * WEIGHT_STD * 3f32.sqrt();
                v.copy_from_slice(&f16::from_f32(x).to_le_bytes());
            }
        }
        _ => {
            for v in out.chunks_mut(4) {
                let x = (rng.unit() * 2.0 - 1.0) * WEIGHT_STD * 3f32.sqrt();
                v.copy_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// What the `--type` argument asks for: one type for every matrix, or a llama.cpp mix.
#[derive(Clone, Copy)]
enum Recipe {
    Single(GgmlType),
    Q4KM,
}

impl Recipe {
    fn parse(name: &str) -> Option<Recipe> {
        if name.eq_ignore_ascii_case("q4_k_m") {
            return Some(Recipe::Q4KM);
        }
        ggml_type(name).map(Recipe::Single)
    }

    /// The type of matrix `kind` (its GGUF name without `blk.N.` and `.weight`) of layer
    /// `layer` (None: embedding, output) with `cols` columns.
    fn matrix_type(
        self,
        kind: &str,
        layer: Option<usize>,
        n_layer: usize,
        cols: usize,
    ) -> GgmlType {
        let ty = match self {
            Recipe::Single(ty) => ty,
            Recipe::Q4KM => {
                // llama.cpp's use_more_bits: the first and last eighth of the layers and
                // every third one between.
                let more_bits = |i: usize| {
                    // (short-circuit: the subtraction runs only when i >= n_layer / 8)
                    i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2
                };
                match (kind, layer) {
                    ("output", _) => GgmlType::Q6K,
                    ("attn_v" | "ffn_down", Some(i)) if more_bits(i) => GgmlType::Q6K,
                    _ => GgmlType::Q4K,
                }
            }
        };
        if ty.block_elems() == 256 && !cols.is_multiple_of(256) {
            return match ty {
                GgmlType::Q4K => GgmlType::Q5_0,
                GgmlType::Q5K => GgmlType::Q5_1,
                GgmlType::Q6K => GgmlType::Q8_0,
                GgmlType::Iq4Xs => GgmlType::Iq4Nl,
                _ => GgmlType::Q4_0,
            };
        }
        ty
    }
}

fn add_matrix(
    w: &mut GgufWriter,
    name: &str,
    rows: usize,
    cols: usize,
    ty: GgmlType,
    seed: u64,
    id: u64,
) -> Result<(), String> {
    let row_bytes = ty
        .row_bytes(cols as u64)
        .ok_or_else(|| format!("{name}: {cols} columns are not whole {ty} blocks"))?
        as usize;
    w.add_tensor_generated(name, &[cols as u64, rows as u64], ty, move |row0, buf| {
        for (i, row) in buf.chunks_mut(row_bytes).enumerate() {
            fill_row(ty, &mut Rng::new(seed, id, row0 + i as u64), row);
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn add_ones(w: &mut GgufWriter, name: &str, len: usize) -> Result<(), String> {
    let data: Vec<u8> = (0..len).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    w.add_tensor(name, &[len as u64], GgmlType::F32, data)
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn tokenizer_kvs(vocab: &GgufFile) -> Vec<(String, Value)> {
    vocab
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .cloned()
        .collect()
}

fn synthesize(
    shape_name: &str,
    ty_name: &str,
    recipe: Recipe,
    vocab_path: &Path,
    out: &Path,
    seed: u64,
    layers: Option<usize>,
) -> Result<(), String> {
    let mut sh = shape(shape_name).ok_or_else(|| format!("unknown shape '{shape_name}'"))?;
    if let Some(n) = layers {
        sh.n_layer = n;
    }
    let vocab = GgufFile::open(vocab_path).map_err(|e| e.to_string())?;
    let n_vocab = vocab
        .get_str_array("tokenizer.ggml.tokens")
        .map(|t| t.len())
        .ok_or_else(|| format!("{}: no tokenizer.ggml.tokens", vocab_path.display()))?;
    let head_dim = sh.n_embd / sh.n_head;
    let mut w = GgufWriter::new();
    let kv = |w: &mut GgufWriter, k: &str, v: Value| {
        w.add_kv(k, v).map(|_| ()).map_err(|e| e.to_string())
    };
    kv(
        &mut w,
        "general.architecture",
        Value::String("llama".into()),
    )?;
    kv(
        &mut w,
        "general.name",
        Value::String(format!("synthetic {shape_name} {ty_name}")),
    )?;
    kv(&mut w, "llama.block_count", Value::U32(sh.n_layer as u32))?;
    kv(
        &mut w,
        "llama.context_length",
        Value::U32(sh.n_ctx_train as u32),
    )?;
    kv(
        &mut w,
        "llama.embedding_length",
        Value::U32(sh.n_embd as u32),
    )?;
    kv(
        &mut w,
        "llama.feed_forward_length",
        Value::U32(sh.n_ff as u32),
    )?;
    kv(
        &mut w,
        "llama.attention.head_count",
        Value::U32(sh.n_head as u32),
    )?;
    kv(
        &mut w,
        "llama.attention.head_count_kv",
        Value::U32(sh.n_head_kv as u32),
    )?;
    kv(&mut w, "llama.rope.freq_base", Value::F32(sh.rope_base))?;
    kv(
        &mut w,
        "llama.rope.dimension_count",
        Value::U32(head_dim as u32),
    )?;
    kv(
        &mut w,
        "llama.attention.layer_norm_rms_epsilon",
        Value::F32(1e-5),
    )?;
    kv(&mut w, "llama.vocab_size", Value::U32(n_vocab as u32))?;
    for (k, v) in tokenizer_kvs(&vocab) {
        kv(&mut w, &k, v)?;
    }
    let (d, ff, q, kvd) = (
        sh.n_embd,
        sh.n_ff,
        sh.n_head * head_dim,
        sh.n_head_kv * head_dim,
    );
    let mut id = 0u64;
    let mut next = || {
        id += 1;
        id
    };
    let n_layer = sh.n_layer;
    let mut matrix = |w: &mut GgufWriter, kind: &str, layer: Option<usize>, rows, cols| {
        let ty = recipe.matrix_type(kind, layer, n_layer, cols);
        let name = match layer {
            Some(i) => format!("blk.{i}.{kind}.weight"),
            None => format!("{kind}.weight"),
        };
        add_matrix(w, &name, rows, cols, ty, seed, next())
    };
    matrix(&mut w, "token_embd", None, n_vocab, d)?;
    for i in 0..sh.n_layer {
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        let l = Some(i);
        add_ones(&mut w, &name("attn_norm"), d)?;
        matrix(&mut w, "attn_q", l, q, d)?;
        matrix(&mut w, "attn_k", l, kvd, d)?;
        matrix(&mut w, "attn_v", l, kvd, d)?;
        matrix(&mut w, "attn_output", l, d, q)?;
        add_ones(&mut w, &name("ffn_norm"), d)?;
        matrix(&mut w, "ffn_gate", l, ff, d)?;
        matrix(&mut w, "ffn_up", l, ff, d)?;
        matrix(&mut w, "ffn_down", l, d, ff)?;
    }
    add_ones(&mut w, "output_norm.weight", d)?;
    if !sh.tied_output {
        matrix(&mut w, "output", None, n_vocab, d)?;
    }
    w.write_to(out).map_err(|e| e.to_string())
}

fn extract_vocab(model: &Path, out: &Path, pre: Option<&str>) -> Result<(), String> {
    let f = GgufFile::open(model).map_err(|e| e.to_string())?;
    let mut w = GgufWriter::new();
    if let Some(arch) = f.get_str("general.architecture") {
        w.add_kv("general.architecture", Value::String(arch.into()))
            .map_err(|e| e.to_string())?;
    }
    let mut kvs = tokenizer_kvs(&f);
    if let Some(pre) = pre {
        kvs.retain(|(k, _)| k != "tokenizer.ggml.pre");
        kvs.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    }
    for (k, v) in kvs {
        w.add_kv(k, v).map_err(|e| e.to_string())?;
    }
    w.write_to(out).map_err(|e| e.to_string())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let out =
        get("--out").ok_or("missing --out (see the usage at the top of rocmforge_synth.rs)")?;
    if let Some(model) = get("--extract-vocab") {
        let pre = get("--pre");
        return extract_vocab(Path::new(&model), Path::new(&out), pre.as_deref());
    }
    let shape_name = get("--shape").ok_or("missing --shape")?;
    let ty_name = get("--type").ok_or("missing --type")?;
    let recipe =
        Recipe::parse(&ty_name).ok_or_else(|| format!("unsupported --type '{ty_name}'"))?;
    let vocab = get("--vocab").ok_or("missing --vocab")?;
    let seed = match get("--seed") {
        Some(s) => s.parse().map_err(|_| format!("bad --seed '{s}'"))?,
        None => 1,
    };
    let layers = match get("--layers") {
        Some(s) => Some(s.parse().map_err(|_| format!("bad --layers '{s}'"))?),
        None => None,
    };
    synthesize(
        &shape_name,
        &ty_name,
        recipe,
        Path::new(&vocab),
        Path::new(&out),
        seed,
        layers,
    )
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocmforge_synth: {e}");
            ExitCode::FAILURE
        }
    }
}
