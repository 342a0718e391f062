//! Tensor infos: parsing each (name, dims, type, offset) and checking the data layout.

use std::collections::HashSet;

use super::cursor::Cursor;
use super::error::{GgufError, GgufErrorKind, WithField};
use super::MAX_DIMS;
use crate::quant::GgmlType;

/// The fewest bytes one tensor info takes: name length (8), n_dims (4), one dim (8),
/// type (4), offset (8).
pub(crate) const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// One tensor as described by the file; its bytes stay in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, `dims[0]` first: the row length (GGML's ne[0]); 1 to 4 entries, all > 0.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Start of the tensor's bytes, relative to the data section (see `GgufFile::data_offset`).
    pub offset: u64,
    /// Size of the tensor's bytes: whole rows of `ty` blocks.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Product of the dims; fits in i64 (checked at parse).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of rows: the product of every dim after the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// A parsed tensor info plus where its offset field sat, for layout errors.
pub(crate) struct ParsedTensor {
    pub info: TensorInfo,
    pub offset_field_at: u64,
}

/// Bytes of a tensor of `ty` with `dims`, or a reason it is not a valid shape. Shared by the
/// reader and the writer so they agree on what a valid tensor is.
pub(crate) fn tensor_bytes(dims: &[u64], ty: GgmlType) -> Result<u64, String> {
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(format!("n_dims is {}, expected 1..={MAX_DIMS}", dims.len()));
    }
    if let Some(d) = dims.iter().position(|&d| d == 0) {
        return Err(format!("dims[{d}] is 0"));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("element count of dims {dims:?} overflows i64"))?;
    let row = ty.row_bytes(dims[0]).ok_or_else(|| {
        format!(
            "row length {} is not a multiple of the {ty} block size {}",
            dims[0],
            ty.block_elems()
        )
    })?;
    row.checked_mul(n_elements / dims[0])
        .ok_or_else(|| format!("byte size of dims {dims:?} overflows"))
}

pub(crate) fn read_tensor_infos(
    c: &mut Cursor<'_>,
    tensor_count: u64,
    count_at: u64,
) -> Result<Vec<ParsedTensor>, GgufError> {
    let n = c
        .check_count(tensor_count, MIN_TENSOR_INFO_BYTES, count_at)
        .field(|| "tensor_count")?;
    let mut out = Vec::with_capacity(n);
    let mut names: HashSet<String> = HashSet::with_capacity(n);
    for i in 0..n {
        let name_at = c.pos();
        let name = c.string().field(|| format!("tensor[{i}].name"))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::at(
                format!("tensor[{i}].name"),
                name_at,
                GgufErrorKind::DuplicateTensor,
                format!("duplicate tensor name '{name}'"),
            ));
        }
        let parsed = read_one(c, name)?;
        out.push(parsed);
    }
    Ok(out)
}

fn read_one(c: &mut Cursor<'_>, name: String) -> Result<ParsedTensor, GgufError> {
    let field = |f: &str| format!("tensor '{name}' {f}");
    let n_dims_at = c.pos();
    let n_dims = c.u32().field(|| field("n_dims"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::at(
            field("n_dims"),
            n_dims_at,
            GgufErrorKind::BadDims,
            format!("n_dims is {n_dims}, expected 1..={MAX_DIMS}"),
        ));
    }
    let dims_at = c.pos();
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims as usize {
        dims.push(c.u64().field(|| field(&format!("dims[{d}]")))?);
    }
    let type_at = c.pos();
    let id = c.u32().field(|| field("type"))?;
    let ty = GgmlType::from_id(id).ok_or_else(|| {
        GgufError::at(
            field("type"),
            type_at,
            GgufErrorKind::UnknownTensorType(id),
            format!("unknown GGML tensor type id {id}"),
        )
    })?;
    let n_bytes = tensor_bytes(&dims, ty)
        .map_err(|detail| GgufError::at(field("dims"), dims_at, GgufErrorKind::BadDims, detail))?;
    let offset_field_at = c.pos();
    let offset = c.u64().field(|| field("offset"))?;
    Ok(ParsedTensor {
        info: TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_bytes,
        },
        offset_field_at,
    })
}

/// Checks every tensor is aligned, inside the file, and disjoint from the others.
pub(crate) fn check_layout(
    tensors: &[ParsedTensor],
    data_offset: u64,
    alignment: u64,
    file_size: u64,
) -> Result<(), GgufError> {
    let data_len = file_size.saturating_sub(data_offset);
    for t in tensors {
        let info = &t.info;
        let field = || format!("tensor '{}' offset", info.name);
        if info.offset % alignment != 0 {
            return Err(GgufError::at(
                field(),
                t.offset_field_at,
                GgufErrorKind::MisalignedOffset,
                format!(
                    "offset {} is not a multiple of the alignment {alignment}",
                    info.offset
                ),
            ));
        }
        let fits = info
            .offset
            .checked_add(info.n_bytes)
            .is_some_and(|end| end <= data_len && data_offset <= file_size);
        if !fits {
            return Err(GgufError::at(
                field(),
                t.offset_field_at,
                GgufErrorKind::OutOfRange,
                format!(
                    "{} bytes at data offset {} (file offset {}) run past the end of the \
                     {file_size}-byte file",
                    info.n_bytes,
                    info.offset,
                    data_offset.saturating_add(info.offset)
                ),
            ));
        }
    }
    // Sorted by start, each tensor must begin at or after the end of the one before, and exactly
    // at that end padded to the alignment: writers pack tensor data so, and a gap means a type
    // or shape that does not describe the bytes (a type byte changed to a smaller type).
    let mut order: Vec<&ParsedTensor> = tensors.iter().collect();
    order.sort_by_key(|t| t.info.offset);
    let padded_end = |t: &TensorInfo| (t.offset + t.n_bytes).next_multiple_of(alignment);
    let unclaimed = |t: &ParsedTensor, detail: String| {
        GgufError::at(
            format!("tensor '{}' offset", t.info.name),
            t.offset_field_at,
            GgufErrorKind::Unclaimed,
            detail,
        )
    };
    for pair in order.windows(2) {
        let (a, b) = (&pair[0].info, &pair[1].info);
        // In range (checked above), so a.offset + a.n_bytes does not overflow.
        if b.offset < a.offset + a.n_bytes {
            return Err(GgufError::at(
                format!("tensor '{}' offset", b.name),
                pair[1].offset_field_at,
                GgufErrorKind::Overlap,
                format!(
                    "bytes [{}, {}) overlap tensor '{}' at [{}, {})",
                    b.offset,
                    b.offset + b.n_bytes,
                    a.name,
                    a.offset,
                    a.offset + a.n_bytes
                ),
            ));
        }
        if b.offset != padded_end(a) {
            return Err(unclaimed(
                pair[0],
                format!(
                    "tensor '{}' (type {}, {} bytes at data offset {}) ends {} bytes before the \
                     next tensor '{}': its type or shape does not match its data",
                    a.name,
                    a.ty.name(),
                    a.n_bytes,
                    a.offset,
                    b.offset - (a.offset + a.n_bytes),
                    b.name
                ),
            ));
        }
    }
    if let Some(first) = order.first() {
        if first.info.offset != 0 {
            return Err(unclaimed(
                first,
                format!(
                    "the first tensor starts at data offset {}, leaving bytes before it that \
                     no tensor holds",
                    first.info.offset
                ),
            ));
        }
    }
    if let Some(last) = order.last() {
        let end = padded_end(&last.info);
        if data_len > end {
            return Err(unclaimed(
                last,
                format!(
                    "{} bytes after tensor '{}' (type {}, {} bytes) belong to no tensor: its \
                     type or shape does not match its data",
                    data_len - end,
                    last.info.name,
                    last.info.ty.name(),
                    last.info.n_bytes
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_bytes_matches_block_geometry() {
        assert_eq!(tensor_bytes(&[64, 3], GgmlType::Q4_1), Ok(40 * 3));
        assert_eq!(tensor_bytes(&[5], GgmlType::F32), Ok(20));
        assert!(tensor_bytes(&[33], GgmlType::Q8_0).is_err());
        assert!(tensor_bytes(&[], GgmlType::F32).is_err());
        assert!(tensor_bytes(&[1, 1, 1, 1, 1], GgmlType::F32).is_err());
        assert!(tensor_bytes(&[4, 0], GgmlType::F32).is_err());
        assert!(tensor_bytes(&[1 << 32, 1 << 32], GgmlType::F32).is_err());
        // Fits in i64 elements but not in u64 bytes.
        assert!(tensor_bytes(&[1 << 62], GgmlType::F32).is_err());
    }
}
