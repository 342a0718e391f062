//! Library version. Cargo.toml's `version` is the one source: the string below comes from it at
//! compile time, and a test fails if the header macros (which cbindgen can only copy from
//! literal constants) disagree with it.

use std::ffi::c_char;

pub const ROCMFORGE_VERSION_MAJOR: u32 = 0;
pub const ROCMFORGE_VERSION_MINOR: u32 = 1;
pub const ROCMFORGE_VERSION_PATCH: u32 = 0;

const VERSION_STRING: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version as major * 10000 + minor * 100 + patch, to compare the loaded library
/// with the header it was compiled against (the ROCMFORGE_VERSION_* macros).
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn rocmforge_version() -> u32 {
    ROCMFORGE_VERSION_MAJOR * 10000 + ROCMFORGE_VERSION_MINOR * 100 + ROCMFORGE_VERSION_PATCH
}

/// The library's version as a string ("0.1.0"), never NULL.
///
/// Ownership: static; do not free.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn rocmforge_version_string() -> *const c_char {
    VERSION_STRING.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_macros_match_cargo_version() {
        let parse = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(
            ROCMFORGE_VERSION_MAJOR,
            parse(env!("CARGO_PKG_VERSION_MAJOR"))
        );
        assert_eq!(
            ROCMFORGE_VERSION_MINOR,
            parse(env!("CARGO_PKG_VERSION_MINOR"))
        );
        assert_eq!(
            ROCMFORGE_VERSION_PATCH,
            parse(env!("CARGO_PKG_VERSION_PATCH"))
        );
    }
}
