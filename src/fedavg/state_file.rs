//! Files that survive a crash: written atomically, checked when read back.
//!
//! A file is written to a temporary name in the same directory, flushed to
//! disk (`fsync`), renamed over its final name, and the directory is flushed
//! too, so after a crash (kill -9, power loss) the final name holds either the
//! old or the new content, never a mix. Temporary files left by a crash start
//! with `.` and end with `.tmp`; [`remove_temporary_files`] deletes them.
//!
//! Layout of a file: the magic `OFLSTATE`, the payload length (u64, little
//! endian), the SHA-256 of the payload, then the payload. A file that is
//! shorter or longer than its header says, or whose checksum does not match,
//! is refused with `DataLoss` naming the file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};

use crate::error::{ofl_code, Error, Result};

const MAGIC: &[u8; 8] = b"OFLSTATE";
const HEADER_LEN: usize = MAGIC.len() + 8 + SHA256_OUTPUT_LEN;
const TEMPORARY_SUFFIX: &str = ".tmp";

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}: {e}", path.display()))
}

/// Writes `payload` to `dir/name` atomically and durably (see the module docs).
pub fn write_atomic(dir: &Path, name: &str, payload: &[u8]) -> Result<()> {
    let temporary = dir.join(format!(".{name}{TEMPORARY_SUFFIX}"));
    let target = dir.join(name);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(digest(&SHA256, payload).as_ref());
    let mut file = File::create(&temporary).map_err(|e| io_error("creating", &temporary, e))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(payload))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &temporary, e))?;
    drop(file);
    fs::rename(&temporary, &target).map_err(|e| io_error("renaming into place", &target, e))?;
    sync_dir(dir)
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("flushing directory", dir, e))
}

/// The payload of a file written by [`write_atomic`]; `DataLoss` naming the
/// file when it is truncated, too long, or fails its checksum.
pub fn read_checked(path: &Path) -> Result<Bytes> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_error("reading", path, e))?;
    let corrupt = |why: String| {
        Error::new(
            ofl_code::DataLoss,
            format!(
                "state file {} is corrupt ({why}); it was not written by this library or was damaged \
                 after it was written: restore it from a backup or move the state directory away to \
                 start over",
                path.display()
            ),
        )
    };
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(format!("{} bytes, no valid header", bytes.len())));
    }
    let declared = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if declared != actual {
        return Err(corrupt(format!("header says {declared} payload bytes, file holds {actual}")));
    }
    let mut bytes = Bytes::from(bytes);
    let header = bytes.split_to(HEADER_LEN);
    if digest(&SHA256, &bytes).as_ref() != &header[16..] {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(bytes)
}

/// Deletes the temporary files a crash left in `dir`; returns how many.
pub fn remove_temporary_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))? {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TEMPORARY_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io_error("removing", &path, e))?;
            log::warn!("state directory: removed {}, left half-written by an earlier crash", path.display());
            removed += 1;
        }
    }
    Ok(removed)
}

/// The files of `dir` whose names start with `prefix`, with the rest of
/// their names.
pub fn list_with_prefix(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))? {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(prefix) {
            found.push((rest.to_string(), entry.path()));
        }
    }
    Ok(found)
}

/// An exclusive lock on a directory (`flock` on its `lock` file), held while
/// this lives; the kernel releases it when the process dies, even by kill -9.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir`, or `FailedPrecondition` when another holder (this or
    /// another process) has it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        // (One of the crate's few unsafe exceptions: std has no flock.)
        #[allow(unsafe_code)]
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let e = std::io::Error::last_os_error();
            return Err(Error::new(
                ofl_code::FailedPrecondition,
                format!("state directory {} is in use by another aggregator ({e})", dir.display()),
            ));
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"hello state").unwrap();
        assert_eq!(&read_checked(&dir.path().join("f")).unwrap()[..], b"hello state");
        let path = dir.path().join("f");
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        fs::write(&path, &flipped).unwrap();
        let err = read_checked(&path).unwrap_err();
        assert_eq!(err.code(), ofl_code::DataLoss);
        assert!(err.message().contains("checksum mismatch") && err.message().contains("/f"), "{err}");

        fs::write(&path, &good[..good.len() - 3]).unwrap();
        let err = read_checked(&path).unwrap_err();
        assert_eq!(err.code(), ofl_code::DataLoss);
        assert!(err.message().contains("file holds 8"), "{err}");

        fs::write(&path, b"OFL").unwrap();
        assert_eq!(read_checked(&path).unwrap_err().code(), ofl_code::DataLoss);
    }

    #[test]
    fn temporary_files_are_removed_and_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".federation.state.tmp"), b"half").unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        assert_eq!(remove_temporary_files(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep").exists());
        let lock = DirLock::acquire(dir.path()).unwrap();
        assert_eq!(DirLock::acquire(dir.path()).unwrap_err().code(), ofl_code::FailedPrecondition);
        drop(lock);
        DirLock::acquire(dir.path()).unwrap();
    }
}
