//! Runs a template render where it cannot take the process down.
//!
//! On Linux the render runs in a forked child: the child inherits the template and messages
//! (nothing is serialised), lowers its own address-space limit to what it already maps plus
//! [`Limits::max_memory`], renders, writes one frame (tag u8, length u64 LE, bytes) into a pipe
//! and `_exit`s. The parent reads the frame under [`Limits::timeout`] and kills the child when
//! the deadline passes; a child that ran out of memory aborts, which the parent reports as an
//! error. The child only allocates and computes (glibc's allocator is fork-safe), never returns
//! into the caller's code, and skips exit handlers. Elsewhere the render runs in process,
//! bounded by instructions and output only.

use super::Limits;
use crate::{Error, Result};

#[cfg(not(target_os = "linux"))]
pub(super) fn run(_limits: Limits, render: impl FnOnce() -> Result<String>) -> Result<String> {
    render()
}

#[cfg(target_os = "linux")]
pub(super) use linux::run;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::{Duration, Instant};

    const TAG_TEXT: u8 = 0;
    const TAG_ERROR: u8 = 1;
    const TAG_PANIC: u8 = 2;
    const FRAME_HEAD: usize = 9;

    fn sandbox_error(what: &str) -> Error {
        Error::Template(format!(
            "cannot start the template sandbox ({what}: {})",
            std::io::Error::last_os_error()
        ))
    }

    /// The address space mapped now, in bytes (VmSize).
    fn mapped_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
        let kib: u64 = line["VmSize:".len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    pub(in crate::chat) fn run(
        limits: Limits,
        render: impl FnOnce() -> Result<String>,
    ) -> Result<String> {
        let mapped = mapped_bytes().ok_or_else(|| sandbox_error("reading VmSize"))?;
        let memory_limit = mapped.saturating_add(limits.max_memory);
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(sandbox_error("pipe"));
        }
        let [read_fd, write_fd] = fds;
        // SAFETY: fork has no memory-safety preconditions; the child below only computes,
        // allocates, writes to its pipe and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = sandbox_error("fork");
            close(read_fd);
            close(write_fd);
            return Err(e);
        }
        if pid == 0 {
            close(read_fd);
            child(write_fd, memory_limit, render);
        }
        close(write_fd);
        let frame = read_frame(read_fd, pid, &limits);
        close(read_fd);
        let exit = reap(pid);
        match frame {
            Frame::Complete(TAG_TEXT, body) => String::from_utf8(body)
                .map_err(|_| Error::Template("the template produced invalid UTF-8".into())),
            Frame::Complete(TAG_ERROR, body) => {
                Err(Error::Template(String::from_utf8_lossy(&body).into_owned()))
            }
            Frame::Complete(_, body) => Err(Error::Template(format!(
                "internal fault while rendering the template: {}",
                String::from_utf8_lossy(&body)
            ))),
            Frame::TimedOut => Err(Error::Template(format!(
                "the template ran past its time limit of {:.1} s and was stopped",
                limits.timeout.as_secs_f64()
            ))),
            Frame::TooLarge => Err(Error::Template(format!(
                "the rendered text passed the limit of {} bytes",
                limits.max_output
            ))),
            Frame::Incomplete => Err(Error::Template(format!(
                "the template render ended abnormally ({exit}); its memory limit is {} MiB \
                 above the process's size",
                limits.max_memory >> 20
            ))),
        }
    }

    /// The child's whole life: never returns.
    fn child(fd: i32, memory_limit: u64, render: impl FnOnce() -> Result<String>) -> ! {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: get/setrlimit read and write one rlimit struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_AS, &mut limit) == 0 {
                limit.rlim_cur = limit.rlim_cur.min(memory_limit as libc::rlim_t);
                libc::setrlimit(libc::RLIMIT_AS, &limit);
            }
        }
        let (tag, body) = match catch_unwind(AssertUnwindSafe(render)) {
            Ok(Ok(text)) => (TAG_TEXT, text.into_bytes()),
            Ok(Err(Error::Template(message))) => (TAG_ERROR, message.into_bytes()),
            Ok(Err(e)) => (TAG_ERROR, e.to_string().into_bytes()),
            Err(_) => (TAG_PANIC, b"the renderer panicked".to_vec()),
        };
        let mut head = [0u8; FRAME_HEAD];
        head[0] = tag;
        head[1..].copy_from_slice(&(body.len() as u64).to_le_bytes());
        let _ = write_all(fd, &head) && write_all(fd, &body);
        // SAFETY: _exit ends the child without running the parent's exit handlers or
        // destructors (they belong to the parent's state).
        unsafe { libc::_exit(0) }
    }

    fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a live buffer of the length passed.
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return false;
            }
            bytes = &bytes[n as usize..];
        }
        true
    }

    fn close(fd: i32) {
        // SAFETY: closing a descriptor this function's caller owns.
        unsafe { libc::close(fd) };
    }

    enum Frame {
        Complete(u8, Vec<u8>),
        Incomplete,
        TimedOut,
        TooLarge,
    }

    /// Reads the child's frame until it is complete, the child is gone and the pipe drained,
    /// or the deadline passes (then the child is killed). EOF alone is not trusted: another
    /// thread's sandbox child forked meanwhile may hold a copy of the pipe's write end.
    fn read_frame(fd: i32, pid: libc::pid_t, limits: &Limits) -> Frame {
        let deadline = Instant::now() + limits.timeout;
        let cap = FRAME_HEAD + limits.max_output + (64 << 10);
        let mut bytes: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut child_gone = false;
        loop {
            if let Some(frame) = complete(&bytes) {
                return frame;
            }
            if bytes.len() > cap {
                kill(pid);
                return Frame::TooLarge;
            }
            let now = Instant::now();
            if now >= deadline {
                kill(pid);
                return Frame::TimedOut;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own.
            let ready = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
            if ready > 0 {
                // SAFETY: `buf` is a live buffer of the length passed.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    if bytes.try_reserve(n as usize).is_err() {
                        kill(pid);
                        return Frame::TooLarge;
                    }
                    bytes.extend_from_slice(&buf[..n as usize]);
                    continue;
                }
                if n == 0 {
                    return Frame::Incomplete; // EOF before a whole frame
                }
            }
            if child_gone {
                return Frame::Incomplete; // exited, and nothing more came
            }
            // Poll once more after the child is seen gone, to drain what it wrote last.
            child_gone = exited(pid);
        }
    }

    fn complete(bytes: &[u8]) -> Option<Frame> {
        let head = bytes.get(..FRAME_HEAD)?;
        let len = u64::from_le_bytes(head[1..].try_into().ok()?);
        let body = bytes.get(FRAME_HEAD..)?;
        (body.len() as u64 >= len).then(|| Frame::Complete(head[0], body[..len as usize].to_vec()))
    }

    fn kill(pid: libc::pid_t) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    /// Whether the child has ended (without reaping it).
    fn exited(pid: libc::pid_t) -> bool {
        // SAFETY: waitid with WNOWAIT only inspects our own child.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            // ECHILD: the host ignores SIGCHLD and the child was reaped already.
            r != 0 || info.si_pid() != 0
        }
    }

    /// Reaps the child and says how it ended.
    fn reap(pid: libc::pid_t) -> String {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return "its exit status is unknown".into();
            }
        }
        if libc::WIFSIGNALED(status) {
            format!("stopped by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(status))
        }
    }
}
