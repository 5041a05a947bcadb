use std::io::IsTerminal;

use clap::Parser;

/// What is logged without `SWARMNET_LOG`: warnings a user must act on. openraft's own warnings
/// (elections, rejected votes, retried replication) are its normal operation; swarmnet reports
/// what they lead to (lost quorum, an unreachable leader) itself.
const DEFAULT_LOG: &str = "warn,openraft=error";

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARMNET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = swarmnet::cli::Cli::parse();
    // Commands that only print end quietly when their reader goes (`... | head`); the
    // daemon, `run` and `exec` keep Rust's ignored SIGPIPE (their sockets, their child).
    if !matches!(
        cli.command,
        swarmnet::cli::Command::Daemon(_)
            | swarmnet::cli::Command::Demo(_)
            | swarmnet::cli::Command::Run(_)
            | swarmnet::cli::Command::Exec(_)
            | swarmnet::cli::Command::Replay(_)
    ) {
        swarmnet::io::sigpipe::end_quietly_on_closed_pipe();
    }
    if let Err(err) = swarmnet::cli::run(cli) {
        // Daemon errors already read like Docker's ("Error response from daemon: ..."); the
        // others get the same leading word.
        let text = error_text(&err);
        if text.starts_with("Error") {
            eprintln!("{text}");
        } else {
            eprintln!("Error: {text}");
        }
        std::process::exit(1);
    }
}

/// The error and its causes joined by ": ", each cause once: many errors already print their
/// source in their own message, and would otherwise show it twice.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read topology: {0}")]
    struct Echoes(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let io_text = io.to_string();
        let err = anyhow::Error::new(Echoes(io)).context("replay failed");
        let text = error_text(&err);
        assert_eq!(text.matches(&io_text).count(), 1, "{text}");
        assert!(
            text.starts_with("replay failed: cannot read topology: "),
            "{text}"
        );
        // Causes that do not repeat are all kept.
        let err = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&err), "outer: middle: inner");
    }
}
