//! Opening and reading files named by callers, which are untrusted: a path may name a
//! directory, a device that never ends (`/dev/zero`), a FIFO that would block forever, or a file
//! larger than memory. Only regular files are read, never past the size they had when opened.

use crate::{Error, Result};
use std::fs::File;
use std::path::Path;

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens a regular file for reading and returns it with its size. Opening does not block on a
/// FIFO (it is refused like every other non-regular file).
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO opened for reading waits for a writer unless non-blocking; for regular files
        // the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is {kind}")),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file of at most `limit` bytes into memory (the allocation fallible),
/// reporting the fraction read to `progress` (which may stop the read with its error) every
/// `step` bytes.
pub fn read_regular(
    path: &Path,
    limit: u64,
    step: usize,
    progress: &mut dyn FnMut(f32) -> Result<()>,
) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) = open_regular(path)?;
    if len > limit {
        return Err(Error::InvalidArgument(format!(
            "'{}' holds {len} bytes, more than the {limit} this read accepts",
            path.display()
        )));
    }
    let len = usize::try_from(len)
        .map_err(|_| Error::OutOfMemory(format!("{len} bytes to read '{}'", path.display())))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory(format!("{len} bytes to read '{}'", path.display())))?;
    // Never more than the size at open, even if the file grows meanwhile.
    let mut reader = file.take(len as u64);
    let step = step.max(1);
    loop {
        let want = step.min(len - bytes.len());
        if want == 0 {
            break;
        }
        let before = bytes.len();
        (&mut reader)
            .take(want as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, e))?;
        if bytes.len() == before {
            break; // the file shrank: the parser reports it truncated
        }
        progress(bytes.len() as f32 / len.max(1) as f32)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_oversized_files_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), u64::MAX, 1 << 20, &mut |_| Ok(()));
        assert!(matches!(e, Err(Error::Io { .. })), "{e:?}");
        let e = read_regular(Path::new("/"), u64::MAX, 1 << 20, &mut |_| Ok(()));
        assert!(e.unwrap_err().to_string().contains("directory"));
        let path = std::env::temp_dir().join(format!("rf-fileio-{}", std::process::id()));
        std::fs::write(&path, [7u8; 100]).unwrap();
        assert!(read_regular(&path, 99, 10, &mut |_| Ok(())).is_err());
        let mut reports = Vec::new();
        let bytes = read_regular(&path, 100, 30, &mut |f| {
            reports.push(f);
            Ok(())
        })
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes, [7u8; 100]);
        assert_eq!(reports, [0.3, 0.6, 0.9, 1.0]);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let path = std::env::temp_dir().join(format!("rf-fifo-{}", std::process::id()));
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_regular(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e, Err(Error::Io { .. })), "{e:?}");
    }
}
