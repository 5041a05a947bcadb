//! SIGPIPE for the CLI's short-lived commands.

/// Gives SIGPIPE its default action again, so a command whose output goes to a pipe that closes
/// early (`swarmnet network ls | head -1`) ends quietly, as other Unix tools do, instead of
/// failing on the write. Rust starts with SIGPIPE ignored (so writes return EPIPE), which is
/// what the daemon and `run` need: their sockets must never kill them. Call it only in commands
/// that just print.
pub fn end_quietly_on_closed_pipe() {
    // SAFETY: signal() with a valid signal number and SIG_DFL; called from main before any
    // thread or handler of ours exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
