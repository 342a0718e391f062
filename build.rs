//! Build script: GPU kernels are compiled here once the `rocm`/`cuda` features exist.
//!
//! The shared library's soname carries the major version from Cargo.toml (the one place the
//! version is defined): librocmforge.so.<major>. Nothing is written into the source tree.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librocmforge.so.{major}");
    }
}
