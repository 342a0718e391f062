//! Loads a whole model from arbitrary bytes (GGUF parse, hyperparameters, weights, tokenizer)
//! and, when it loads, uses it lightly: tokenize and detokenize a short text, render the chat
//! template (for one input in 64), create a small context and evaluate
//! two tokens. Model files are untrusted: any panic, abort, overflow trap or allocation past
//! libFuzzer's -rss_limit_mb / -malloc_limit_mb is a bug; bad files must come back as errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::chat::{render, Message, SpecialTokens};
use rocmforge::gguf::GgufFile;
use rocmforge::{Context, ContextParams, Model};

/// Special-token texts, words to merge, a two-byte character and a byte-fallback one.
const TEXT: &str = "<s>hello world<|im_start|> é\u{1F980}";

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let Ok(model) = Model::from_gguf(gguf) else {
        return;
    };
    let hp = model.hparams();
    let (n_vocab, n_embd) = (hp.n_vocab, hp.n_embd);
    assert!(n_vocab > 0 && n_embd > 0 && hp.n_layer > 0);
    let tok = model.tokenizer();
    assert_eq!(tok.n_vocab(), n_vocab);
    let _ = (model.name(), model.n_params(), model.size_bytes());

    // Tokenizer: every id in range, decoding never fails. (One encode: special tokens are cut
    // out and the text between them goes through the vocabulary's merges.)
    let ids = tok.encode(TEXT, true, true);
    for &id in &ids {
        assert!(
            (id as usize) < n_vocab,
            "id {id} outside vocabulary {n_vocab}"
        );
        let _ = (
            tok.token_to_piece(id, true),
            tok.is_eog(id),
            tok.is_control(id),
        );
    }
    let _ = tok.decode(&ids, false);
    for id in [
        tok.bos(),
        tok.eos(),
        tok.eot(),
        tok.eom(),
        tok.unk(),
        tok.pad(),
    ]
    .into_iter()
    .flatten()
    {
        assert!((id as usize) < n_vocab);
        let _ = (tok.token_to_piece(id, false), tok.token_text(id));
    }

    // The model's own template, as rocmforge_chat_apply runs it, for one input in 64 (picked
    // by a hash of the input, so reruns agree): a render forks a sandbox child, and forking
    // this ASan-instrumented process costs milliseconds, far more than everything else here.
    // A panic in the child is the sandbox's business (it becomes an error), so this finds only
    // hangs past the sandbox's deadline and faults in the parent.
    if rocmforge_fuzz::crc32(data).is_multiple_of(64) {
        if let Some(template) = model.chat_template() {
            let text_of = |id: Option<u32>| id.and_then(|t| tok.token_text(t)).unwrap_or("");
            let special = SpecialTokens {
                bos: text_of(tok.bos()),
                eos: text_of(tok.eos()),
            };
            let messages = [
                Message {
                    role: "system",
                    content: "Be brief.",
                },
                Message {
                    role: "user",
                    content: " Hi ",
                },
            ];
            if let Ok(text) = render(template, &messages, true, &special) {
                let _ = tok.encode(&text, false, true);
            }
        }
    }

    // A small context; two tokens through the forward pass.
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 8,
        n_seq_max: 1,
        n_threads: 1,
        ..Default::default()
    };
    let Ok(mut ctx) = Context::new(&model, params) else {
        return;
    };
    let mut input: Vec<u32> = ids.iter().copied().take(2).collect();
    if input.is_empty() {
        input.push(0);
    }
    if ctx.eval(&input, 0).is_ok() {
        let logits = ctx.last_logits().expect("logits after a successful eval");
        assert_eq!(logits.len(), n_vocab);
        assert_eq!(ctx.kv_seq_pos_max(0), Some(input.len() as i32 - 1));
    }
});
