//! `GgufFile`: a validated GGUF file whose tensor bytes stay in the mapping (zero-copy).

use std::collections::HashMap;
use std::path::Path;

use super::cursor::Cursor;
use super::error::{GgufError, GgufErrorKind, WithField};
use super::metadata::read_metadata;
use super::tensor::{check_layout, read_tensor_infos, TensorInfo};
use super::value::{Array, Value};
use super::MAGIC;
use crate::error::{Error, Result};

/// Where the file's bytes live. Both are immutable once parsed, so `GgufFile` is Send + Sync.
enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed, validated GGUF file (versions 2 and 3, little-endian).
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

/// Everything the parser learns from the bytes, before they are tied to their storage.
struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io_err = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let (file, len) = crate::fileio::open_regular(path)?;
        if len == 0 {
            // Mapping zero bytes fails on some systems; an empty file is simply truncated.
            return Self::from_bytes(Vec::new());
        }
        // SAFETY: the mapping is read-only and we never hand out &mut to it. The remaining
        // hazard, another process truncating or rewriting the file while it is mapped, is
        // inherent to memory-mapped model files (llama.cpp has it too); model files are
        // treated as immutable while loaded.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let parsed = parse(&map)?;
        Ok(Self::assemble(Storage::Mmap(map), parsed))
    }

    /// Parses a file held in memory: the same parser, for tests and fuzzing.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        let parsed = parse(&bytes)?;
        Ok(Self::assemble(Storage::Owned(bytes), parsed))
    }

    fn assemble(storage: Storage, p: Parsed) -> GgufFile {
        let key_index = (p.metadata.iter().enumerate())
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = (p.tensors.iter().enumerate())
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        GgufFile {
            storage,
            version: p.version,
            metadata: p.metadata,
            key_index,
            tensors: p.tensors,
            tensor_index,
            alignment: p.alignment,
            data_offset: p.data_offset,
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every key/value pair, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type holding a non-negative value.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer type holding a value that fits in u32.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// An F32, or an F64 narrowed to f32.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match *self.get(key)? {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match *self.get(key)? {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_array(&self, key: &str) -> Option<&Array> {
        match self.get(key)? {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            Array::String(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Option<&[f32]> {
        match self.get_array(key)? {
            Array::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Option<&[i32]> {
        match self.get_array(key)? {
            Array::I32(v) => Some(v),
            _ => None,
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the mapping. `t` should come from this file; for any
    /// other info the range is clamped to the file, so the result is empty or partial, never a
    /// panic.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let bytes = self.storage.bytes();
        let len = bytes.len() as u64;
        let start = self.data_offset.saturating_add(t.offset).min(len);
        let end = start.saturating_add(t.n_bytes).min(len);
        // start <= end <= len, which fits in usize.
        &bytes[start as usize..end as usize]
    }

    /// File offset of the data section (aligned end of the tensor infos).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// The whole file's bytes (the mapping, or the owned buffer).
    pub fn as_bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("file_size", &self.file_size())
            .field("kvs", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

/// Header, metadata, tensor infos, then the layout checks.
fn parse(bytes: &[u8]) -> Result<Parsed, GgufError> {
    let file_size = bytes.len() as u64;
    let mut c = Cursor::new(bytes);

    let magic = c.u32().field(|| "magic")?;
    if magic.to_le_bytes() != MAGIC {
        return Err(GgufError::at(
            "magic",
            0,
            GgufErrorKind::BadMagic,
            format!("expected \"GGUF\", found {:02x?}", magic.to_le_bytes()),
        ));
    }
    let version = c.u32().field(|| "version")?;
    if version != 2 && version != 3 {
        return Err(GgufError::at(
            "version",
            4,
            GgufErrorKind::UnsupportedVersion(version),
            format!("version {version} is not supported (2 and 3 are)"),
        ));
    }
    let tensor_count_at = c.pos();
    let tensor_count = c.u64().field(|| "tensor_count")?;
    let kv_count_at = c.pos();
    let kv_count = c.u64().field(|| "kv_count")?;
    // Each count is checked against the bytes that remain where its section starts, so a
    // file cut short reports the section it was cut in.
    let meta = read_metadata(&mut c, kv_count, kv_count_at)?;
    let parsed = read_tensor_infos(&mut c, tensor_count, tensor_count_at)?;

    let infos_end = c.pos();
    let data_offset = infos_end
        .checked_next_multiple_of(meta.alignment)
        .ok_or_else(|| {
            GgufError::at(
                "data section",
                infos_end,
                GgufErrorKind::OutOfRange,
                "aligned data offset overflows",
            )
        })?;
    check_layout(&parsed, data_offset, meta.alignment, file_size)?;

    Ok(Parsed {
        version,
        metadata: meta.kvs,
        tensors: parsed.into_iter().map(|p| p.info).collect(),
        alignment: meta.alignment,
        data_offset,
    })
}
