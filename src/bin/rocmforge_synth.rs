//! `rocmforge_synth`: writes GGUF models of real shapes with random weights, for GPU tests and
//! benchmarks on machines where only small files can be carried.
//!
//! rocmforge_synth --shape SHAPE (--type TYPE | --mix MIX) --vocab VOCAB.gguf --out OUT.gguf
//!                 [--seed N] [--layers N] [--threads N] [--distinct-rows N]
//!   SHAPE: llama3-8b | llama2-7b | smollm2-135m | tiny | tiny16 | llama3-mini (architecture
//!          `llama`) | qwen2.5-7b | qwen2-mini (architecture `qwen2`: Q/K/V biases, NEOX
//!          RoPE; give them a Qwen2 vocabulary, e.g. one extracted from
//!          .cache/models/ggml-vocab-qwen2.gguf)
//!   TYPE:  q4_0 | q4_1 | q5_0 | q5_1 | q8_0 | q2_k | q3_k | q4_k | q5_k | q6_k | iq4_nl |
//!          iq4_xs | f16 | f32: that
//!          type for every matrix, embedding and output included (llama-quantize's --pure);
//!          a mix name such as q4_k_m is taken as --mix.
//!   MIX:   a llama.cpp file type as llama-quantize names it (Q2_K, Q3_K_S, Q3_K_M, Q3_K_L,
//!          Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS,
//!          F16, BF16, F32): each tensor gets the type llama-quantize would give it in a model of this
//!          shape, chosen by the quantizer's own rules (src/api/quantize/mix.rs), fallbacks for
//!          rows that are not whole blocks included.
//! rocmforge_synth --extract-vocab MODEL.gguf --out VOCAB.gguf [--pre NAME]
//!   keeps only the tokenizer metadata of MODEL (a few MB) and its `general.architecture` (so
//!   llama.cpp loads it as a vocabulary-only file), to carry a real vocabulary; `--pre`
//!   replaces its `tokenizer.ggml.pre` (one vocabulary under another pre-tokenizer name, to
//!   compare a name's tokenization with llama.cpp's).
//!
//! Weights are uniform noise with standard deviation about 0.02 (the usual initialisation
//! scale, which keeps activations in a sane range), each block of 32 scaled by its own factor
//! within +-25% so kernels see different scales side by side, then encoded by the engine's
//! quantizer of the tensor's type (the formats of src/quant/formats); norms are 1. Rows are
//! generated from a seed and their index, on all cores (`--threads`), so the same arguments
//! always write the same file whatever the thread count.
//!
//! `--distinct-rows N`: each matrix quantizes only its first N rows and repeats them (row r is
//! row r mod N), for benchmark files of 7B-8B shapes: the K-quant quantizers take about 100 ns
//! an element, so a Qwen2.5-7B Q4_K_M file took more than 3 minutes of 8 cores of the GPU
//! machine, against seconds so. Speed does not depend on the values; the logits repeat too
//! (ties), so such files are for timing, not for comparing greedy text.

use rocmforge::api::quantize::mix::{self, ModelFacts};
use rocmforge::api::FileType;
use rocmforge::gguf::{GgufFile, GgufWriter, Value};
use rocmforge::quant::GgmlType;
use std::path::Path;
use std::process::ExitCode;

/// Standard deviation of every weight matrix.
const WEIGHT_STD: f32 = 0.02;

struct Shape {
    /// `general.architecture`: `llama`, or `qwen2` (with Q/K/V biases).
    arch: &'static str,
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
        arch: "llama",
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
        // The shape of the quantizer's mix fixture (tests/fixtures/quantize/tiny_types.txt):
        // whole super-blocks, 16 layers (every use_more_bits pattern), 4 query heads per KV head.
        "tiny16" => Some(s(16, 256, 512, 4, 1, 10000.0, 2048, false)),
        // Llama 3's head size (128) and grouping (4 query heads per KV head), small
        "llama3-mini" => Some(s(2, 1024, 2048, 8, 2, 500000.0, 8192, false)),
        "qwen2.5-7b" => Some(Shape {
            arch: "qwen2",
            ..s(28, 3584, 18944, 28, 4, 1_000_000.0, 32768, false)
        }),
        // Qwen2.5-7B's head size (128) and grouping (7 query heads per KV head), small.
        "qwen2-mini" => Some(Shape {
            arch: "qwen2",
            ..s(2, 896, 2048, 7, 1, 1_000_000.0, 32768, false)
        }),
        _ => None,
    }
}

/// The single types `--type` takes, each written for every matrix.
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
}

/// One row of noise: uniform values of standard deviation WEIGHT_STD, each block of 32 scaled
/// by a factor in 0.75..1.25.
fn noise_row(rng: &mut Rng, x: &mut [f32]) {
    for block in x.chunks_mut(32) {
        // uniform over [-a, a] has standard deviation a / sqrt(3)
        let scale = WEIGHT_STD * 3f32.sqrt() * (0.75 + 0.5 * rng.unit());
        for v in block {
            *v = (rng.unit() * 2.0 - 1.0) * scale;
        }
    }
}

/// What `--type` or `--mix` asks for: a llama.cpp file type, pure (its main type for every
/// matrix) or with the mix's per-tensor choices.
#[derive(Clone, Copy)]
struct Recipe {
    file_type: FileType,
    pure: bool,
}

impl Recipe {
    /// `--type NAME`: a single type (pure), or a mix name that is not one (`q4_k_m`).
    fn from_type(name: &str) -> Result<Recipe, String> {
        let Some(ty) = ggml_type(name) else {
            return Recipe::from_mix(name);
        };
        // Pure, the file type only names the main type: any whose main type it is.
        let file_type = (FileType::all().find(|f| f.default_type() == ty))
            .ok_or_else(|| format!("no llama.cpp file type writes {ty}"))?;
        Ok(Recipe {
            file_type,
            pure: true,
        })
    }

    fn from_mix(name: &str) -> Result<Recipe, String> {
        let file_type = FileType::parse(name).map_err(|e| e.to_string())?;
        Ok(Recipe {
            file_type,
            pure: false,
        })
    }
}

/// One tensor of the file: a matrix of noise, or a vector of ones (norms, and Q/K/V biases).
struct Tensor {
    name: String,
    /// GGML order: dims[0] is the row length.
    dims: Vec<u64>,
    matrix: bool,
}

/// Adds a matrix of noise as `ty`: each chunk's rows are split over `threads` threads, each row
/// made from (seed, id, row) alone, so the bytes do not depend on the thread count.
/// `distinct`: the rows quantized before they repeat (None: every row its own).
fn add_matrix(
    w: &mut GgufWriter,
    t: &Tensor,
    ty: GgmlType,
    seed: u64,
    id: u64,
    threads: usize,
    distinct: Option<u64>,
) -> Result<(), String> {
    let cols = t.dims[0] as usize;
    let row_bytes = ty
        .row_bytes(cols as u64)
        .ok_or_else(|| format!("{}: {cols} columns are not whole {ty} blocks", t.name))?
        as usize;
    let encode = (ty.format().and_then(|f| f.quantize))
        .ok_or_else(|| format!("{}: no quantizer writes {ty}", t.name))?;
    // Rows first..first + out.len() / row_bytes, each made from (seed, id, row) alone.
    let make_rows = move |first: u64, buf: &mut [u8]| {
        let rows = buf.len() / row_bytes;
        let per_thread = rows.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (i, part) in buf.chunks_mut(per_thread * row_bytes).enumerate() {
                s.spawn(move || {
                    // (cols,) one row in f32
                    let mut x = vec![0f32; cols];
                    let first = first + (i * per_thread) as u64;
                    for (r, out) in part.chunks_mut(row_bytes).enumerate() {
                        noise_row(&mut Rng::new(seed, id, first + r as u64), &mut x);
                        encode(&x, out);
                    }
                });
            }
        });
    };
    let n_rows: u64 = t.dims[1..].iter().product();
    let result = match distinct.filter(|&n| n < n_rows) {
        None => w.add_tensor_generated(&t.name, &t.dims, ty, make_rows),
        Some(n) => {
            // (n, row_bytes) the rows every other row repeats
            let mut table = vec![0u8; n as usize * row_bytes];
            make_rows(0, &mut table);
            w.add_tensor_generated(&t.name, &t.dims, ty, move |row0, buf| {
                for (r, out) in buf.chunks_mut(row_bytes).enumerate() {
                    let src = ((row0 + r as u64) % n) as usize * row_bytes;
                    out.copy_from_slice(&table[src..src + row_bytes]);
                }
            })
        }
    };
    result.map(|_| ()).map_err(|e| e.to_string())
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

/// The numbers of a run: the noise seed, a layer count replacing the shape's, the threads,
/// the distinct rows of each matrix (`--distinct-rows`).
struct Options {
    seed: u64,
    layers: Option<usize>,
    threads: usize,
    distinct_rows: Option<u64>,
}

fn synthesize(
    shape_name: &str,
    ty_name: &str,
    recipe: Recipe,
    vocab_path: &Path,
    out: &Path,
    options: Options,
) -> Result<(), String> {
    let Options {
        seed,
        layers,
        threads,
        distinct_rows,
    } = options;
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
    let arch = sh.arch;
    kv(&mut w, "general.architecture", Value::String(arch.into()))?;
    kv(
        &mut w,
        "general.name",
        Value::String(format!("synthetic {shape_name} {ty_name}")),
    )?;
    kv(
        &mut w,
        &format!("{arch}.block_count"),
        Value::U32(sh.n_layer as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.context_length"),
        Value::U32(sh.n_ctx_train as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.embedding_length"),
        Value::U32(sh.n_embd as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.feed_forward_length"),
        Value::U32(sh.n_ff as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.attention.head_count"),
        Value::U32(sh.n_head as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.attention.head_count_kv"),
        Value::U32(sh.n_head_kv as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.rope.freq_base"),
        Value::F32(sh.rope_base),
    )?;
    kv(
        &mut w,
        &format!("{arch}.rope.dimension_count"),
        Value::U32(head_dim as u32),
    )?;
    kv(
        &mut w,
        &format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    )?;
    kv(
        &mut w,
        &format!("{arch}.vocab_size"),
        Value::U32(n_vocab as u32),
    )?;
    for (k, v) in tokenizer_kvs(&vocab) {
        kv(&mut w, &k, v)?;
    }
    kv(
        &mut w,
        "general.file_type",
        Value::U32(recipe.file_type.id()),
    )?;
    let (d, ff, q, kvd) = (
        sh.n_embd,
        sh.n_ff,
        sh.n_head * head_dim,
        sh.n_head_kv * head_dim,
    );
    // The tensors in file order.
    let matrix = |name: String, rows: usize, cols: usize| Tensor {
        name,
        dims: vec![cols as u64, rows as u64],
        matrix: true,
    };
    let vector = |name: String, n: usize| Tensor {
        name,
        dims: vec![n as u64],
        matrix: false,
    };
    let norm = |name: String| vector(name, d);
    let mut tensors = vec![matrix("token_embd.weight".into(), n_vocab, d)];
    for i in 0..sh.n_layer {
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.extend([
            norm(name("attn_norm")),
            matrix(name("attn_q"), q, d),
            matrix(name("attn_k"), kvd, d),
            matrix(name("attn_v"), kvd, d),
            matrix(name("attn_output"), d, q),
            norm(name("ffn_norm")),
            matrix(name("ffn_gate"), ff, d),
            matrix(name("ffn_up"), ff, d),
            matrix(name("ffn_down"), d, ff),
        ]);
        if sh.arch == "qwen2" {
            let bias = |s: &str| format!("blk.{i}.{s}.bias");
            tensors.extend([
                vector(bias("attn_q"), q),
                vector(bias("attn_k"), kvd),
                vector(bias("attn_v"), kvd),
            ]);
        }
    }
    tensors.push(norm("output_norm.weight".into()));
    if !sh.tied_output {
        tensors.push(matrix("output.weight".into(), n_vocab, d));
    }
    // Every type from the quantizer's rules, as if quantizing an F32 model of this shape.
    let listed: Vec<(&str, &[u64], GgmlType)> = (tensors.iter())
        .map(|t| (t.name.as_str(), t.dims.as_slice(), GgmlType::F32))
        .collect();
    let facts = ModelFacts::new(
        arch,
        sh.n_layer,
        sh.n_head as u64,
        sh.n_head_kv as u64,
        0,
        tensors.iter().map(|t| t.name.as_str()),
    );
    let mut types = vec![GgmlType::F32; tensors.len()];
    for (i, ty) in mix::plan(&listed, &facts, recipe.file_type, recipe.pure) {
        types[i] = ty;
    }
    // Matrices are numbered from 1 in file order: the number seeds their rows.
    let mut id = 0;
    for (t, ty) in tensors.iter().zip(types) {
        if t.matrix {
            id += 1;
            add_matrix(&mut w, t, ty, seed, id, threads, distinct_rows)?;
        } else {
            add_ones(&mut w, &t.name, t.dims[0] as usize)?;
        }
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
    let (ty_name, recipe) = match (get("--type"), get("--mix")) {
        (Some(t), None) => {
            let r = Recipe::from_type(&t).map_err(|e| format!("--type: {e}"))?;
            (t, r)
        }
        (None, Some(m)) => {
            let r = Recipe::from_mix(&m).map_err(|e| format!("--mix: {e}"))?;
            (m, r)
        }
        _ => return Err("give one of --type and --mix".into()),
    };
    let vocab = get("--vocab").ok_or("missing --vocab")?;
    let seed = match get("--seed") {
        Some(s) => s.parse().map_err(|_| format!("bad --seed '{s}'"))?,
        None => 1,
    };
    let layers = match get("--layers") {
        Some(s) => Some(s.parse().map_err(|_| format!("bad --layers '{s}'"))?),
        None => None,
    };
    let threads = match get("--threads") {
        Some(s) => (s.parse().ok().filter(|&n| (1..=1024).contains(&n)))
            .ok_or_else(|| format!("bad --threads '{s}' (1..=1024)"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let distinct_rows = match get("--distinct-rows") {
        Some(s) => Some(
            (s.parse().ok().filter(|&n: &u64| n >= 1))
                .ok_or_else(|| format!("bad --distinct-rows '{s}' (at least 1)"))?,
        ),
        None => None,
    };
    synthesize(
        &shape_name,
        &ty_name,
        recipe,
        Path::new(&vocab),
        Path::new(&out),
        Options {
            seed,
            layers,
            threads,
            distinct_rows,
        },
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
