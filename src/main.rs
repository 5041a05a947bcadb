use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWARMNET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = swarmnet::cli::Cli::parse();
    if let Err(err) = swarmnet::cli::run(cli) {
        // Daemon errors already read like Docker's ("Error response from daemon: ..."); the
        // others get the same leading word.
        let text = format!("{err:#}");
        if text.starts_with("Error") {
            eprintln!("{text}");
        } else {
            eprintln!("Error: {text}");
        }
        std::process::exit(1);
    }
}
