//! Cancellation requests that are never lost.
//!
//! A request stays pending until a running (or the next) evaluation honours it: the check that
//! sees it also consumes it, so a request that arrives after the last check of a call is still
//! there for the next call, and one that was honoured does not cancel the call after it.

use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct CancelFlag(AtomicBool);

impl CancelFlag {
    pub fn new() -> CancelFlag {
        CancelFlag(AtomicBool::new(false))
    }

    /// Asks the running (or, if none runs, the next) evaluation to stop. Any thread.
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a request is pending, without consuming it.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` if a request is pending, consuming it; the checkpoint of every loop
    /// that may be cancelled.
    pub fn check(&self) -> Result<()> {
        // The cheap load first: the swap (a write) only when a request is there.
        if self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::AcqRel) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_consumed_by_the_check_that_sees_it() {
        let c = CancelFlag::new();
        assert!(c.check().is_ok());
        c.request();
        assert!(c.is_requested());
        assert!(matches!(c.check(), Err(Error::Cancelled)));
        assert!(!c.is_requested());
        assert!(c.check().is_ok());
    }
}
