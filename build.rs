//! Build script: compiles the GPU kernels in `kernels/*.hip` when a GPU feature is on.
//!
//! - feature `cuda`: nvcc compiles the HIP sources as CUDA through `kernels/hip_compat.h`
//!   (Hopper by default; `ROCMFORGE_CUDA_ARCHS`, e.g. "80,90"), links the static cudart (which
//!   opens the driver, libcuda, at run time itself). cuBLAS is opened at run time
//!   (kernels/blas.hip). nvcc is taken from `ROCMFORGE_CUDA_HOME`, else `CUDA_HOME`/`CUDA_PATH`,
//!   else the pip toolchain in `.cuda/` of this checkout, else `/usr/local/cuda`.
//! - feature `rocm`: hipcc (from `ROCM_PATH`/bin, else PATH: Debian's HIP 5.2 is enough)
//!   compiles for explicit targets (`ROCMFORGE_HIP_ARCHS`, default gfx90a,gfx942,gfx1030,gfx1100;
//!   Debian's hipcc builds gfx90a and gfx1030 only). Nothing links against ROCm: the kernel
//!   objects' references to the HIP runtime are renamed onto kernels/amd_runtime_loader.c, which
//!   opens libamdhip64 at run time, and rocBLAS is opened likewise (kernels/blas.hip).
//!   `ROCMFORGE_WAVE64_EMULATION=1` makes a test build in which the kernels see 64-lane waves
//!   as on AMD CDNA (kernels/arch.h): slow, for the GPU parity tests only.
//! - neither: no GPU code is built.
//!
//! So a GPU build's librocmforge.so needs no GPU library to load: without one, the GPU answers
//! BACKEND_UNAVAILABLE with the loader's reason and AUTO runs on the CPU.
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCES: &[&str] = &[
    "runtime",
    "embed",
    "act",
    "matvec",
    "matmul_q",
    "rope_kv",
    "attention",
    "attention_prefill",
    "blas",
    "wave_check",
];
const HEADERS: &[&str] = &[
    "hip_compat.h",
    "arch.h",
    "quant.h",
    "qgroup.h",
    "numerics.h",
    "kv_cache.h",
    "rope_store.h",
    "rf_kernels.h",
    "rf_errors.h",
    "amd_runtime_loader.c",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in [
        "ROCMFORGE_CUDA_HOME",
        "CUDA_HOME",
        "CUDA_PATH",
        "ROCMFORGE_CUDA_ARCHS",
        "ROCMFORGE_HIP_ARCHS",
        "ROCM_PATH",
        "ROCMFORGE_WAVE64_EMULATION",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    // The C library's soname follows the soname policy (docs/C_API.md) from Cargo.toml's
    // version (the one place it is defined): librocmforge.so.0.<minor> while the major version
    // is 0, since a 0.x minor release may change the ABI; librocmforge.so.<major> from 1.0 on.
    // scripts/install.sh checks the built soname against the same rule.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
        let soversion = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librocmforge.so.{soversion}");
    }
    let cuda = std::env::var_os("CARGO_FEATURE_CUDA").is_some();
    let rocm = std::env::var_os("CARGO_FEATURE_ROCM").is_some();
    if cuda && rocm {
        panic!("features `cuda` and `rocm` are exclusive: build one GPU backend at a time");
    }
    if wave64_emulation() && rocm {
        panic!("ROCMFORGE_WAVE64_EMULATION=1 is a test build of the `cuda` feature, not `rocm`");
    }
    if !cuda && !rocm {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernels = manifest.join("kernels");
    for f in SOURCES
        .iter()
        .map(|s| format!("{s}.hip"))
        .chain(HEADERS.iter().map(|s| s.to_string()))
    {
        println!("cargo:rerun-if-changed={}", kernels.join(f).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let objects = if cuda {
        build_cuda(&manifest, &kernels, &out)
    } else {
        build_rocm(&kernels, &out)
    };
    archive(&objects, &out.join("librfkernels.a"));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=rfkernels");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !status.success() {
        panic!("GPU kernel compile failed: {cmd:?}");
    }
}

fn archive(objects: &[PathBuf], lib: &Path) {
    let _ = std::fs::remove_file(lib);
    run(Command::new("ar").arg("crs").arg(lib).args(objects));
}

fn cuda_home(manifest: &Path) -> PathBuf {
    for v in ["ROCMFORGE_CUDA_HOME", "CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = std::env::var_os(v) {
            return PathBuf::from(p);
        }
    }
    // The pinned pip toolchain (see shared/GPU.md): .cuda/lib/python3.*/site-packages/nvidia/cu13
    if let Ok(entries) = std::fs::read_dir(manifest.join(".cuda/lib")) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/nvidia/cu13");
            if p.join("bin/nvcc").exists() {
                return p;
            }
        }
    }
    PathBuf::from("/usr/local/cuda")
}

/// Whether the wave-64 emulation test build is asked for (kernels/arch.h).
fn wave64_emulation() -> bool {
    std::env::var("ROCMFORGE_WAVE64_EMULATION").is_ok_and(|v| v == "1")
}

fn build_cuda(manifest: &Path, kernels: &Path, out: &Path) -> Vec<PathBuf> {
    let home = cuda_home(manifest);
    let nvcc = home.join("bin/nvcc");
    let archs = std::env::var("ROCMFORGE_CUDA_ARCHS").unwrap_or_else(|_| "90".into());
    let mut objects = Vec::new();
    for src in SOURCES {
        let obj = out.join(format!("{src}.o"));
        let mut cmd = Command::new(&nvcc);
        // No contraction of a * b + c into fma: the kernels must round as the CPU backend
        // does (kernels/numerics.h); they write fmaf where they want one.
        cmd.args([
            "-x",
            "cu",
            "-std=c++17",
            "-O3",
            "--fmad=false",
            "-Xcompiler",
            "-fPIC",
        ]);
        for a in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            cmd.arg(format!("-gencode=arch=compute_{a},code=sm_{a}"));
        }
        if wave64_emulation() {
            cmd.arg("-DRF_WAVE64_EMULATION=1");
        }
        cmd.arg(format!("-I{}", home.join("include").display()));
        cmd.arg(format!("-I{}", home.join("include/cccl").display()));
        cmd.arg("-c")
            .arg(kernels.join(format!("{src}.hip")))
            .arg("-o")
            .arg(&obj);
        run(&mut cmd);
        objects.push(obj);
    }
    let lib_dir = [home.join("lib64"), home.join("lib")]
        .into_iter()
        .find(|d| d.join("libcudart_static.a").exists())
        .unwrap_or_else(|| home.join("lib64"));
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    for l in ["dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    objects
}

fn build_rocm(kernels: &Path, out: &Path) -> Vec<PathBuf> {
    let rocm = PathBuf::from(std::env::var("ROCM_PATH").unwrap_or_else(|_| "/opt/rocm".into()));
    let hipcc = [rocm.join("bin/hipcc"), PathBuf::from("hipcc")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("hipcc"));
    let archs = std::env::var("ROCMFORGE_HIP_ARCHS")
        .unwrap_or_else(|_| "gfx90a,gfx942,gfx1030,gfx1100".into());
    let mut objects = Vec::new();
    for src in SOURCES {
        let obj = out.join(format!("{src}.o"));
        let mut cmd = Command::new(&hipcc);
        // No contraction, as for CUDA above (kernels/numerics.h).
        cmd.args([
            "-x",
            "hip",
            "-std=c++17",
            "-O3",
            "-ffp-contract=off",
            "-fPIC",
        ]);
        for a in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            cmd.arg(format!("--offload-arch={a}"));
        }
        cmd.arg("-c")
            .arg(kernels.join(format!("{src}.hip")))
            .arg("-o")
            .arg(&obj);
        run(&mut cmd);
        objects.push(obj);
    }
    let loader = out.join("amd_runtime_loader.o");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .args(["-std=c11", "-O2", "-fPIC", "-Wall", "-Werror", "-c"])
        .arg(kernels.join("amd_runtime_loader.c"))
        .arg("-o")
        .arg(&loader));
    redirect_runtime_calls(&objects, &loader, out);
    objects.push(loader);
    for l in ["dl", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    objects
}

/// Renames, in each kernel object, every reference to a HIP runtime function `f` to the
/// loader's `rfrt_f`, so that nothing links against libamdhip64 (and a program that links both
/// our static library and the real runtime sees no clash). Fails the build when a kernel calls
/// a runtime function the loader does not forward: add it to kernels/amd_runtime_loader.c.
fn redirect_runtime_calls(objects: &[PathBuf], loader: &Path, out: &Path) {
    let symbols = |args: &[&str], obj: &Path| -> Vec<String> {
        let output = Command::new("nm")
            .args(args)
            .arg(obj)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nm: {e}"));
        assert!(output.status.success(), "nm failed on {}", obj.display());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect()
    };
    let forwarded: Vec<String> = symbols(&["--defined-only"], loader)
        .into_iter()
        .filter_map(|s| s.strip_prefix("rfrt_").map(str::to_string))
        .collect();
    let map = out.join("hip-runtime-redirects.txt");
    let lines: String = forwarded
        .iter()
        .map(|f| format!("{f} rfrt_{f}\n"))
        .collect();
    std::fs::write(&map, lines).expect("write the redirect map");
    for obj in objects {
        run(Command::new("objcopy")
            .arg(format!("--redefine-syms={}", map.display()))
            .arg(obj));
        let missing: Vec<String> = symbols(&["-u"], obj)
            .into_iter()
            .filter(|s| s.starts_with("hip") || s.starts_with("__hip"))
            .collect();
        if !missing.is_empty() {
            panic!(
                "{} calls HIP runtime functions that kernels/amd_runtime_loader.c does not \
                 forward: {}",
                obj.display(),
                missing.join(", ")
            );
        }
    }
}
