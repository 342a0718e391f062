//! One library with or without a GPU runtime: whatever this build is (no GPU feature, `rocm`,
//! `cuda`) and whatever the machine has, GPU asked for answers BACKEND_UNAVAILABLE with the
//! reason, AUTO runs on the CPU, and a GPU runtime or BLAS library that cannot be opened is
//! named in the reason. CI runs this file with the default build and with the `rocm` feature
//! (Debian's libamdhip64 present, no AMD GPU); the GPU machine runs it with `cuda`.

mod common;

use rocmforge::api::{self, Backend, Model, ModelParams};
use rocmforge::Error;
use std::process::Command;

fn load(backend: Backend) -> rocmforge::Result<Model> {
    let path = common::model_path(common::SMOLLM2).expect("SmolLM2");
    Model::load(
        path,
        ModelParams {
            backend,
            ..ModelParams::default()
        },
    )
}

/// Whether a GPU is usable here (then the "unavailable" cases do not apply).
fn gpu_usable() -> bool {
    api::gpu_device(0).is_ok()
}

#[test]
fn gpu_without_a_usable_gpu_says_why_and_auto_uses_the_cpu() {
    if gpu_usable() {
        eprintln!("a GPU is usable here: checked by the GPU test suites instead");
        let model = load(Backend::Auto).expect("AUTO load");
        assert_eq!(model.backend(), Backend::Gpu, "AUTO must take a usable GPU");
        return;
    }
    let why = match load(Backend::Gpu) {
        Err(Error::BackendUnavailable(why)) => why,
        Err(other) => panic!("GPU load: expected BackendUnavailable, got {other}"),
        Ok(_) => panic!("GPU load succeeded although no GPU is usable"),
    };
    if !api::gpu_built_in() {
        assert!(why.contains("not built in"), "{why}");
    } else if cfg!(feature = "rocm") {
        // Debian's HIP runtime is installed on CI machines without an AMD GPU: the runtime is
        // found and reports no device; without the runtime, the loader says it is missing.
        assert!(
            why.contains("no usable device") || why.contains("HIP runtime is not installed"),
            "{why}"
        );
    }
    let model = load(Backend::Auto).expect("AUTO falls back to the CPU");
    assert_eq!(model.backend(), Backend::Cpu);
    assert_eq!(api::devices().expect("devices").len(), 0);
}

/// Runs `test` of this binary in a child process with `env` set (the libraries are opened once
/// per process) and returns its combined output; the child fails on a failed assertion.
fn in_child(test: &str, env: (&str, &str)) -> String {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .env("ROCMFORGE_GPU_RUNTIME_CHILD", "1")
        .output()
        .expect("run child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {test} failed:\n{text}");
    text
}

fn is_child() -> bool {
    std::env::var_os("ROCMFORGE_GPU_RUNTIME_CHILD").is_some()
}

/// In a child whose GPU runtime or BLAS library path names a file that does not exist: GPU is
/// BACKEND_UNAVAILABLE naming that path (the dynamic loader's words), AUTO uses the CPU.
#[test]
fn child_with_a_missing_library() {
    if !is_child() {
        return;
    }
    let why = match load(Backend::Gpu) {
        Err(Error::BackendUnavailable(why)) => why,
        Err(other) => panic!("GPU load: expected BackendUnavailable, got {other}"),
        Ok(_) => panic!("GPU load succeeded without its library"),
    };
    println!("reason: {why}");
    assert!(
        why.contains("/nonexistent/") || why.contains("no usable device"),
        "the reason names neither the missing library nor the missing device: {why}"
    );
    let model = load(Backend::Auto).expect("AUTO falls back to the CPU");
    assert_eq!(model.backend(), Backend::Cpu);
}

#[test]
fn a_missing_hip_runtime_is_named() {
    if !cfg!(feature = "rocm") || is_child() {
        return;
    }
    let out = in_child(
        "child_with_a_missing_library",
        ("ROCMFORGE_HIP_RUNTIME", "/nonexistent/libamdhip64.so.6"),
    );
    assert!(
        out.contains("cannot open the HIP runtime: /nonexistent/libamdhip64.so.6"),
        "{out}"
    );
}

#[test]
fn a_missing_blas_library_is_named() {
    if !api::gpu_built_in() || is_child() {
        return;
    }
    let var = if cfg!(feature = "cuda") {
        "ROCMFORGE_CUBLAS"
    } else {
        "ROCMFORGE_ROCBLAS"
    };
    let out = in_child(
        "child_with_a_missing_library",
        (var, "/nonexistent/libblas.so"),
    );
    // Without a device the runtime's "no device" comes first; with one, the BLAS library is
    // the reason.
    if gpu_usable() {
        assert!(out.contains("/nonexistent/libblas.so"), "{out}");
    }
}
