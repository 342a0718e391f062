//! Dangerous cases run in a child process: the test binary re-executes itself for one test
//! (`--exact <name>`), with an environment variable naming the case, under an address-space
//! limit (RLIMIT_AS) and a wall-clock timeout. An abort, a crash, the OOM path or a hang then
//! fails the parent's assertion instead of taking the test run (or the machine) down.
//!
//! The child reports each library call it makes as one line on stdout
//! (`@@abuse <label> <status> <ms> <message>`, tab-separated), and the parent checks them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Names the case a child runs; absent in the parent, where the child test is a no-op.
pub const CASE_VAR: &str = "ROCMFORGE_ABUSE_CASE";
/// An argument for the case (a path, a size).
pub const ARG_VAR: &str = "ROCMFORGE_ABUSE_ARG";

pub const GIB: u64 = 1 << 30;

/// How a child runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// RLIMIT_AS in bytes (None: unlimited).
    pub address_space: Option<u64>,
    /// The child is killed after this long.
    pub timeout: Duration,
}

impl Limits {
    /// 2 GiB of address space, killed after `secs` seconds.
    pub fn two_gib(secs: u64) -> Limits {
        Limits {
            address_space: Some(2 * GIB),
            timeout: Duration::from_secs(secs),
        }
    }
}

/// One reported call.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: i32,
    pub ms: u64,
    pub message: String,
}

#[derive(Debug)]
pub struct Outcome {
    pub case: String,
    pub exit: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The reported calls by label (the last report of a label wins).
    pub fn reports(&self) -> BTreeMap<String, Report> {
        let mut out = BTreeMap::new();
        for line in self.stdout.lines() {
            // libtest may print "test child ... " on the same line before the first report.
            let Some(rest) = line.find("@@abuse\t").map(|i| &line[i + 8..]) else {
                continue;
            };
            let mut f = rest.splitn(4, '\t');
            let (Some(label), Some(status), Some(ms), message) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            out.insert(
                label.to_string(),
                Report {
                    status: status.parse().unwrap_or(-1),
                    ms: ms.parse().unwrap_or(u64::MAX),
                    message: message.unwrap_or("").to_string(),
                },
            );
        }
        out
    }

    /// Panics unless the child exited with status 0 before its timeout.
    #[track_caller]
    pub fn assert_clean_exit(&self) {
        assert!(
            !self.timed_out && self.exit.is_some_and(|e| e.success()),
            "child case {:?} did not exit normally ({}; after {:.1} s)\n{}",
            self.case,
            self.how(),
            self.elapsed.as_secs_f64(),
            self.transcript()
        );
    }

    /// The report for `label`; panics (with the transcript) when the child never made it.
    #[track_caller]
    pub fn report(&self, label: &str) -> Report {
        self.reports().remove(label).unwrap_or_else(|| {
            panic!(
                "child case {:?} did not report {label:?}\n{}",
                self.case,
                self.transcript()
            )
        })
    }

    fn how(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (self.timed_out, self.exit) {
            (true, _) => "killed at the timeout: it hung".into(),
            (false, Some(e)) => match e.signal() {
                Some(sig) => format!("killed by signal {sig}"),
                None => format!("exit code {:?}", e.code()),
            },
            (false, None) => "no exit status".into(),
        }
    }

    /// The child's output, shortened for an assertion message.
    pub fn transcript(&self) -> String {
        fn tail(s: &str) -> &str {
            let mut start = s.len().saturating_sub(6000);
            while !s.is_char_boundary(start) {
                start += 1;
            }
            &s[start..]
        }
        format!(
            "--- child stdout (tail) ---\n{}\n--- child stderr (tail) ---\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// The case this process should run as a child, if any.
pub fn case() -> Option<String> {
    std::env::var(CASE_VAR).ok()
}

pub fn arg() -> String {
    std::env::var(ARG_VAR).unwrap_or_default()
}

/// Reports one call (from the child) and flushes, so a crash right after still shows it.
pub fn report(label: &str, status: i32, elapsed: Duration, message: &str) {
    let message = message.replace(['\t', '\n'], " ");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "@@abuse\t{label}\t{status}\t{}\t{message}",
        elapsed.as_millis()
    );
    let _ = out.flush();
}

/// Runs test `child_test` of this binary as a child for `case` (with `arg`) under `limits`.
pub fn run(child_test: &str, case: &str, arg: &str, limits: Limits) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .env(ARG_VAR, arg)
        // glibc reserves 64 MiB of address space per malloc arena (up to 8 per core): keep
        // the limit about the library's own allocations, not the allocator's reservations.
        .env("MALLOC_ARENA_MAX", "2")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bytes) = limits.address_space {
        // SAFETY: the closure runs between fork and exec and only calls setrlimit, which is
        // async-signal-safe; it touches no locks or allocations of the parent.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn the child test process");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= limits.timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let elapsed = start.elapsed();
    Outcome {
        case: case.to_string(),
        exit,
        timed_out,
        elapsed,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
