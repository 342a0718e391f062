//! Build script: GPU kernels are compiled here once the `rocm`/`cuda` features exist.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
