//! Feeds arbitrary bytes to `Context::state_restore`, whole (`None`) and into sequence 1, on a
//! tiny two-sequence context, then checks the context still works. Saved states are untrusted
//! input (files, network): any panic, abort, overflow trap or allocation past libFuzzer's limits
//! is a bug; bad blobs must come back as errors and leave the context as it was.
//!
//! Input: one control byte, then the blob. Control bit 0 set: the blob's last 4 bytes are
//! overwritten with the CRC-32 of the bytes before them, so mutated blobs get past the state
//! checksum and reach the parser behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::Context;
use rocmforge_fuzz::{fix_trailer, state_fill, state_model, state_params};
use std::cell::RefCell;

/// The context, and the whole-context blob that puts it back in its starting state before
/// each input (so every run starts alike and crashes reproduce).
struct Fixture {
    ctx: Context,
    start: Vec<u8>,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn fixture() -> Fixture {
    let model = state_model();
    let mut ctx = Context::new(&model, state_params()).expect("tiny context");
    state_fill(&mut ctx).expect("tiny eval");
    let start = ctx.state_save(None).expect("save");
    Fixture { ctx, start }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, blob)) = data.split_first() else {
        return;
    };
    let mut blob = blob.to_vec();
    if control & 1 != 0 {
        fix_trailer(&mut blob);
    }
    FIXTURE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let f = cell.get_or_insert_with(fixture);
        run(f, &blob);
    });
});

fn run(f: &mut Fixture, blob: &[u8]) {
    let n_vocab = f.ctx.model().hparams().n_vocab;
    let ctx = &mut f.ctx;
    for seq in [None, Some(1)] {
        ctx.state_restore(&f.start, None)
            .expect("the starting state restores");
        let before = ctx.state_save(None).expect("save");
        match ctx.state_restore(blob, seq) {
            Err(_) => {
                // A failed restore leaves the context unchanged.
                assert!(
                    ctx.state_save(None).expect("save") == before,
                    "failed restore ({seq:?}) changed the context"
                );
            }
            Ok(()) => {
                if seq.is_none() {
                    // A whole restore saves back to the same blob.
                    assert!(
                        ctx.state_save(None).expect("save") == blob,
                        "whole restore does not round-trip"
                    );
                    assert_eq!(ctx.last_batch_len(), 0);
                    if let Some(logits) = ctx.last_logits() {
                        assert_eq!(logits.len(), n_vocab);
                    }
                }
                let _ = (ctx.state_size(None), ctx.state_size(Some(0)));
                let _ = ctx.state_save(Some(1)).expect("save one sequence");
                // Still usable: one more token on the restored sequence (it may be full, or at
                // the last position: an error is fine, a panic is not).
                let s = seq.unwrap_or(0);
                if ctx.eval(&[3], s).is_ok() {
                    let logits = ctx.last_logits().expect("logits after eval");
                    assert_eq!(logits.len(), n_vocab);
                }
            }
        }
    }
}
