//! Compute backends. The CPU backend is always built; GPU backends come with build features.

pub mod cpu;
