//! Writes the seeds of the model_load, state_restore and tokenizer targets: tiny valid llama
//! models (a few KB each), real saved context states of the tiny state model, and short texts.
//! Usage (from fuzz/): cargo run --example model_seeds -- seeds

use rocmforge::gguf::GgufFile;
use rocmforge::{Context, ContextParams, Error, Model, Result};
use rocmforge_fuzz::tiny::{build_bytes, TinySpec, Vocab};
use rocmforge_fuzz::{crc32, has_trailer, state_fill, state_model, state_params};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(name), bytes))
        .map_err(|source| Error::Io {
            path: dir.join(name).display().to_string(),
            source,
        })
}

/// A seed must get through everything the model_load target does, or it only covers the parser.
fn check_loads(bytes: &[u8]) -> Result<()> {
    let model = Model::from_gguf(GgufFile::from_bytes(bytes.to_vec())?)?;
    let ids = model.tokenizer().encode("Hello world", true, true);
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 8,
        n_seq_max: 1,
        n_threads: 1,
        ..Default::default()
    };
    Context::new(&model, params)?.eval(&ids[..2], 0)
}

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));

    // model_load: four small models that load, tokenize and evaluate.
    let dir = root.join("model_load");
    for (name, spec) in [
        ("spm_f32_llama2.gguf", TinySpec::spm_small()),
        ("bpe_gpt2_f16_tied_chatml.gguf", TinySpec::bpe_small()),
        ("spm_q8_0_rope_linear.gguf", TinySpec::quantized(Vocab::Spm)),
        ("bpe_q4_1_llama3.gguf", TinySpec::quantized(Vocab::Bpe)),
    ] {
        let bytes = build_bytes(&spec);
        check_loads(&bytes)?;
        write(&dir, name, &bytes)?;
    }

    // state_restore: control byte 0 + a saved blob as it is; control byte 1 + the blob with a
    // CRC-32 trailer (appended unless state_save already wrote one), which the target rewrites.
    let dir = root.join("state_restore");
    let model = state_model();
    let mut ctx = Context::new(&model, state_params())?;
    let mut blobs = vec![("empty", ctx.state_save(None)?)];
    state_fill(&mut ctx)?;
    blobs.push(("whole", ctx.state_save(None)?));
    blobs.push(("seq0", ctx.state_save(Some(0))?));
    blobs.push(("seq1", ctx.state_save(Some(1))?));
    for (name, blob) in blobs {
        write(&dir, &format!("{name}.bin"), &[&[0u8][..], &blob].concat())?;
        let mut with_crc = [&[1u8][..], &blob].concat();
        if !has_trailer(&blob) {
            with_crc.extend_from_slice(&crc32(&blob).to_le_bytes());
        }
        write(&dir, &format!("{name}_crc.bin"), &with_crc)?;
    }

    // tokenizer: control byte (tokenizer in bits 0-1, add/parse special in bits 2-3, C ABI in
    // bit 5) + text.
    let dir = root.join("tokenizer");
    let texts: [(&str, &str); 6] = [
        ("hello", "Hello world, hello again!"),
        (
            "chatml",
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<s></s>",
        ),
        (
            "unicode",
            "h\u{e9}llo w\u{f6}rld \u{1F980} \u{4E2D}\u{6587} \u{2581}x \u{fffd}",
        ),
        ("digits", "12345 3.14159 1,000,000 2024-12-31"),
        ("spaces", "  \t\n\n   a  b\r\n  "),
        (
            "contractions",
            "I'm sure they're here, aren't we? It's 'quoted' .",
        ),
    ];
    for (i, (name, text)) in texts.iter().enumerate() {
        for slot in 0..4u8 {
            // Vary the flags across seeds: plain for some, special parsing for others; the C
            // ABI for half of them.
            let control = slot | (((i as u8 + slot) % 4) << 2) | ((i as u8 % 2) << 5);
            let data = [&[control][..], text.as_bytes()].concat();
            write(&dir, &format!("{name}_{slot}.txt"), &data)?;
        }
    }
    Ok(())
}
