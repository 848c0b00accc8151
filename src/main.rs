//! The `exposure` command: parse the command line, call into the library,
//! map errors to exit codes (0 success, 2 bad usage or invalid config,
//! 1 runtime failure).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exposure::analyze::{self, AnalyzeOptions};
use exposure::config::{self, Clock, Config};
use exposure::flow::Format;
use exposure::logging::LogFormat;
use exposure::query::PortQuery;
use exposure::service;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

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

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// Config file (network, window, services); without one, SPEC defaults plus --assets.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input format: goflow2-pb, goflow2-json, pmacct-json or auto (detected per record).
    #[arg(long)]
    format: Option<Format>,
    /// Our public ranges, comma-separated (overrides network.assets).
    #[arg(long, value_delimiter = ',')]
    assets: Option<Vec<IpNet>>,
    /// Where "now" comes from: event (the latest flow; default here) or wall.
    #[arg(long)]
    clock: Option<Clock>,
    /// Language of the risk texts: zh or en.
    #[arg(long)]
    lang: Option<String>,
    /// Range start, UNIX seconds (default: 7 days before now).
    #[arg(long)]
    start_time: Option<String>,
    /// Range end, UNIX seconds, exclusive (default: just after now).
    #[arg(long)]
    end_time: Option<String>,
    /// Only this port.
    #[arg(long)]
    port: Option<String>,
    /// Only rows with this service (exact, case-insensitive).
    #[arg(long)]
    service_name: Option<String>,
    /// Only rows with a service containing this text (case-insensitive).
    #[arg(long)]
    service_name_fuzzy: Option<String>,
    /// Only rows of this risk level (0-3).
    #[arg(long)]
    risk_level: Option<String>,
    /// Only rows of this suggestion level (0, 10, 20, 30).
    #[arg(long)]
    suggest_level: Option<String>,
    /// Flow record files; - reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

impl AnalyzeArgs {
    /// The filters go through the API's own parameter parser, so the CLI
    /// accepts and refuses exactly what the API does.
    fn query(&self) -> Result<PortQuery, String> {
        let params: HashMap<&str, &str> = [
            ("Lang", &self.lang),
            ("StartTime", &self.start_time),
            ("EndTime", &self.end_time),
            ("Port", &self.port),
            ("ServiceName", &self.service_name),
            ("ServiceNameFuzzy", &self.service_name_fuzzy),
            ("RiskLevel", &self.risk_level),
            ("SuggestLevel", &self.suggest_level),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
        PortQuery::parse(|k| params.get(k).copied(), u32::MAX).map_err(|e| {
            let flag = kebab(e.param);
            format!("--{flag}: {}", e.message)
        })
    }
}

/// `ServiceNameFuzzy` -> `service-name-fuzzy`.
fn kebab(param: &str) -> String {
    let mut out = String::new();
    for (i, c) in param.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // `run` sets up logging once its config says how.
        let _ = exposure::logging::init(LogFormat::Text);
    }
    match cli.command {
        Command::CheckConfig { config } => config::check_config(&config),
        Command::Run { config } => run_command(&config),
        Command::Demo { listen } => serve_until_signal(|stop| exposure::demo::run(listen, stop)),
        Command::Analyze(args) => analyze_command(*args),
    }
}

fn analyze_command(args: AnalyzeArgs) -> ExitCode {
    let query = match args.query() {
        Ok(q) => q,
        Err(message) => return usage_error(&message),
    };
    let opts = AnalyzeOptions {
        config: args.config,
        format: args.format,
        assets: args.assets,
        clock: args.clock,
        query,
        files: args.files,
    };
    let config = match analyze::load_config(&opts) {
        Ok(c) => c,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    let catalog = match analyze::load_catalog(&config.services.catalog) {
        Ok(c) => c,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match analyze::run(
        &opts,
        &config,
        catalog,
        &mut stdout.lock(),
        &mut stderr.lock(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_command(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            for problem in &e.0 {
                eprintln!("{}: {problem}", path.display());
            }
            return ExitCode::from(2);
        }
    };
    let _ = exposure::logging::init(config.logging.format);
    let catalog = match analyze::load_catalog(&config.services.catalog) {
        Ok(c) => c,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    serve_until_signal(move |stop| service::run(config, catalog, stop, |_, _| {}))
}

/// Runs a service future on a multi-threaded runtime until SIGINT/SIGTERM.
fn serve_until_signal<F, Fut>(start: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        service::cancel_on_signals(stop.clone());
        start(stop).await
    });
    // Threads still blocked on I/O must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
