//! Parsing the metadata key/value section, including `general.alignment`.

use std::collections::HashSet;

use super::cursor::Cursor;
use super::error::{GgufError, GgufErrorKind, WithField};
use super::value::{Array, Value, ValueType};
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH};

/// The fewest bytes one key/value pair takes: key length (8), type (4), a 1-byte value.
pub(crate) const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// The parsed metadata section.
pub(crate) struct Metadata {
    /// Pairs in file order.
    pub kvs: Vec<(String, Value)>,
    /// `general.alignment`, validated, or the default.
    pub alignment: u64,
}

/// Reads `kv_count` pairs. `count_at` is where kv_count was stored, for the error.
pub(crate) fn read_metadata(
    c: &mut Cursor<'_>,
    kv_count: u64,
    count_at: u64,
) -> Result<Metadata, GgufError> {
    let n = c
        .check_count(kv_count, MIN_KV_BYTES, count_at)
        .field(|| "kv_count")?;
    let mut kvs = Vec::with_capacity(n);
    let mut seen: HashSet<String> = HashSet::with_capacity(n);
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n {
        let key_at = c.pos();
        let key = c.string().field(|| format!("metadata[{i}].key"))?;
        if !seen.insert(key.clone()) {
            return Err(GgufError::at(
                format!("metadata[{i}].key"),
                key_at,
                GgufErrorKind::DuplicateKey,
                format!("duplicate metadata key '{key}'"),
            ));
        }
        let ty = read_type(c, &|| format!("metadata '{key}' type"))?;
        let value_at = c.pos();
        let value = read_value(c, ty, &|| format!("metadata '{key}' value"), 0)?;
        if key == ALIGNMENT_KEY {
            alignment = check_alignment(&value).ok_or_else(|| {
                GgufError::at(
                    format!("metadata '{key}' value"),
                    value_at,
                    GgufErrorKind::BadAlignment,
                    format!("alignment must be a u32 power of two, found {value:?}"),
                )
            })?;
        }
        kvs.push((key, value));
    }
    Ok(Metadata { kvs, alignment })
}

/// The alignment a `general.alignment` value asks for, if it is a valid one.
pub(crate) fn check_alignment(value: &Value) -> Option<u64> {
    match *value {
        Value::U32(a) if a.is_power_of_two() => Some(a.into()),
        _ => None,
    }
}

fn read_type(c: &mut Cursor<'_>, name: &dyn Fn() -> String) -> Result<ValueType, GgufError> {
    let at = c.pos();
    let id = c.u32().field(name)?;
    ValueType::from_id(id).ok_or_else(|| {
        GgufError::at(
            name(),
            at,
            GgufErrorKind::UnknownValueType(id),
            format!("unknown value type id {id} (known: 0..=12)"),
        )
    })
}

fn read_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    name: &dyn Fn() -> String,
    depth: usize,
) -> Result<Value, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8().field(name)?),
        ValueType::I8 => Value::I8(c.i8().field(name)?),
        ValueType::U16 => Value::U16(c.u16().field(name)?),
        ValueType::I16 => Value::I16(c.i16().field(name)?),
        ValueType::U32 => Value::U32(c.u32().field(name)?),
        ValueType::I32 => Value::I32(c.i32().field(name)?),
        ValueType::U64 => Value::U64(c.u64().field(name)?),
        ValueType::I64 => Value::I64(c.i64().field(name)?),
        ValueType::F32 => Value::F32(c.f32().field(name)?),
        ValueType::F64 => Value::F64(c.f64().field(name)?),
        ValueType::Bool => Value::Bool(c.bool().field(name)?),
        ValueType::String => Value::String(c.string().field(name)?),
        ValueType::Array => Value::Array(read_array(c, name, depth)?),
    })
}

/// An array: element type (u32), count (u64), elements. Nested arrays repeat the header per
/// element; depth is capped so a hostile file cannot exhaust the stack.
fn read_array(
    c: &mut Cursor<'_>,
    name: &dyn Fn() -> String,
    depth: usize,
) -> Result<Array, GgufError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::at(
            name(),
            c.pos(),
            GgufErrorKind::TooDeep,
            format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
        ));
    }
    let ty = read_type(c, &|| format!("{} array type", name()))?;
    let count_at = c.pos();
    let count_name = || format!("{} array count", name());
    let count = c.u64().field(count_name)?;
    let n = c
        .check_count(count, ty.min_encoded_bytes(), count_at)
        .field(count_name)?;
    Ok(match ty {
        ValueType::U8 => Array::U8(elems(c, n, name, Cursor::u8)?),
        ValueType::I8 => Array::I8(elems(c, n, name, Cursor::i8)?),
        ValueType::U16 => Array::U16(elems(c, n, name, Cursor::u16)?),
        ValueType::I16 => Array::I16(elems(c, n, name, Cursor::i16)?),
        ValueType::U32 => Array::U32(elems(c, n, name, Cursor::u32)?),
        ValueType::I32 => Array::I32(elems(c, n, name, Cursor::i32)?),
        ValueType::U64 => Array::U64(elems(c, n, name, Cursor::u64)?),
        ValueType::I64 => Array::I64(elems(c, n, name, Cursor::i64)?),
        ValueType::F32 => Array::F32(elems(c, n, name, Cursor::f32)?),
        ValueType::F64 => Array::F64(elems(c, n, name, Cursor::f64)?),
        ValueType::Bool => Array::Bool(elems(c, n, name, Cursor::bool)?),
        ValueType::String => Array::String(elems(c, n, name, Cursor::string)?),
        ValueType::Array => {
            // n <= remaining / 12 (checked above), so this capacity is bounded by the file.
            let mut out = Vec::with_capacity(n);
            for j in 0..n {
                out.push(read_array(c, &|| format!("{}[{j}]", name()), depth + 1)?);
            }
            Array::Array(out)
        }
    })
}

/// `n` elements read by `read`; `n` was checked against the remaining bytes by the caller.
fn elems<'a, T>(
    c: &mut Cursor<'a>,
    n: usize,
    name: &dyn Fn() -> String,
    read: impl Fn(&mut Cursor<'a>) -> Result<T, GgufError>,
) -> Result<Vec<T>, GgufError> {
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        out.push(read(c).field(|| format!("{}[{j}]", name()))?);
    }
    Ok(out)
}
