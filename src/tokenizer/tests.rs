//! Unit tests on hand-built vocabularies (no model file needed).

use super::*;

fn bpe_spec(tokens: &[&str], merges: &[&str], types: Option<Vec<i32>>) -> VocabSpec {
    VocabSpec {
        kind: VocabKind::Bpe,
        pre: Some("gpt-2".into()),
        tokens: tokens.iter().map(|s| s.to_string()).collect(),
        scores: None,
        token_types: types,
        merges: Some(merges.iter().map(|s| s.to_string()).collect()),
        bos: Some(0),
        eos: Some(0),
        unk: None,
        pad: None,
        eot: None,
        eom: None,
        add_bos: Some(false),
        add_eos: None,
        add_space_prefix: None,
        model_name: None,
    }
}

/// A byte-level vocabulary: `<|endoftext|>`, `<|im_start|>`, the 256 byte characters, then
/// the given merged tokens.
fn byte_level(merged: &[&str], merges: &[&str]) -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
    tokens.extend((0..=255u8).map(|b| unicode::byte_to_char(b).to_string()));
    tokens.extend(merged.iter().map(|s| s.to_string()));
    let mut types = vec![3, 3];
    types.extend(std::iter::repeat_n(1, tokens.len() - 2));
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Tokenizer::from_spec(bpe_spec(&refs, merges, Some(types))).expect("valid vocabulary")
}

fn byte_id(b: u8) -> u32 {
    2 + u32::from(b)
}

#[test]
fn bpe_merges_by_rank_not_by_position() {
    // "abc": (b,c) has a better rank than (a,b), so "a" + "bc" wins over "ab" + "c".
    let t = byte_level(&["ab", "bc"], &["b c", "a b"]);
    assert_eq!(t.encode("abc", false, false), vec![byte_id(b'a'), 259]);
    // With the ranks swapped the other split appears.
    let t = byte_level(&["ab", "bc"], &["a b", "b c"]);
    assert_eq!(t.encode("abc", false, false), vec![258, byte_id(b'c')]);
}

#[test]
fn bpe_multi_step_merges_and_space_encoding() {
    let t = byte_level(&["Ġh", "Ġhi", "hi"], &["Ġ h", "Ġh i", "h i"]);
    assert_eq!(t.encode("hi hi", false, false), vec![260, 259]);
    assert_eq!(t.decode(&[260, 259], false), b"hi hi");
}

#[test]
fn gpt2_pretokenizer_keeps_last_space_for_next_word() {
    let t = byte_level(&[], &[]);
    let pre = t.pre.as_ref().expect("BPE has a pre-tokenizer");
    assert_eq!(pre.split("a  b"), vec!["a", " ", " b"]);
    assert_eq!(pre.split("don't stop!!"), vec!["don", "'t", " stop", "!!"]);
    assert_eq!(pre.split("x   "), vec!["x", "   "]);
    assert_eq!(pre.split("1234 ab"), vec!["1234", " ab"]);
}

#[test]
fn smollm_splits_digits_before_gpt2_pattern() {
    let config = pretokenize::pre_config("smollm").expect("known");
    let pre = PreTokenizer::new(&config).expect("compiles");
    assert_eq!(pre.split("ab 123"), vec!["ab", " ", "1", "2", "3"]);
    // Each fragment end acts as end of text for `\s+(?!\S)`.
    assert_eq!(pre.split("a  1"), vec!["a", "  ", "1"]);
}

#[test]
fn llama3_and_qwen2_pretokenizers() {
    let llama3 =
        PreTokenizer::new(&pretokenize::pre_config("llama-bpe").expect("known")).expect("ok");
    assert_eq!(llama3.split("I'M 12345"), vec!["I", "'M", " ", "123", "45"]);
    assert_eq!(llama3.split("a\n\nb"), vec!["a", "\n\n", "b"]);
    let qwen2 = PreTokenizer::new(&pretokenize::pre_config("qwen2").expect("known")).expect("ok");
    assert_eq!(qwen2.split("héllo 42!"), vec!["héllo", " ", "4", "2", "!"]);
    assert_eq!(qwen2.split("x  y"), vec!["x", " ", " y"]);
}

#[test]
fn unknown_pre_and_model_names_are_errors() {
    let mut spec = bpe_spec(&["a"], &[], None);
    spec.pre = Some("no-such-pre".into());
    let err = Tokenizer::from_spec(spec).expect_err("unknown pre");
    assert!(err.to_string().contains("no-such-pre"));
    let err = VocabKind::from_model_name("t5").expect_err("unsupported model");
    assert!(err.to_string().contains("t5"));
}

#[test]
fn invalid_specs_are_errors() {
    let mut spec = bpe_spec(&["a", "b"], &[], None);
    spec.eos = Some(2);
    assert!(Tokenizer::from_spec(spec).is_err(), "eos out of range");
    let spec = bpe_spec(&["a", "a"], &[], None);
    assert!(Tokenizer::from_spec(spec).is_err(), "duplicate token");
    let mut spec = bpe_spec(&["a", "b"], &[], None);
    spec.scores = Some(vec![0.0]);
    assert!(Tokenizer::from_spec(spec).is_err(), "short scores");
    let mut spec = bpe_spec(&["a", "b"], &[], None);
    spec.merges = None;
    assert!(Tokenizer::from_spec(spec).is_err(), "BPE without merges");
    let spec = bpe_spec(&[], &[], None);
    assert!(Tokenizer::from_spec(spec).is_err(), "empty vocabulary");
}

#[test]
fn special_tokens_are_cut_out_only_when_parsing() {
    let t = byte_level(&[], &[]);
    let ids = t.encode("a<|im_start|>b", false, true);
    assert_eq!(ids, vec![byte_id(b'a'), 1, byte_id(b'b')]);
    let plain = t.encode("a<|im_start|>b", false, false);
    assert!(!plain.contains(&1));
    assert_eq!(t.decode(&plain, false), b"a<|im_start|>b");
    // Control tokens render only on request.
    assert_eq!(t.decode(&ids, false), b"ab");
    assert_eq!(t.decode(&ids, true), b"a<|im_start|>b");
    assert!(t.is_control(1));
    assert!(t.is_eog(0), "<|endoftext|> ends generation");
    assert!(!t.is_eog(1));
}

#[test]
fn user_defined_tokens_are_always_matched() {
    let mut types = vec![1, 1, 4];
    types.extend([1, 1]);
    let spec = bpe_spec(&["a", "b", "ab", "x", "Ġ"], &[], Some(types));
    let t = Tokenizer::from_spec(spec).expect("valid");
    assert_eq!(t.encode("ab", false, false), vec![2]);
    assert_eq!(t.token_to_piece(2, false), b"ab");
}

#[test]
fn longest_special_token_wins() {
    let t = byte_level(&[], &[]);
    // "<|im_start|>" is longer than "<|endoftext|>"? Both 12/13 chars: the longest is cut first.
    let ids = t.encode("<|endoftext|><|im_start|>", false, true);
    assert_eq!(ids, vec![0, 1]);
}

fn spm_tokenizer() -> Tokenizer {
    // <unk>, <s>, </s>, byte tokens for 0x00..=0xFF, then pieces with scores.
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("i", -2.0),
        ("▁h", -3.0),
        ("hi", -1.5),
        ("▁hi", -0.5),
    ] {
        tokens.push(piece.into());
        types.push(1);
        scores.push(score);
    }
    Tokenizer::from_spec(VocabSpec {
        kind: VocabKind::Spm,
        pre: None,
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        merges: None,
        bos: Some(1),
        eos: Some(2),
        unk: Some(0),
        pad: None,
        eot: None,
        eom: None,
        add_bos: None,
        add_eos: None,
        add_space_prefix: None,
        model_name: None,
    })
    .expect("valid SPM vocabulary")
}

#[test]
fn spm_merges_by_score_with_space_prefix_and_byte_fallback() {
    let t = spm_tokenizer();
    let (sp, h, i, sp_h, hi, sp_hi) = (259, 260, 261, 262, 263, 264);
    let _ = (h, i, sp_h);
    // " hi": "hi" (-1.5) merges before "▁h" (-3.0), then "▁" + "hi" = "▁hi".
    assert_eq!(t.encode("hi", true, false), vec![1, sp_hi]);
    assert_eq!(t.encode("hi hi", false, false), vec![sp_hi, sp_hi]);
    // "é" has no piece: UTF-8 bytes C3 A9 as byte tokens.
    assert_eq!(t.encode("é", false, false), vec![sp, 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(t.decode(&[sp, 3 + 0xC3, 3 + 0xA9], false), "é".as_bytes());
    assert_eq!(t.decode(&[1, sp_hi, sp_hi], false), b" hi hi");
    assert_eq!(t.decode(&[sp_hi, hi], false), b"hihi");
    assert!(t.add_bos());
    assert!(t.is_eog(2));
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    let mut d = StreamDecoder::new();
    let euro = "€".as_bytes(); // E2 82 AC
    assert_eq!(d.push(b"a"), "a");
    assert_eq!(d.push(&euro[..1]), "");
    assert_eq!(d.push(&euro[1..2]), "");
    assert_eq!(d.pending_len(), 2);
    assert_eq!(d.push(&[euro[2], b'b']), "€b");
    // An invalid byte is replaced as soon as it is certain.
    assert_eq!(d.push(&[0xFF, b'c']), "\u{FFFD}c");
    // A truncated character at the end becomes U+FFFD on finish.
    assert_eq!(d.push(&euro[..2]), "");
    assert_eq!(d.finish(), "\u{FFFD}");
}

#[test]
fn clean_up_spaces_matches_llama_cpp_rules() {
    let mut t = byte_level(&[], &[]);
    t.vocab.clean_spaces = true;
    let ids = t.encode("a , b ' c 's d 't", false, false);
    assert_eq!(t.decode(&ids, false), b"a, b'c's d 't");
}

#[test]
fn tokenizer_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let t = byte_level(&[], &[]);
    let text = format!("{t:?}");
    assert!(text.contains("n_vocab: 258"), "{text}");
}
