//! The element type of the cached keys and values, chosen when a context is created.

use crate::{Error, Result};

/// How keys and values are stored. Values are rounded to this type when written and widened
/// to f32 when attention reads them, the same way on every backend (so the GPU's decode still
/// reproduces the CPU's bits). The ids are ggml's type ids, as `-ctk` / `-ctv` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// 4 bytes an element: exactly what the projections computed.
    F32,
    /// 2 bytes an element, round-to-nearest-even (llama.cpp's default cache type).
    #[default]
    F16,
}

impl KvType {
    pub const ALL: [KvType; 2] = [KvType::F32, KvType::F16];

    /// Bytes of one stored element.
    pub fn elem_bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// The stable id (ggml's type id) used by the C API and the state format.
    pub fn id(self) -> u32 {
        match self {
            KvType::F32 => 0,
            KvType::F16 => 1,
        }
    }

    pub fn from_id(id: u32) -> Option<KvType> {
        KvType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The name llama.cpp's `--cache-type-k` uses ("f32", "f16").
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = Error;

    fn from_str(s: &str) -> Result<KvType> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown KV cache type {s:?} (expected one of: f32, f16)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip_and_unknown_ones_are_refused() {
        for t in KvType::ALL {
            assert_eq!(t.name().parse::<KvType>().unwrap(), t);
            assert_eq!(KvType::from_id(t.id()), Some(t));
        }
        assert_eq!(KvType::default(), KvType::F16);
        assert_eq!(KvType::from_id(7), None);
        let e = "q4_0".parse::<KvType>().unwrap_err().to_string();
        assert!(e.contains("q4_0") && e.contains("f16"), "{e}");
    }
}
