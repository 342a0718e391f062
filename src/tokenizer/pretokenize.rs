//! Pre-tokenization of byte-level BPE vocabularies: splitting text into words before merging.
//!
//! llama.cpp applies, per `tokenizer.ggml.pre` value, a LIST of regexes in sequence: each one
//! splits every fragment left by the previous one, and the text between matches stays a fragment
//! too. Two of the patterns (GPT-2's and Llama 3's) are run by hand-written scanners whose
//! behaviour differs from a true regex engine in corner cases; we mirror those scanners exactly
//! ([`scan_gpt2`], [`scan_llama3`]). The other patterns run on a "collapsed" copy of the text in
//! which every non-ASCII codepoint is replaced by one stand-in character per Unicode category
//! group, and `\p{..}` classes are rewritten to match those stand-ins, exactly as llama.cpp does
//! before handing the text to `std::regex`.

use fancy_regex::Regex;

use super::unicode::{
    CpFlags, COLLAPSED_LETTER, COLLAPSED_MARK, COLLAPSED_NUMBER, COLLAPSED_PUNCTUATION,
    COLLAPSED_SYMBOL,
};
use crate::error::{Error, Result};

/// GPT-2's pattern, run by [`scan_gpt2`].
const GPT2: Splitter = Splitter::Gpt2;
/// Llama 3's pattern, run by [`scan_llama3`].
const LLAMA3: Splitter = Splitter::Llama3;
/// Qwen 2's pattern: like Llama 3's but single digits and no custom scanner.
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 3.5's pattern: Qwen 2's with combining marks kept inside words.
const QWEN35_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One step of a pre-tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Splitter {
    Gpt2,
    Llama3,
    Regex(&'static str),
}

/// What a `tokenizer.ggml.pre` value implies, per llama.cpp's loader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    splitters: &'static [Splitter],
    /// Detokenization removes spaces before punctuation and some contractions.
    pub(crate) clean_spaces: bool,
    /// A word that is itself a vocabulary token is emitted without merging.
    pub(crate) ignore_merges: bool,
    /// Default for `add_bos_token` when the file does not say.
    pub(crate) add_bos: bool,
}

const fn cfg(splitters: &'static [Splitter], clean_spaces: bool) -> PreConfig {
    PreConfig {
        splitters,
        clean_spaces,
        ignore_merges: false,
        add_bos: false,
    }
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value. A missing or empty value means
/// "default" (llama.cpp warns and does the same); an unknown one is an error, as in llama.cpp.
pub(crate) fn pre_config(name: &str) -> Result<PreConfig> {
    const DEFAULT: &[Splitter] = &[
        Splitter::Regex(r"[\p{P}\$\+<=>\^~\|]+"),
        GPT2,
        Splitter::Regex(r"\p{N}+"),
        Splitter::Regex(r"[0-9][0-9][0-9]"),
    ];
    const DIGITS_THEN_GPT2: &[Splitter] = &[Splitter::Regex(r"\p{N}"), GPT2];
    const QWEN2: &[Splitter] = &[Splitter::Regex(QWEN2_RE)];
    let config = match name {
        "" | "default" => cfg(DEFAULT, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PreConfig {
            splitters: &[LLAMA3],
            clean_spaces: true,
            ignore_merges: true,
            add_bos: true,
        },
        "dbrx" | "smaug-bpe" => cfg(&[LLAMA3], true),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "exaone4" | "mpt" | "olmo" | "jais" => cfg(&[GPT2], true),
        "trillion" | "granite-docling" => cfg(&[GPT2], false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            cfg(DIGITS_THEN_GPT2, true)
        }
        "smollm" | "command-r" => cfg(DIGITS_THEN_GPT2, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
            cfg(QWEN2, false)
        }
        "stablelm2" | "megrez" => cfg(QWEN2, true),
        "qwen35" => cfg(&[Splitter::Regex(QWEN35_RE)], false),
        "falcon" => cfg(
            &[
                Splitter::Regex(r"[\p{P}\$\+<=>\^~\|`]+"),
                GPT2,
                Splitter::Regex("[0-9][0-9][0-9]"),
            ],
            true,
        ),
        "deepseek-coder" => cfg(
            &[
                Splitter::Regex("[\r\n]"),
                Splitter::Regex(r"\s?\p{L}+"),
                Splitter::Regex(r"\s?\p{P}+"),
                Splitter::Regex("[一-龥ࠀ-一가-퟿]+"),
                Splitter::Regex(r"\p{N}"),
            ],
            false,
        ),
        other => {
            return Err(Error::Tokenizer(format!(
                "unsupported pre-tokenizer type '{other}' (tokenizer.ggml.pre)"
            )))
        }
    };
    Ok(config)
}

/// A pre-tokenizer ready to split text: the splitter list with its regexes compiled.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Gpt2,
    Llama3,
    /// A regex over the collapsed text (`collapsed`), or, for patterns without `\p{..}` classes,
    /// over the text with non-ASCII whitespace replaced by U+000B (as llama.cpp's `std::wregex`
    /// path does).
    Regex {
        re: Regex,
        collapsed: bool,
    },
}

impl PreTokenizer {
    pub(crate) fn new(config: &PreConfig) -> Result<PreTokenizer> {
        let steps = config
            .splitters
            .iter()
            .map(|s| match s {
                Splitter::Gpt2 => Ok(Step::Gpt2),
                Splitter::Llama3 => Ok(Step::Llama3),
                Splitter::Regex(pattern) => {
                    let collapsed = uses_categories(pattern);
                    let source = if collapsed {
                        collapse_pattern(pattern)
                    } else {
                        pattern.to_string()
                    };
                    Regex::new(&source)
                        .map(|re| Step::Regex { re, collapsed })
                        .map_err(|e| {
                            Error::Tokenizer(format!("pre-tokenizer regex {pattern:?}: {e}"))
                        })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words; the words concatenate back to `text`.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let needs_raw = self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Regex {
                    collapsed: false,
                    ..
                }
            )
        });
        let text = Text::new(text, needs_raw);
        // Fragments as codepoint index ranges; each step refines them.
        let mut fragments = vec![(0, text.cps.len())];
        for step in &self.steps {
            let mut next = Vec::with_capacity(fragments.len() * 2);
            for &(start, end) in &fragments {
                if start == end {
                    continue;
                }
                match step {
                    Step::Gpt2 => scan_gpt2(&text, start, end, &mut next),
                    Step::Llama3 => scan_llama3(&text, start, end, &mut next),
                    Step::Regex { re, collapsed } => {
                        let hay = if *collapsed {
                            &text.collapsed
                        } else {
                            &text.raw
                        };
                        split_regex(re, hay, start, end, &mut next)
                    }
                }
            }
            fragments = next;
        }
        fragments
            .into_iter()
            .filter(|&(s, e)| s < e)
            .map(|(s, e)| &text.src[text.byte_at[s]..text.byte_at[e]])
            .collect()
    }
}

/// Text decoded once into codepoints, their classes and their byte offsets (original and
/// collapsed), so that scanners and regexes can work on codepoint positions.
struct Text<'t> {
    src: &'t str,
    cps: Vec<u32>,
    flags: Vec<CpFlags>,
    /// Byte offset in `src` of each codepoint, plus `src.len()` at the end.
    byte_at: Vec<usize>,
    collapsed: Haystack,
    /// The text with non-ASCII whitespace as U+000B (built only when a step needs it).
    raw: Haystack,
}

/// A rewritten copy of the text that regexes run on, with the byte offset of each codepoint
/// (plus the length at the end) to map matches back to codepoint positions.
#[derive(Default)]
struct Haystack {
    text: String,
    at: Vec<usize>,
}

impl Haystack {
    fn with_capacity(bytes: usize, cps: usize) -> Haystack {
        Haystack {
            text: String::with_capacity(bytes),
            at: Vec::with_capacity(cps + 1),
        }
    }
    fn push(&mut self, c: char) {
        self.at.push(self.text.len());
        self.text.push(c);
    }
    fn finish(&mut self) {
        self.at.push(self.text.len());
    }
}

impl<'t> Text<'t> {
    fn new(src: &'t str, with_raw: bool) -> Text<'t> {
        let n = src.chars().count();
        let mut text = Text {
            src,
            cps: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            byte_at: Vec::with_capacity(n + 1),
            collapsed: Haystack::with_capacity(src.len(), n),
            raw: Haystack::default(),
        };
        if with_raw {
            text.raw = Haystack::with_capacity(src.len(), n);
        }
        for (i, c) in src.char_indices() {
            let flags = CpFlags::of(c as u32);
            text.cps.push(c as u32);
            text.flags.push(flags);
            text.byte_at.push(i);
            text.collapsed.push(if c.is_ascii() {
                c
            } else {
                flags.collapsed_char()
            });
            if with_raw {
                text.raw.push(if !c.is_ascii() && flags.is_whitespace() {
                    '\u{0B}'
                } else {
                    c
                });
            }
        }
        text.byte_at.push(src.len());
        text.collapsed.finish();
        if with_raw {
            text.raw.finish();
        }
        text
    }
}

/// Whether llama.cpp would run `pattern` on the collapsed text (it names a category class).
fn uses_categories(pattern: &str) -> bool {
    [r"\p{N}", r"\p{L}", r"\p{P}", r"\p{M}", r"\p{S}"]
        .iter()
        .any(|c| pattern.contains(c))
}

/// Rewrites `\p{N}`, `\p{L}`, `\p{P}`, `\p{M}`, `\p{S}` (and the `\p{L*}` subclasses, which the
/// collapsed text cannot tell apart) into classes of the collapsed stand-in plus the ASCII
/// members llama.cpp lists for that class.
fn collapse_pattern(pattern: &str) -> String {
    const CLASSES: [(&str, char, &str); 10] = [
        (r"\p{N}", COLLAPSED_NUMBER, r"\x30-\x39"),
        (r"\p{L}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (r"\p{Lu}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (r"\p{Ll}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (r"\p{Lt}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (r"\p{Lm}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (r"\p{Lo}", COLLAPSED_LETTER, r"\x41-\x5A\x61-\x7A"),
        (
            r"\p{P}",
            COLLAPSED_PUNCTUATION,
            r"\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\x5B-\x5D\x5F\x7B\x7D",
        ),
        (r"\p{M}", COLLAPSED_MARK, ""),
        (r"\p{S}", COLLAPSED_SYMBOL, r"\x24\x2B\x3C-\x3E\x5E\x60\x7C"),
    ];
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut inside_class = false;
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            if let Some(&(name, stand_in, ascii)) =
                CLASSES.iter().find(|(name, _, _)| rest.starts_with(name))
            {
                let members = format!("\\u{{{:X}}}{ascii}", stand_in as u32);
                if inside_class {
                    out.push_str(&members);
                } else {
                    out.push('[');
                    out.push_str(&members);
                    out.push(']');
                }
                rest = &rest[name.len()..];
                continue;
            }
            // Copy an escape pair verbatim so that `\[` and `\]` do not toggle `inside_class`.
            let mut chars = rest.chars();
            chars.next();
            out.push('\\');
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
            rest = chars.as_str();
            continue;
        }
        match c {
            '[' => inside_class = true,
            ']' => inside_class = false,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Splits the fragment `[start, end)` at the regex's matches; the text between matches is kept
/// as fragments too.
fn split_regex(
    re: &Regex,
    hay: &Haystack,
    start: usize,
    end: usize,
    out: &mut Vec<(usize, usize)>,
) {
    let base = hay.at[start];
    let fragment = &hay.text[base..hay.at[end]];
    // Codepoint index of a byte offset into `fragment`; offsets returned by the regex always fall
    // on character boundaries, which are exactly the entries of `hay.at`.
    let cp_of = |offset: usize| start + hay.at[start..=end].partition_point(|&b| b < base + offset);
    let mut prev = start;
    for m in re.find_iter(fragment) {
        // A regex that fails (backtrack limit) leaves the rest of the fragment unsplit.
        let Ok(m) = m else { break };
        if m.start() == m.end() {
            continue;
        }
        let (ms, me) = (cp_of(m.start()), cp_of(m.end()));
        if ms > prev {
            out.push((prev, ms));
        }
        out.push((ms, me));
        prev = me;
    }
    if prev < end {
        out.push((prev, end));
    }
}

/// Cursor over one fragment for the hand-written scanners: positions outside the fragment read
/// as "no codepoint" with no class, which is how the patterns' lookaheads see the fragment end.
struct Cursor<'a> {
    cps: &'a [u32],
    flags: &'a [CpFlags],
    start: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<(usize, usize)>,
}

const OUT_OF_RANGE: u32 = u32::MAX;

impl Cursor<'_> {
    fn cp(&self, pos: usize) -> u32 {
        if (self.start..self.end).contains(&pos) {
            self.cps[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    fn flags(&self, pos: usize) -> CpFlags {
        if (self.start..self.end).contains(&pos) {
            self.flags[pos]
        } else {
            CpFlags::NONE
        }
    }
    /// Ends the current word at `end`; returns its length in codepoints.
    fn emit(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push((self.prev_end, end));
        }
        self.prev_end = end;
        len
    }
    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (case-insensitive when `fold`): the match length.
    fn contraction(&self, pos: usize, fold: bool) -> Option<usize> {
        if self.cp(pos) != u32::from(b'\'') || pos + 1 >= self.end {
            return None;
        }
        let lower = |cp: u32| {
            if fold && (0x41..=0x5A).contains(&cp) {
                cp + 0x20
            } else {
                cp
            }
        };
        let next = lower(self.cp(pos + 1));
        if [b's', b't', b'm', b'd']
            .iter()
            .any(|&c| next == u32::from(c))
        {
            return Some(2);
        }
        if pos + 2 < self.end {
            let next2 = lower(self.cp(pos + 2));
            let pair = |a: u8, b: u8| next == u32::from(a) && next2 == u32::from(b);
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return Some(3);
            }
        }
        None
    }
    /// Counts whitespace from `pos`; also returns the end of the last `\r`/`\n` among them.
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_newline_end = None;
        while self.flags(pos + n).is_whitespace() {
            let cp = self.cp(pos + n);
            if cp == 0x0D || cp == 0x0A {
                last_newline_end = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_newline_end)
    }
}

fn is_punct_like(f: CpFlags) -> bool {
    !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some()
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, the way
/// llama.cpp's custom GPT-2 scanner runs it.
fn scan_gpt2(text: &Text, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut c = Cursor {
        cps: &text.cps,
        flags: &text.flags,
        start,
        end,
        prev_end: start,
        out,
    };
    let mut pos = start;
    while pos < end {
        let cp = c.cp(pos);
        let flags = c.flags(pos);
        if let Some(len) = c.contraction(pos, false) {
            pos += c.emit(pos + len);
            continue;
        }
        let is_space = cp == u32::from(b' ');
        let first = if is_space { c.flags(pos + 1) } else { flags };
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one class, optionally after a space.
        let in_class: Option<fn(CpFlags) -> bool> = if first.is_letter() {
            Some(CpFlags::is_letter)
        } else if first.is_number() {
            Some(CpFlags::is_number)
        } else if is_punct_like(first) {
            Some(is_punct_like)
        } else {
            None
        };
        if let Some(in_class) = in_class {
            pos += usize::from(is_space);
            while in_class(c.flags(pos)) {
                pos += 1;
            }
            c.emit(pos);
            continue;
        }
        let (n_ws, _) = c.whitespace_run(pos);
        // \s+(?!\S): leave the last whitespace to prefix the next word.
        if n_ws > 1 && c.cp(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            c.emit(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.emit(pos);
            continue;
        }
        pos += 1;
        c.emit(pos);
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
/// \s*[\r\n]+|\s+(?!\S)|\s+`, the way llama.cpp's custom Llama 3 scanner runs it.
fn scan_llama3(text: &Text, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut c = Cursor {
        cps: &text.cps,
        flags: &text.flags,
        start,
        end,
        prev_end: start,
        out,
    };
    let is_newline = |cp: u32| cp == 0x0D || cp == 0x0A;
    let mut pos = start;
    while pos < end {
        let cp = c.cp(pos);
        let flags = c.flags(pos);
        if let Some(len) = c.contraction(pos, true) {
            pos += c.emit(pos + len);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_newline(cp) || flags.is_number())
            && (flags.is_letter() || c.flags(pos + 1).is_letter())
        {
            pos += 1;
            while c.flags(pos).is_letter() {
                pos += 1;
            }
            c.emit(pos);
            continue;
        }
        // \p{N}{1,3}
        if flags.is_number() {
            let mut group_start = pos;
            while c.flags(pos).is_number() {
                pos += 1;
                if pos - group_start >= 3 {
                    c.emit(pos);
                    group_start = pos;
                }
            }
            c.emit(pos);
            continue;
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*  (the first test reads the current codepoint's class even
        // after a space, as llama.cpp's scanner does)
        let mut flags2 = if cp == u32::from(b' ') {
            c.flags(pos + 1)
        } else {
            flags
        };
        if !(flags2.is_whitespace() || flags2.is_letter() || flags2.is_number()) && flags.is_some()
        {
            pos += usize::from(cp == u32::from(b' '));
            while is_punct_like(flags2) {
                pos += 1;
                flags2 = c.flags(pos);
            }
            while is_newline(c.cp(pos)) {
                pos += 1;
            }
            c.emit(pos);
            continue;
        }
        let (n_ws, last_newline_end) = c.whitespace_run(pos);
        if let Some(newline_end) = last_newline_end {
            pos = newline_end;
            c.emit(pos);
            continue;
        }
        if n_ws > 1 && c.cp(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            c.emit(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.emit(pos);
            continue;
        }
        pos += 1;
        c.emit(pos);
    }
}
