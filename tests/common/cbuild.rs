//! Building and running native programs against the C library: the library's .so/.a built
//! with the tests' profile, commands that must succeed, a cross-process lock for shared
//! install folders, valgrind, and the soname policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>, where cargo put librocmforge.{so,a} next to this test's deps/ folder.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Holds an exclusive flock on a file until dropped.
pub struct FileLock(std::fs::File);

impl FileLock {
    pub fn acquire(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::create(path).expect("lock file");
        // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        FileLock(file)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Cargo builds only the rlib of a library that tests depend on, so the .so and .a may be
/// missing or stale: build them now, with the profile and GPU feature of these tests (a no-op
/// when fresh).
pub fn build_c_library(profile_dir: &Path) {
    let target = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "test",
        Some(other) => other,
        None => panic!("unexpected target dir {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--lib", "--profile", profile]);
    if cfg!(feature = "rocm") {
        cmd.args(["--features", "rocm"]);
    }
    if cfg!(feature = "cuda") {
        cmd.args(["--features", "cuda"]);
    }
    run(cmd
        .arg("--target-dir")
        .arg(target)
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml")));
}

/// A stamp of the built librocmforge.so (modification time and size), to reuse what was
/// installed from that same build.
pub fn library_stamp(profile_dir: &Path) -> String {
    let so = profile_dir.join("librocmforge.so");
    assert!(
        so.exists() && profile_dir.join("librocmforge.a").exists(),
        "cargo did not leave librocmforge.so/.a in {}",
        profile_dir.display()
    );
    let meta = std::fs::metadata(&so).expect("librocmforge.so metadata");
    format!("{:?} {}", meta.modified().ok(), meta.len())
}

/// The soname's version under the soname policy (docs/C_API.md): MAJOR.MINOR while the major
/// version is 0, MAJOR from 1.0 on.
pub fn soversion() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("0.{minor}")
    } else {
        major.to_string()
    }
}

/// valgrind with leak checking; errors or leaks make it exit with 99. `input` goes to stdin.
pub fn valgrind(program: &Path, args: &[&std::ffi::OsStr], input: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect",
        "--quiet",
    ])
    .arg(program)
    .args(args)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("valgrind output");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Test programs print "N passed, M failed" last (tests/c/test_api.c, tests/cpp/test_hpp.cpp).
pub fn check_passed(out: &Output) {
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(
        last.ends_with(" passed, 0 failed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
