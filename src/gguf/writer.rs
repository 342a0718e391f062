//! `GgufWriter`: builds GGUF files (version 3 by default) for tests and synthetic models.
//!
//! Layout written: header, key/values, tensor infos, zero padding to the alignment, then each
//! tensor's bytes at an aligned offset, each padded to the alignment. Everything is validated
//! when added, so writing cannot produce a file our reader rejects.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::metadata::check_alignment;
use super::tensor::tensor_bytes;
use super::value::{Array, Value};
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// Generated tensors are produced this many bytes at a time (rounded to whole rows).
const CHUNK_BYTES: u64 = 1 << 20;

/// Fills whole rows of a tensor: called with the index of the first row and a buffer holding
/// a whole number of rows (`rows * row_bytes` bytes), to be overwritten completely.
pub type RowFiller = dyn Fn(u64, &mut [u8]) + Send + Sync;

enum TensorBytes {
    Owned(Vec<u8>),
    Generated(Box<RowFiller>),
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    n_bytes: u64,
    bytes: TensorBytes,
}

/// A GGUF file under construction.
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            kvs: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Writes version 2 instead of 3 (the layouts are identical for little-endian files).
    pub fn set_version(&mut self, version: u32) -> Result<&mut Self> {
        if version != 2 && version != 3 {
            return Err(Error::InvalidArgument(format!(
                "GGUF version {version} cannot be written (2 or 3)"
            )));
        }
        self.version = version;
        Ok(self)
    }

    /// Adds a key/value pair. `general.alignment` must be a `Value::U32` power of two and sets
    /// the alignment used for the data section.
    pub fn add_kv(&mut self, key: impl Into<String>, value: Value) -> Result<&mut Self> {
        let key = key.into();
        if self.keys.contains(&key) {
            return Err(Error::InvalidArgument(format!(
                "duplicate GGUF metadata key '{key}'"
            )));
        }
        if let Value::Array(a) = &value {
            if array_depth(a) > MAX_ARRAY_DEPTH {
                return Err(Error::InvalidArgument(format!(
                    "metadata '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
                )));
            }
        }
        if key == ALIGNMENT_KEY {
            self.alignment = check_alignment(&value).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{ALIGNMENT_KEY} must be a u32 power of two, got {value:?}"
                ))
            })?;
        }
        self.keys.insert(key.clone());
        self.kvs.push((key, value));
        Ok(self)
    }

    /// Adds a tensor whose bytes are given; `data.len()` must be the byte size of `dims`
    /// (`row_bytes(dims[0]) * rows`).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let n_bytes = self.check_tensor(&name, dims, ty)?;
        if data.len() as u64 != n_bytes {
            return Err(Error::InvalidArgument(format!(
                "tensor '{name}': {} bytes given, {ty} dims {dims:?} need {n_bytes}",
                data.len()
            )));
        }
        self.push_tensor(name, dims, ty, n_bytes, TensorBytes::Owned(data));
        Ok(self)
    }

    /// Adds a tensor whose bytes are produced while writing, a chunk of rows at a time, so
    /// multi-GB models never sit in memory. See [`RowFiller`].
    pub fn add_tensor_generated(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        fill: impl Fn(u64, &mut [u8]) + Send + Sync + 'static,
    ) -> Result<&mut Self> {
        let name = name.into();
        let n_bytes = self.check_tensor(&name, dims, ty)?;
        let bytes = TensorBytes::Generated(Box::new(fill));
        self.push_tensor(name, dims, ty, n_bytes, bytes);
        Ok(self)
    }

    fn check_tensor(&self, name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
        if self.names.contains(name) {
            return Err(Error::InvalidArgument(format!(
                "duplicate GGUF tensor name '{name}'"
            )));
        }
        tensor_bytes(dims, ty)
            .map_err(|why| Error::InvalidArgument(format!("tensor '{name}': {why}")))
    }

    fn push_tensor(
        &mut self,
        name: String,
        dims: &[u64],
        ty: GgmlType,
        n_bytes: u64,
        bytes: TensorBytes,
    ) {
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            n_bytes,
            bytes,
        });
    }

    /// The whole file in memory (for tests and small models).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head();
        let pushed: std::result::Result<(), std::convert::Infallible> = self.stream_data(
            |chunk| {
                out.extend_from_slice(chunk);
                Ok(())
            },
            |_| Ok(()),
        );
        match pushed {
            Ok(()) => out,
            Err(never) => match never {},
        }
    }

    /// Writes the file to `path`, streaming tensor data through a buffer.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        self.write_to_reporting(path, &mut |_| Ok(()))
    }

    /// Writes the file to `path` like [`Self::write_to`], calling `after_tensor` with the number
    /// of tensors written so far after each one; its error (a cancellation) stops the write
    /// and is returned, leaving a partial file for the caller to remove.
    pub fn write_to_reporting(
        &self,
        path: &Path,
        after_tensor: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        let io_err = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io_err)?;
        let mut out = std::io::BufWriter::with_capacity(CHUNK_BYTES as usize, file);
        out.write_all(&self.head()).map_err(io_err)?;
        self.stream_data(|chunk| out.write_all(chunk).map_err(io_err), after_tensor)?;
        out.flush().map_err(io_err)?;
        Ok(())
    }

    /// The number of tensors added so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Header, metadata and tensor infos, padded to the start of the data section.
    fn head(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            put_string(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.n_bytes).next_multiple_of(self.alignment);
        }
        let data_start = (out.len() as u64).next_multiple_of(self.alignment);
        out.resize(data_start as usize, 0);
        out
    }

    /// Every tensor's bytes in order, each followed by zero padding to the alignment;
    /// `after_tensor` hears how many are done after each.
    fn stream_data<E>(
        &self,
        mut sink: impl FnMut(&[u8]) -> std::result::Result<(), E>,
        mut after_tensor: impl FnMut(usize) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let zeros = vec![0u8; self.alignment as usize];
        for (done, t) in self.tensors.iter().enumerate() {
            match &t.bytes {
                TensorBytes::Owned(data) => sink(data)?,
                TensorBytes::Generated(fill) => {
                    // Validated at add time: dims[0] is a whole number of blocks.
                    let row_bytes = t.n_bytes / t.dims[1..].iter().product::<u64>();
                    let rows_per_chunk = (CHUNK_BYTES / row_bytes).max(1);
                    let n_rows = t.n_bytes / row_bytes;
                    // (rows_per_chunk, row_bytes), reused for every chunk of this tensor.
                    let mut buf = vec![0u8; (rows_per_chunk * row_bytes) as usize];
                    let mut row = 0;
                    while row < n_rows {
                        let rows = rows_per_chunk.min(n_rows - row);
                        let chunk = &mut buf[..(rows * row_bytes) as usize];
                        fill(row, chunk);
                        sink(chunk)?;
                        row += rows;
                    }
                }
            }
            let pad = t.n_bytes.next_multiple_of(self.alignment) - t.n_bytes;
            sink(&zeros[..pad as usize])?;
            after_tensor(done + 1)?;
        }
        Ok(())
    }
}

/// Levels of arrays, counting this one: the reader accepts up to `MAX_ARRAY_DEPTH`.
fn array_depth(a: &Array) -> usize {
    match a {
        Array::Array(v) => 1 + v.iter().map(array_depth).max().unwrap_or(0),
        _ => 1,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

/// Element type, count, then the elements (a nested array repeats this per element).
fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each_le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each_le!(v),
        Array::U16(v) => each_le!(v),
        Array::I16(v) => each_le!(v),
        Array::U32(v) => each_le!(v),
        Array::I32(v) => each_le!(v),
        Array::U64(v) => each_le!(v),
        Array::I64(v) => each_le!(v),
        Array::F32(v) => each_le!(v),
        Array::F64(v) => each_le!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
    }
}
