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
        eprintln!("Error: {err:#}");
        std::process::exit(1);
    }
}
