//! Child processes a command starts and must not leave behind (`swarmnet demo`'s daemons):
//! the two calls that need `unsafe`, kept here with the rest of the crate's system calls.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child `cmd` will start receive `signal` when this thread ends (the whole process,
/// when called from the main thread): `PR_SET_PDEATHSIG`, with a check that the parent did not
/// end before it was set (the child then fails to start).
pub fn end_with_parent(cmd: &mut Command, signal: i32) {
    // SAFETY: getpid has no memory effects.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl and getppid are async-signal-safe, and the closure allocates nothing
    // before the error paths.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent process ended"));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid`; false if there is no such process (or it is not ours).
/// The caller checks that `pid` is the process it means (a child not yet reaped, or a
/// process whose command line it read).
pub fn signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill has no memory effects; pid is positive, so it names one process.
    unsafe { libc::kill(pid, signal) == 0 }
}
