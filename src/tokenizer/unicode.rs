//! Codepoint classes and the GPT-2 byte <-> unicode mapping, as llama.cpp's tokenizer sees them.

use super::unicode_table::RANGES;

/// Category group bits of a codepoint (general category first letter) plus White_Space.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct CpFlags(u16);

impl CpFlags {
    const NUMBER: u16 = 0x02;
    const LETTER: u16 = 0x04;
    const MARK: u16 = 0x10;
    const PUNCTUATION: u16 = 0x20;
    const SYMBOL: u16 = 0x40;
    const WHITESPACE: u16 = 0x100;

    /// Flags of a position outside the text being scanned: no class at all. The scanners use
    /// this as their end-of-fragment sentinel (llama.cpp does the same with all-zero flags).
    pub(crate) const NONE: CpFlags = CpFlags(0);

    pub(crate) fn of(cp: u32) -> CpFlags {
        // Ranges are sorted by start and the first starts at 0, so the partition point is >= 1.
        let idx = RANGES.partition_point(|&(start, _)| start <= cp);
        CpFlags(RANGES[idx.saturating_sub(1)].1)
    }
    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// True for any real codepoint (every codepoint has a category), false for [`CpFlags::NONE`].
    pub(crate) fn is_some(self) -> bool {
        self.0 != 0
    }

    /// The stand-in character for a non-ASCII codepoint in the "collapsed" text that the generic
    /// regex pre-tokenizers run on: one private-use character per category group, so that
    /// `\p{L}` etc. can be rewritten as plain character classes (see `pretokenize::collapse`).
    pub(crate) fn collapsed_char(self) -> char {
        if self.is_whitespace() {
            // An ASCII whitespace that every regex flavour treats as `\s`.
            '\u{0B}'
        } else if self.0 & Self::NUMBER != 0 {
            COLLAPSED_NUMBER
        } else if self.0 & Self::LETTER != 0 {
            COLLAPSED_LETTER
        } else if self.0 & Self::PUNCTUATION != 0 {
            COLLAPSED_PUNCTUATION
        } else if self.0 & Self::MARK != 0 {
            COLLAPSED_MARK
        } else if self.0 & Self::SYMBOL != 0 {
            COLLAPSED_SYMBOL
        } else {
            COLLAPSED_OTHER
        }
    }
}

pub(crate) const COLLAPSED_NUMBER: char = '\u{E0D1}';
pub(crate) const COLLAPSED_LETTER: char = '\u{E0D2}';
pub(crate) const COLLAPSED_PUNCTUATION: char = '\u{E0D3}';
pub(crate) const COLLAPSED_MARK: char = '\u{E0D4}';
pub(crate) const COLLAPSED_SYMBOL: char = '\u{E0D5}';
pub(crate) const COLLAPSED_OTHER: char = '\u{E0D0}';

const fn is_printable_byte(b: u32) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// GPT-2's reversible byte -> printable codepoint table: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order. Built at compile time.
const BYTE_TO_CP: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut next_extra = 0x100;
    let mut b = 0;
    while b < 256 {
        table[b] = if is_printable_byte(b as u32) {
            b as u32
        } else {
            next_extra += 1;
            next_extra - 1
        };
        b += 1;
    }
    table
};

/// Inverse of [`BYTE_TO_CP`] over U+0000..U+0143; -1 where no byte maps there.
const CP_TO_BYTE: [i16; 0x144] = {
    let mut table = [-1i16; 0x144];
    let mut b = 0;
    while b < 256 {
        table[BYTE_TO_CP[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The printable character that stands for byte `b` in byte-level BPE token texts.
pub(crate) fn byte_to_char(b: u8) -> char {
    // Every table value is below U+0144: a valid scalar value.
    char::from_u32(BYTE_TO_CP[usize::from(b)]).unwrap_or('\0')
}

/// Inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let byte = *CP_TO_BYTE.get(c as usize)?;
    u8::try_from(byte).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_common_codepoints() {
        assert!(CpFlags::of('a' as u32).is_letter());
        assert!(CpFlags::of('Ж' as u32).is_letter());
        assert!(CpFlags::of('7' as u32).is_number());
        assert!(CpFlags::of('½' as u32).is_number());
        assert!(CpFlags::of(' ' as u32).is_whitespace());
        assert!(CpFlags::of(0x3000).is_whitespace());
        assert!(!CpFlags::of(0x1C).is_whitespace());
        assert!(!CpFlags::of('!' as u32).is_letter());
        assert!(CpFlags::of(0x10FFFF).is_some());
    }

    #[test]
    fn byte_mapping_round_trips() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
