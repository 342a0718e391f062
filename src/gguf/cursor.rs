//! A bounds-checked little-endian reader over the file's bytes: the core of the parser.
//!
//! Every read checks the bytes that remain first, and every length or count is checked against
//! those bytes before anything is allocated from it. Errors carry the offset where the field
//! starts; the caller names the field (see [`super::error::WithField`]).

use super::error::{GgufError, GgufErrorKind};

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

macro_rules! read_le {
    ($name:ident, $ty:ty) => {
        pub(crate) fn $name(&mut self) -> Result<$ty, GgufError> {
            const N: usize = std::mem::size_of::<$ty>();
            let raw = self.take_fixed(N)?;
            let mut buf = [0u8; N];
            buf.copy_from_slice(raw);
            Ok(<$ty>::from_le_bytes(buf))
        }
    };
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Current offset in the file.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// A fixed-size field: running out of bytes here means the file was cut short.
    fn take_fixed(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let rem = self.bytes.len() - self.pos;
        if n > rem {
            return Err(GgufError::new(
                GgufErrorKind::Truncated,
                self.pos as u64,
                format!("truncated: needs {n} bytes, {rem} remain"),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// `len` bytes whose length came from the file: an impossible length is `TooLarge`.
    /// `field_start` is where the length prefix began, reported on failure.
    fn take_declared(&mut self, len: u64, field_start: u64) -> Result<&'a [u8], GgufError> {
        let rem = self.remaining();
        if len > rem {
            return Err(GgufError::new(
                GgufErrorKind::TooLarge,
                field_start,
                format!("length {len} exceeds the {rem} bytes that remain"),
            ));
        }
        // len <= rem <= usize::MAX, so the cast is lossless.
        self.take_fixed(len as usize)
    }

    read_le!(u8, u8);
    read_le!(i8, i8);
    read_le!(u16, u16);
    read_le!(i16, i16);
    read_le!(u32, u32);
    read_le!(i32, i32);
    read_le!(u64, u64);
    read_le!(i64, i64);
    read_le!(f32, f32);
    read_le!(f64, f64);

    /// A GGUF bool: one byte, 0 or 1.
    pub(crate) fn bool(&mut self) -> Result<bool, GgufError> {
        let at = self.pos();
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::new(
                GgufErrorKind::InvalidBool,
                at,
                format!("bool byte is {b}, expected 0 or 1"),
            )),
        }
    }

    /// A GGUF string: u64 byte length, then that many bytes of UTF-8 (no terminator).
    pub(crate) fn string(&mut self) -> Result<String, GgufError> {
        let start = self.pos();
        let len = self.u64()?;
        let raw = self.take_declared(len, start)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(GgufError::new(
                GgufErrorKind::InvalidUtf8,
                start,
                format!(
                    "string of {len} bytes is not UTF-8 (bad byte at index {})",
                    e.valid_up_to()
                ),
            )),
        }
    }

    /// Checks that `count` elements of at least `min_elem_bytes` each can fit in the bytes that
    /// remain, so a capacity of `count` is bounded by the file size. Returns it as `usize`.
    pub(crate) fn check_count(
        &self,
        count: u64,
        min_elem_bytes: u64,
        field_start: u64,
    ) -> Result<usize, GgufError> {
        let rem = self.remaining();
        match count.checked_mul(min_elem_bytes) {
            Some(need) if need <= rem => Ok(count as usize),
            _ => Err(GgufError::new(
                GgufErrorKind::TooLarge,
                field_start,
                format!(
                    "count {count} needs at least {count}*{min_elem_bytes} bytes, {rem} remain"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let bytes = [1u8, 0, 0, 0, 0xff, 0xff];
        let mut c = Cursor::new(&bytes);
        assert_eq!(c.u32().unwrap(), 1);
        assert_eq!(c.i16().unwrap(), -1);
        let e = c.u8().unwrap_err();
        assert_eq!(e.kind, GgufErrorKind::Truncated);
        assert_eq!(e.offset, 6);
    }

    #[test]
    fn truncated_fixed_read_does_not_advance() {
        let bytes = [1u8, 2, 3];
        let mut c = Cursor::new(&bytes);
        assert!(c.u32().is_err());
        assert_eq!(c.pos(), 0);
        assert_eq!(c.u16().unwrap(), 0x0201);
    }

    #[test]
    fn string_length_beyond_the_file_is_too_large() {
        let mut bytes = (1u64 << 62).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let e = Cursor::new(&bytes).string().unwrap_err();
        assert_eq!(e.kind, GgufErrorKind::TooLarge);
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn check_count_catches_overflowing_products() {
        let c = Cursor::new(&[0u8; 16]);
        assert_eq!(c.check_count(2, 8, 0).unwrap(), 2);
        assert_eq!(
            c.check_count(3, 8, 0).unwrap_err().kind,
            GgufErrorKind::TooLarge
        );
        assert_eq!(
            c.check_count(u64::MAX, 2, 0).unwrap_err().kind,
            GgufErrorKind::TooLarge
        );
    }
}
