//! Who may own the API socket and its directory.
//!
//! The socket carries join tokens both ways, so a socket planted by another local user (for
//! example in a shared temporary directory, before the daemon starts) must never be trusted:
//! the CLI talks only to a socket, in a directory, owned by itself or root, and the daemon only
//! listens in a directory it owns (or root's, with the sticky bit where others may write).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A socket or directory owned by someone the caller must not trust.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnerError {
    #[error("refusing the API socket {path}: it belongs to {owner}, not to you ({me}) or root; another user may have planted it to read what you send. Remove it, or point -H at your daemon's socket")]
    Socket {
        path: PathBuf,
        owner: String,
        me: String,
    },
    #[error("refusing the API socket directory {path}: it belongs to {owner}, not to you ({me}) or root; another user may have planted it. Remove it, or pick another socket with -H")]
    Dir {
        path: PathBuf,
        owner: String,
        me: String,
    },
    #[error("refusing the API socket directory {path}: other users may write to it (mode {mode:o}, no sticky bit) and so replace the socket. Tighten it (chmod 700) or pick another socket with -H")]
    Writable { path: PathBuf, mode: u32 },
    #[error("refusing the daemon at {path}: the process answering on it runs as {owner}, not as you ({me}) or root")]
    Peer {
        path: PathBuf,
        owner: String,
        me: String,
    },
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// `uid 1000 (alice)`, or `uid 1000` when /etc/passwd does not name it.
pub fn describe_uid(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        });
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

fn trusted(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

/// The checks the CLI makes before connecting: the socket (if it exists) and its directory
/// belong to `me` or root, and the directory is not open to other writers.
pub fn check_client_socket(path: &Path, me: u32) -> Result<(), OwnerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_dir(dir, me)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // A symlink's target is what connect() reaches: check that, not the link.
        let meta = if meta.file_type().is_symlink() {
            match std::fs::metadata(path) {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        } else {
            meta
        };
        if !trusted(meta.uid(), me) {
            return Err(OwnerError::Socket {
                path: path.to_path_buf(),
                owner: describe_uid(meta.uid()),
                me: describe_uid(me),
            });
        }
    }
    Ok(())
}

/// A directory that may hold `me`'s socket: owned by `me` or root, and if others may write to
/// it, sticky (as /tmp), so they cannot replace what `me` puts there.
pub fn check_dir(dir: &Path, me: u32) -> Result<(), OwnerError> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if !trusted(meta.uid(), me) {
        return Err(OwnerError::Dir {
            path: dir.to_path_buf(),
            owner: describe_uid(meta.uid()),
            me: describe_uid(me),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(OwnerError::Writable {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The check on the process that accepted the CLI's connection.
pub fn check_peer(path: &Path, peer_uid: u32, me: u32) -> Result<(), OwnerError> {
    if trusted(peer_uid, me) {
        Ok(())
    } else {
        Err(OwnerError::Peer {
            path: path.to_path_buf(),
            owner: describe_uid(peer_uid),
            me: describe_uid(me),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_and_root_are_trusted_others_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let me = euid();
        let sock = dir.path().join("s.sock");
        assert_eq!(check_client_socket(&sock, me), Ok(()));
        std::fs::write(&sock, b"").unwrap();
        assert_eq!(check_client_socket(&sock, me), Ok(()));
        // Seen from another uid, the same files are someone else's (unless they are root's).
        let other = me + 4242;
        match check_client_socket(&sock, other) {
            Ok(()) => assert_eq!(me, 0, "only root's files pass for others"),
            Err(e) => assert!(e.to_string().contains("belongs to"), "{e}"),
        }
        assert!(check_peer(&sock, other, me).is_err() || me == 0);
        assert!(check_peer(&sock, 0, other).is_ok());
    }

    #[test]
    fn a_world_writable_directory_without_sticky_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_dir(dir.path(), euid()).unwrap_err();
        assert!(err.to_string().contains("mode 777"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_dir(dir.path(), euid()), Ok(()));
    }
}
