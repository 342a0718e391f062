//! The model quantizer: reads a GGUF model and writes it with its tensors re-quantized to one
//! of llama.cpp's file types (`llama-quantize` / `llama_model_quantize`), with llama.cpp's
//! per-tensor choices ([`mix`]).
//!
//! - Input: F32 / F16 / BF16, or an already quantized file when requantizing is allowed (each
//!   tensor dequantized to f32, then quantized again, as llama.cpp does with
//!   `--allow-requantize`). A tensor already of its target type is copied unchanged.
//! - Output: the input's metadata (split keys dropped), `general.quantization_version` = 2 and
//!   `general.file_type` as llama.cpp sets them, the input's alignment, tensors in llama.cpp's
//!   order. Deterministic: rows are independent, so the bytes do not depend on the threads.
//! - Streaming: the input is memory-mapped and the output written a chunk of rows at a time, so
//!   neither model sits in memory; the file appears under its name only when complete (written
//!   to a temporary name beside it, renamed at the end, removed on error or cancellation).

pub mod mix;

use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::quant::GgmlType;
use crate::{Error, Result};
use mix::ModelFacts;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use mix::FileType;

/// `general.quantization_version`: GGML's quantization format version (GGML_QNT_VERSION).
const QUANTIZATION_VERSION: u32 = 2;

/// Called after each tensor with (tensors written, total); returning false cancels the run.
pub type QuantizeProgress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// How to quantize.
pub struct QuantizeParams<'a> {
    /// The target: a llama.cpp file type (a mix, or one type for every matrix).
    pub file_type: FileType,
    /// Every quantizable tensor in the target's main type, without the mix's choices (the row
    /// length fallbacks still apply): llama-quantize's `--pure`.
    pub pure: bool,
    /// Accept quantized input (dequantized, then quantized again; some precision is lost twice).
    pub allow_requantize: bool,
    /// Threads quantizing the rows of each chunk; 0 picks the machine's parallelism.
    pub threads: usize,
    pub progress: Option<QuantizeProgress<'a>>,
}

impl QuantizeParams<'_> {
    pub fn new(file_type: FileType) -> Self {
        QuantizeParams {
            file_type,
            pure: false,
            allow_requantize: false,
            threads: 0,
            progress: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// Every tensor with its type in the output, in file order.
    pub tensors: Vec<(String, GgmlType)>,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

/// Quantizes the model at `input` into a new file at `output` (replaced if it exists).
///
/// Errors: `Io` (input unreadable, output not writable), `Gguf` (malformed input),
/// `InvalidArgument` (quantized input without `allow_requantize`),
/// `UnsupportedTensorType` (an input tensor type this engine cannot decode), `Cancelled`.
/// On any error no file is left at `output` (an existing one is left as it was).
pub fn quantize_model(
    input: &Path,
    output: &Path,
    mut params: QuantizeParams<'_>,
) -> Result<QuantizeReport> {
    let file = Arc::new(GgufFile::open(input)?);
    let threads = match params.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    let mut writer = GgufWriter::new();
    copy_metadata(&file, &mut writer, params.file_type)?;

    let mut report = Vec::with_capacity(file.tensors().len());
    for (index, target) in plan_indices(&file, params.file_type, params.pure) {
        add_tensor(
            &mut writer,
            &file,
            index,
            target,
            params.allow_requantize,
            threads,
        )?;
        report.push((file.tensors()[index].name.clone(), target));
    }

    let tmp = temporary_path(output)?;
    let total = writer.tensor_count();
    let mut after_tensor = |done: usize| -> Result<()> {
        let go_on = params.progress.as_mut().is_none_or(|p| p(done, total));
        if go_on {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    };
    let written = writer
        .write_to_reporting(&tmp, &mut after_tensor)
        .and_then(|()| {
            std::fs::rename(&tmp, output).map_err(|source| Error::Io {
                path: output.display().to_string(),
                source,
            })
        });
    if let Err(e) = written {
        // Best effort: the write already failed, and a leftover temporary is only clutter.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let output_bytes = std::fs::metadata(output).map_or(0, |m| m.len());
    Ok(QuantizeReport {
        tensors: report,
        input_bytes: file.file_size(),
        output_bytes,
    })
}

/// The type every tensor of `file` gets under `file_type` (llama-quantize's `--dry-run`), in
/// the order they are written.
pub fn quantize_plan(file: &GgufFile, file_type: FileType, pure: bool) -> Vec<(String, GgmlType)> {
    plan_indices(file, file_type, pure)
        .into_iter()
        .map(|(i, ty)| (file.tensors()[i].name.clone(), ty))
        .collect()
}

/// (tensor index, target type) in llama.cpp's order, which its per-category layer counters
/// depend on.
fn plan_indices(file: &GgufFile, file_type: FileType, pure: bool) -> Vec<(usize, GgmlType)> {
    let facts = model_facts(file);
    let tensors: Vec<(&str, &[u64], GgmlType)> = (file.tensors().iter())
        .map(|t| (t.name.as_str(), t.dims.as_slice(), t.ty))
        .collect();
    mix::plan(&tensors, &facts, file_type, pure)
}

/// A name beside `output` (same directory, so the final rename is atomic) that no other
/// process or concurrent call uses (process id and a per-process call number): two runs racing
/// to the same output each write their own file, and the last rename wins with a whole file.
fn temporary_path(output: &Path) -> Result<PathBuf> {
    let name = output.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("output path '{}' names no file", output.display()))
    })?;
    if output.is_dir() {
        return Err(Error::Io {
            path: output.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a directory"),
        });
    }
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut tmp = name.to_os_string();
    tmp.push(format!(".quantize-{}-{call}.tmp", std::process::id()));
    Ok(output.with_file_name(tmp))
}

/// The metadata the mix rules read.
fn model_facts(file: &GgufFile) -> ModelFacts {
    let arch = file
        .get_str("general.architecture")
        .unwrap_or("")
        .to_string();
    let key = |k: &str| format!("{arch}.{k}");
    // Head counts may be per-layer arrays; llama.cpp's n_gqa() reads layer 0.
    let first = |k: &str| -> Option<u64> {
        match file.get(&key(k))? {
            Value::Array(_) => file
                .get_i32_array(&key(k))
                .and_then(|a| a.first())
                .and_then(|&v| u64::try_from(v).ok()),
            _ => file.get_u64(&key(k)),
        }
    };
    let names = || file.tensors().iter().map(|t| t.name.as_str());
    let n_layer = file.get_u64(&key("block_count")).map_or_else(
        || names().filter_map(mix::layer_of).max().map_or(0, |l| l + 1),
        |n| n as usize,
    );
    let n_head = first("attention.head_count").unwrap_or(0);
    let n_head_kv = first("attention.head_count_kv").unwrap_or(n_head);
    let n_expert = file.get_u64(&key("expert_count")).unwrap_or(0) as usize;
    ModelFacts::new(&arch, n_layer, n_head, n_head_kv, n_expert, names())
}

/// The input's key/values, less the split keys, then the quantization version and file type
/// (llama.cpp replaces them at the end of the list).
fn copy_metadata(file: &GgufFile, writer: &mut GgufWriter, file_type: FileType) -> Result<()> {
    const REPLACED: &[&str] = &[
        "general.quantization_version",
        "general.file_type",
        "split.no",
        "split.count",
        "split.tensors.count",
    ];
    for (k, v) in file.metadata() {
        if !REPLACED.contains(&k.as_str()) {
            writer.add_kv(k.clone(), v.clone())?;
        }
    }
    writer.add_kv(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    )?;
    writer.add_kv("general.file_type", Value::U32(file_type.id()))?;
    Ok(())
}

/// Adds tensor `index` of `file` as `target`: its bytes copied when the type is unchanged,
/// else each row decoded to f32 and encoded again, `threads` rows at a time.
fn add_tensor(
    writer: &mut GgufWriter,
    file: &Arc<GgufFile>,
    index: usize,
    target: GgmlType,
    allow_requantize: bool,
    threads: usize,
) -> Result<()> {
    let t = &file.tensors()[index];
    let (source, cols) = (t.ty, t.dims[0]);
    let in_row = t.n_bytes / t.n_rows().max(1);
    let file = Arc::clone(file);
    if source == target {
        return writer
            .add_tensor_generated(&t.name, &t.dims, target, move |row0, buf| {
                let t = &file.tensors()[index];
                let start = (row0 * in_row) as usize;
                buf.copy_from_slice(&file.tensor_data(t)[start..start + buf.len()]);
            })
            .map(|_| ());
    }
    let float_input = matches!(source, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16);
    if !float_input && !allow_requantize {
        return Err(Error::InvalidArgument(format!(
            "tensor '{}' is already quantized ({source}); requantizing it to {target} loses \
             precision twice and must be allowed (--allow-requantize)",
            t.name
        )));
    }
    let unsupported = |ty: GgmlType| Error::UnsupportedTensorType {
        tensor: t.name.clone(),
        ty: ty.name().into(),
    };
    let decode = source
        .format()
        .ok_or_else(|| unsupported(source))?
        .dequantize;
    let encode = target
        .format()
        .and_then(|f| f.quantize)
        .ok_or_else(|| unsupported(target))?;
    let out_row = target.row_bytes(cols).ok_or_else(|| unsupported(target))? as usize;
    let (in_row, cols) = (in_row as usize, cols as usize);
    writer.add_tensor_generated(&t.name, &t.dims, target, move |row0, buf| {
        let t = &file.tensors()[index];
        let rows = buf.len() / out_row;
        let src = &file.tensor_data(t)[row0 as usize * in_row..][..rows * in_row];
        // Each thread converts a run of whole rows; rows are independent, so the bytes are
        // the same for any number of threads.
        let per_thread = rows.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            for (src, dst) in src
                .chunks(per_thread * in_row)
                .zip(buf.chunks_mut(per_thread * out_row))
            {
                s.spawn(move || {
                    // (cols,) one row in f32
                    let mut row = vec![0f32; cols];
                    for (s, d) in src.chunks(in_row).zip(dst.chunks_mut(out_row)) {
                        decode(s, &mut row);
                        encode(&row, d);
                    }
                });
            }
        });
    })?;
    Ok(())
}
