//! Advisory file locks (flock) that claim something for as long as a process holds them: a
//! node's run, the namespace directory while a namespace is claimed. The kernel drops a lock
//! when its holder dies, so a crash never leaves a claim behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is already running (pid {pid}; lock {path})")]
    Held {
        what: String,
        pid: String,
        path: PathBuf,
    },
    // (Not a `source` field: the message already says it, and a chain would repeat it.)
    #[error("cannot lock {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// A file held under an exclusive flock until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    let err = |cause| LockError::Io {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)
}

impl FileLock {
    /// Claims `path` for this process without waiting, and writes the pid into it. When another
    /// process holds it, says so naming `what` and the holder's pid.
    pub fn claim(path: &Path, what: &str) -> Result<FileLock, LockError> {
        let mut file = open(path)?;
        if let Err(e) = flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            if e.kind() == io::ErrorKind::WouldBlock {
                // The holder writes its pid right after taking the lock: give it a moment.
                let mut pid = String::new();
                for _ in 0..50 {
                    pid.clear();
                    let _ = file.rewind();
                    let _ = file.read_to_string(&mut pid);
                    if pid.ends_with('\n') {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                let pid = pid.trim();
                return Err(LockError::Held {
                    what: what.to_string(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                    path: path.to_path_buf(),
                });
            }
            return Err(LockError::Io {
                path: path.to_path_buf(),
                cause: e,
            });
        }
        let write = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write(&mut file).map_err(|cause| LockError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Waits for `path`'s lock (for short critical sections between processes).
    pub fn wait(path: &Path) -> Result<FileLock, LockError> {
        let file = open(path)?;
        flock(&file, libc::LOCK_EX).map_err(|cause| LockError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock; unlock first so that a descriptor
        // inherited by a child (none are: std opens with O_CLOEXEC) could not keep it.
        let _ = flock(&self.file, libc::LOCK_UN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_fails_naming_the_holder_and_succeeds_after_release() {
        let dir = std::env::temp_dir().join(format!("swarmnet-lock-{}", std::process::id()));
        let path = dir.join("run.lock");
        let first = FileLock::claim(&path, "node n").unwrap();
        let err = FileLock::claim(&path, "node n").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "node n is already running (pid {}; lock {})",
                std::process::id(),
                path.display()
            )
        );
        drop(first);
        let again = FileLock::claim(&path, "node n").unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
