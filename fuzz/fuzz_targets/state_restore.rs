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

/// The context and the whole-context blob of its starting state. `dirty` after a successful
/// restore: the next try first restores `start`, so every input starts alike and crashes
/// reproduce (a failed restore leaves the context as it was, which is checked).
struct Fixture {
    ctx: Context,
    start: Vec<u8>,
    dirty: bool,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn fixture() -> Fixture {
    let model = state_model();
    let mut ctx = Context::new(&model, state_params()).expect("tiny context");
    state_fill(&mut ctx).expect("tiny eval");
    let start = ctx.state_save(None).expect("save");
    Fixture {
        ctx,
        start,
        dirty: false,
    }
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
        for seq in [None, Some(1)] {
            try_restore(f, &blob, seq);
        }
    });
});

fn try_restore(f: &mut Fixture, blob: &[u8], seq: Option<u32>) {
    let n_vocab = f.ctx.model().hparams().n_vocab;
    let ctx = &mut f.ctx;
    if f.dirty {
        ctx.state_restore(&f.start, None)
            .expect("the starting state restores");
        f.dirty = false;
    }
    if let Err(e) = ctx.state_restore(blob, seq) {
        // A failed restore leaves the context unchanged. (A checksum mismatch is found before
        // anything is touched: skip the save-and-compare for those, most of the inputs.)
        if !e.to_string().contains("checksum mismatch") {
            assert!(
                ctx.state_save(None).expect("save") == f.start,
                "failed restore ({seq:?}: {e}) changed the context"
            );
        }
        return;
    }
    f.dirty = true;
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
    let _ = (ctx.state_size(None), ctx.state_size_max());
    let _ = ctx.state_save(Some(1)).expect("save one sequence");
    // Still usable: one more token on the restored sequence (it may be full, or at the last
    // position: an error is fine, a panic is not).
    let s = seq.unwrap_or(0);
    if ctx.eval(&[3], s).is_ok() {
        let logits = ctx.last_logits().expect("logits after eval");
        assert_eq!(logits.len(), n_vocab);
    }
}
