//! The `exposure` command: parses the command line and hands each command
//! to its module, which maps its outcome to the exit status (0 success,
//! 2 bad usage or invalid config, 1 runtime failure).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exposure::analyze::AnalyzeArgs;
use exposure::logging::LogFormat;

#[derive(Parser)]
#[command(
    name = "exposure",
    version,
    about = "Which of our public IPs and ports are open to the Internet, from flow records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume flow records from Kafka, serve the API and /metrics (production).
    Run {
        /// The config file.
        #[arg(long, default_value = "config/exposure.toml")]
        config: PathBuf,
    },
    /// Zero setup: embedded broker, generated traffic, the API on 127.0.0.1:8080.
    Demo {
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Read flow records from files and print the DescribeInternetOpenPort answer (all rows) as JSON.
    Analyze(Box<AnalyzeArgs>),
    /// Validate a config file and print every problem with its key path.
    CheckConfig {
        /// The config file.
        #[arg(long, default_value = "config/exposure.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    if !matches!(cli.command, Command::Run { .. }) {
        // `run` sets up logging once its config says how.
        let _ = exposure::logging::init(LogFormat::Text);
    }
    match cli.command {
        Command::Run { config } => exposure::service::command(&config),
        Command::Demo { listen } => exposure::demo::command(listen),
        Command::Analyze(args) => exposure::analyze::command(*args),
        Command::CheckConfig { config } => exposure::config::check_config(&config),
    }
}
