//! A task's output: copied from its pipes into its log file, and read back.
//!
//! One JSON object a line, `{"t":"2026-12-03T23:04:15.123456789Z","stream":"stdout","line":"..."}`
//! (UTC, always nine fractional digits, so `t` sorts as text). An output line longer than
//! [`MAX_LINE`] bytes is cut into several; bytes that are not UTF-8 are replaced. The file is
//! rotated at [`LOG_ROTATE_BYTES`] to `PATH.1` (one old file kept). The copying holds at most
//! one partial line per stream and one read buffer; writes are synchronous, so a slow disk slows
//! the copying, and through the pipe the process, never memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A task's log is rotated when it would grow past this (one old file is kept).
pub const LOG_ROTATE_BYTES: u64 = 1 << 20;
/// Longest output line kept as one log line; longer ones are cut (Docker cuts at 16 KiB too).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was read, RFC 3339 UTC with nine fractional digits.
    pub t: String,
    pub stream: Stream,
    pub line: String,
}

/// `t` as RFC 3339 UTC with nine fractional digits.
pub fn timestamp(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.nanosecond()
    )
}

/// A task's log file, rotated at a size limit.
pub(super) struct LogFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    limit: u64,
    /// Whether a write error has been logged (once until writes work again).
    failing: bool,
}

impl LogFile {
    pub(super) fn open(path: &Path, limit: u64) -> io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            limit,
            failing: false,
        })
    }

    fn old_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        PathBuf::from(p)
    }

    fn write_line(&mut self, stream: Stream, bytes: &[u8], at: &str) {
        let line = LogLine {
            t: at.to_string(),
            stream,
            line: String::from_utf8_lossy(bytes).into_owned(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if let Err(e) = self.append(text.as_bytes()) {
            if !self.failing {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write a task's log; its output is dropped until it can");
                self.failing = true;
            }
        } else {
            self.failing = false;
        }
    }

    fn append(&mut self, text: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + text.len() as u64 > self.limit {
            self.file.flush()?;
            std::fs::rename(&self.path, Self::old_path(&self.path))?;
            let file = File::options()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&self.path)?;
            self.file = BufWriter::new(file);
            self.size = 0;
        }
        self.file.write_all(text)?;
        self.size += text.len() as u64;
        Ok(())
    }

    fn flush(&mut self) {
        let _ = self.file.flush();
    }
}

/// Cuts a stream of bytes into lines of at most `MAX_LINE` bytes, holding at most one partial
/// line.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds `bytes`, calling `emit` with each complete line (without its newline).
    fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    if self.partial.is_empty() {
                        emit(&bytes[..i]);
                    } else {
                        self.partial.extend_from_slice(&bytes[..i]);
                        emit(&self.partial);
                        self.partial.clear();
                    }
                    bytes = &bytes[i + 1..];
                }
                None if bytes.len() >= room => {
                    self.partial.extend_from_slice(&bytes[..room]);
                    emit(&self.partial);
                    self.partial.clear();
                    bytes = &bytes[room..];
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// The last line, if the stream ended without a newline.
    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// Copies a process's stdout and stderr into its log until both are closed.
pub(super) fn pump(out: OwnedFd, err: OwnedFd, mut log: LogFile) {
    let mut fds = [
        (File::from(out), Lines::default(), Stream::Stdout, true),
        (File::from(err), Lines::default(), Stream::Stderr, true),
    ];
    let mut buf = vec![0u8; 64 * 1024];
    while fds.iter().any(|f| f.3) {
        // A negative fd is skipped by poll: a closed stream.
        let mut pfds = fds.each_ref().map(|f| libc::pollfd {
            fd: if f.3 { f.0.as_raw_fd() } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: poll reads and writes only the pollfd array we own, of the length given.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for (f, p) in fds.iter_mut().zip(&pfds) {
            if !f.3 || p.revents == 0 {
                continue;
            }
            let (file, lines, stream, open) = f;
            match file.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let at = timestamp(SystemTime::now());
                    lines.finish(&mut |l| log.write_line(*stream, l, &at));
                    *open = false;
                }
                Ok(n) => {
                    let at = timestamp(SystemTime::now());
                    lines.feed(&buf[..n], &mut |l| log.write_line(*stream, l, &at));
                }
            }
        }
        log.flush();
    }
    log.flush();
}

/// Reads a task's log (`path`, after its rotated `path.1`): the lines at or after `since`,
/// then the last `tail` of them. Lines that are not log lines are skipped; a missing file is
/// an empty log. Memory is bounded by `tail` (and the rotation limit without one). A rotation
/// while this reads may make it miss or repeat the lines of one file.
pub fn read_log_file(
    path: &Path,
    since: Option<SystemTime>,
    tail: Option<usize>,
) -> io::Result<Vec<LogLine>> {
    let since = since.map(timestamp);
    let mut out: VecDeque<LogLine> = VecDeque::new();
    for p in [LogFile::old_path(path), path.to_path_buf()] {
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for text in BufReader::new(file).split(b'\n') {
            let Ok(line) = serde_json::from_slice::<LogLine>(&text?) else {
                continue;
            };
            if since.as_deref().is_some_and(|s| line.t.as_str() < s) {
                continue;
            }
            if tail == Some(0) {
                continue;
            }
            out.push_back(line);
            if tail.is_some_and(|n| out.len() > n) {
                out.pop_front();
            }
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn collect(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.feed(c, &mut |l| out.push(l.to_vec()));
        }
        lines.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn output_is_cut_into_lines_of_bounded_length() {
        assert_eq!(
            collect(&[b"one\ntw", b"o\n\nthree"]),
            [
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let out = collect(&[&long[..100], &long[100..], b"\nz\n"]);
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10, 1]);
        // A newline right after a full line ends an empty one, as the bytes say.
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        let lens: Vec<usize> = collect(&[&exact]).iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_LINE, 0]);
    }

    #[test]
    fn the_log_rotates_and_reads_back_across_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/task.log");
        let mut log = LogFile::open(&path, 4096).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..1000u64 {
            let at = timestamp(t0 + Duration::from_millis(i));
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            log.write_line(stream, format!("line {i} \u{e9}").as_bytes(), &at);
        }
        log.write_line(
            Stream::Stderr,
            b"bad \xff byte",
            &timestamp(t0 + Duration::from_secs(5)),
        );
        log.flush();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(size(&path) <= 4096, "{}", size(&path));
        assert!(size(&LogFile::old_path(&path)) <= 4096);
        assert!(!dir.path().join("logs/task.log.2").exists());
        let all = read_log_file(&path, None, None).unwrap();
        assert!(all.len() > 40 && all.len() < 200, "{}", all.len());
        let last = all.last().unwrap();
        assert_eq!(last.line, "bad \u{fffd} byte");
        assert_eq!(last.stream, Stream::Stderr);
        assert_eq!(last.t, "2023-11-14T22:13:25.000000000Z");
        let tail = read_log_file(&path, None, Some(2)).unwrap();
        assert_eq!(tail[0].line, "line 999 \u{e9}");
        assert_eq!(tail[0].stream, Stream::Stderr);
        assert_eq!(tail.len(), 2);
        let since = read_log_file(&path, Some(t0 + Duration::from_millis(998)), None).unwrap();
        let lines: Vec<&str> = since.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            lines,
            ["line 998 \u{e9}", "line 999 \u{e9}", "bad \u{fffd} byte"]
        );
        assert!(read_log_file(&dir.path().join("none"), None, None)
            .unwrap()
            .is_empty());
    }
}
