//! Writes the fuzz seed corpus: small valid GGUF files from our writer, covering every value
//! type, nested arrays, several tensor types and a non-default alignment.
//! Usage (from fuzz/): cargo run --example gguf_seeds -- seeds/gguf_parse

use rocmforge::gguf::{Array, GgufWriter, Value};
use rocmforge::quant::GgmlType;

fn main() -> rocmforge::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "seeds/gguf_parse".into()),
    );
    std::fs::create_dir_all(&dir).map_err(|source| rocmforge::Error::Io {
        path: dir.display().to_string(),
        source,
    })?;

    let empty = GgufWriter::new();
    empty.write_to(&dir.join("empty.gguf"))?;

    let mut scalars = GgufWriter::new();
    scalars.set_version(2)?;
    scalars.add_kv("general.architecture", "llama".into())?;
    scalars.add_kv("a.u8", Value::U8(1))?;
    scalars.add_kv("a.i8", Value::I8(-1))?;
    scalars.add_kv("a.u16", Value::U16(2))?;
    scalars.add_kv("a.i16", Value::I16(-2))?;
    scalars.add_kv("a.u32", Value::U32(3))?;
    scalars.add_kv("a.i32", Value::I32(-3))?;
    scalars.add_kv("a.u64", Value::U64(4))?;
    scalars.add_kv("a.i64", Value::I64(-4))?;
    scalars.add_kv("a.f32", Value::F32(0.5))?;
    scalars.add_kv("a.f64", Value::F64(0.25))?;
    scalars.add_kv("a.bool", Value::Bool(true))?;
    scalars.write_to(&dir.join("scalars.gguf"))?;

    let mut arrays = GgufWriter::new();
    arrays.add_kv("tokenizer.ggml.tokens", vec!["a", "b", "<s>"].into())?;
    arrays.add_kv("tokenizer.ggml.scores", vec![0.0f32, -1.0, 2.0].into())?;
    arrays.add_kv("tokenizer.ggml.token_type", vec![1i32, 1, 3].into())?;
    arrays.add_kv("a.bools", vec![true, false].into())?;
    let nested = Array::Array(vec![
        Array::U8(vec![1]),
        Array::Array(vec![Array::I64(vec![])]),
    ]);
    arrays.add_kv("a.nested", nested.into())?;
    arrays.write_to(&dir.join("arrays.gguf"))?;

    let mut tensors = GgufWriter::new();
    tensors.add_kv("general.alignment", Value::U32(64))?;
    tensors.add_kv("llama.block_count", Value::U32(1))?;
    tensors.add_tensor("token_embd.weight", &[32, 2], GgmlType::Q8_0, vec![1; 68])?;
    tensors.add_tensor("blk.0.attn_q.weight", &[32, 1], GgmlType::Q4_1, vec![2; 20])?;
    tensors.add_tensor("output_norm.weight", &[4], GgmlType::F32, vec![3; 16])?;
    tensors.add_tensor("blk.0.ffn.weight", &[2, 1, 1, 2], GgmlType::F16, vec![4; 8])?;
    tensors.write_to(&dir.join("tensors.gguf"))?;
    Ok(())
}
