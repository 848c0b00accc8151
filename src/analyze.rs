//! `exposure analyze`: flow records from files through the same engine as
//! `exposure run`, printed as one full `DescribeInternetOpenPort` answer, or
//! with `--changes` as the exposure changes they make, one event a line.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};

use anyhow::Context;
use ipnet::IpNet;

use crate::catalog::Catalog;
use crate::changes::watch::Watched;
use crate::config::{Clock, Config};
use crate::flow::{self, Flow, Format};
use crate::query::{self, PortQuery};
use crate::source::file;
use crate::state::{wall_now_ms, Engine, StatsSnapshot};

/// `exposure analyze`'s command line.
#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Config file (network, window, services); without one, the defaults plus --assets.
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
    /// Print the exposure changes the records make (one JSON event a line,
    /// in Seq order) instead of the answer; judged against the config's
    /// changes.expected.
    #[arg(long)]
    changes: bool,
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

/// `exposure analyze`: the answer on stdout, the summary on stderr; exit 2
/// for bad usage or an invalid config, 1 if the input cannot be read.
pub fn command(args: AnalyzeArgs) -> ExitCode {
    let query = match args.query() {
        Ok(q) => q,
        Err(message) => return crate::usage_error(&message),
    };
    let opts = AnalyzeOptions {
        config: args.config,
        format: args.format,
        assets: args.assets,
        clock: args.clock,
        query,
        files: args.files,
    };
    let config = match load_config(&opts) {
        Ok(c) => c,
        Err(e) => return crate::usage_error(&format!("{e:#}")),
    };
    let catalog = match load_catalog(&config.services.catalog) {
        Ok(c) => c,
        Err(e) => return crate::usage_error(&format!("{e:#}")),
    };
    // With --changes, a broken expected file is a config problem (exit 2),
    // as for `exposure run`.
    let expected = match args
        .changes
        .then(|| Watched::for_config(config.changes.expected.as_deref()))
        .transpose()
    {
        Ok(expected) => expected,
        Err(problems) => return crate::usage_error(&problems.join("\n")),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match run(
        &opts,
        &config,
        catalog,
        expected,
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

/// What `exposure analyze` was asked to do.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// A config file; without one, the defaults
    /// (`docs/operations.md#configuration`) plus `assets`.
    pub config: Option<PathBuf>,
    /// Input format; default: the config's `kafka.format` (`auto`).
    pub format: Option<Format>,
    /// Our public ranges; override `network.assets`.
    pub assets: Option<Vec<IpNet>>,
    /// Where "now" comes from; default `event` (see [`load_config`]).
    pub clock: Option<Clock>,
    /// The query: filters, language, range. Paging is ignored: all rows are printed.
    pub query: PortQuery,
    /// Input files, `-` for stdin.
    pub files: Vec<PathBuf>,
}

/// The config `analyze` runs with. Offline input is usually a capture of
/// the past, so the clock defaults to `event` ("now" is the latest flow)
/// unless `--clock` says otherwise; a config file's `window.clock` is for
/// `exposure run`.
pub fn load_config(opts: &AnalyzeOptions) -> anyhow::Result<Config> {
    let mut config = match &opts.config {
        Some(path) => {
            Config::load(path).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(assets) = &opts.assets {
        config.network.assets = assets.clone();
    }
    if config.network.assets.is_empty() {
        anyhow::bail!("no asset ranges: pass --assets CIDR[,CIDR...] (e.g. --assets 203.0.113.0/24) or a --config with network.assets");
    }
    config.window.clock = opts.clock.unwrap_or(Clock::Event);
    Ok(config)
}

/// Loads the catalog a config names ([`Catalog::for_config`]), saying
/// which file it was when it fails.
pub fn load_catalog(path: &Path) -> anyhow::Result<Catalog> {
    Catalog::for_config(path)
        .with_context(|| format!("loading the service catalog {}", path.display()))
}

/// Runs the analysis with `config` (from [`load_config`]) and `catalog`,
/// writing the answer to `out` and the summary to `err`; with `expected`
/// (`--changes`), the exposure changes judged against it instead of the
/// answer.
pub fn run(
    opts: &AnalyzeOptions,
    config: &Config,
    catalog: Catalog,
    expected: Option<Watched>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let catalog = Arc::new(catalog);
    let engine = match expected {
        Some(expected) => Engine::from_config_with_changes(config, catalog, Arc::new(expected)),
        None => Engine::from_config(config, catalog),
    };
    let format = opts.format.unwrap_or(config.kafka.format);
    let wall_now_ms = wall_now_ms();
    read_and_apply(&engine, &opts.files, format, wall_now_ms, err)?;
    if let Some(log) = engine.changes() {
        // What is idle at the end of the input is closed, as `run` would
        // close it at that time.
        engine.sweep_changes(wall_now_ms);
        let events = log.last(usize::MAX);
        for event in &events {
            writeln!(out, "{}", event.to_json_line())?;
        }
        let stats = engine.stats().snapshot();
        let open = engine.open_endpoints();
        writeln!(err, "{}, events {}", counts(&stats, open), events.len())?;
        return Ok(());
    }
    let mut q = opts.query.clone();
    q.current_page = 1;
    q.page_size = u32::MAX;
    let mut answer =
        query::describe_internet_open_port(&engine, &q, wall_now_ms, query::new_request_id());
    answer.page_info.page_size = u32::try_from(answer.page_info.total_count).unwrap_or(u32::MAX);
    serde_json::to_writer_pretty(&mut *out, &answer)?;
    writeln!(out)?;
    writeln!(
        err,
        "{}",
        summary(
            &engine.stats().snapshot(),
            engine.open_endpoints(),
            answer.page_info.total_count
        )
    )?;
    Ok(())
}

/// Records handed to a decoding thread at a time.
const CHUNK_RECORDS: usize = 4096;

/// Records read in a row, in one buffer: record `i` is
/// `bytes[ends[i - 1]..ends[i]]` (from 0 for the first).
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Chunk {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }
}
/// Chunks queued before and after each decoding thread.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Reads the records of `files`, decodes them on one thread per core and
/// applies their flows to `engine` on one more thread, in the order of the
/// input: the answer and every count are those of one thread reading the
/// files in turn (the event clock moves as it would), only sooner. On one
/// core, one thread does it all.
///
/// Chunks of [`CHUNK_RECORDS`] records, read into one buffer each, go to
/// the decoding threads in turn, and the applying thread takes them back
/// in the same turn, so no reordering buffer is needed.
fn read_and_apply(
    engine: &Engine,
    files: &[PathBuf],
    format: Format,
    wall_now_ms: i64,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let decoders = crate::cores();
    if decoders == 1 {
        let mut flows = Vec::new();
        // Small chunks, so that a record is applied while it is in cache.
        return read_chunks(engine, files, format, 64, err, |chunk| {
            for bytes in chunk.records() {
                flows.clear();
                let outcome = flow::decode(format, bytes, None, &mut flows);
                engine.stats().count_decoded(&outcome);
                for f in &flows {
                    engine.apply(f, wall_now_ms);
                }
            }
            chunk.clear();
        });
    }
    std::thread::scope(|scope| {
        let mut to_decode = Vec::with_capacity(decoders);
        let mut decoded = Vec::with_capacity(decoders);
        for i in 0..decoders {
            let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
            let (flows_tx, flows_rx) = mpsc::sync_channel::<Vec<Flow>>(CHUNKS_IN_FLIGHT);
            let decode = move || {
                for chunk in chunk_rx {
                    let mut flows = Vec::with_capacity(chunk.ends.len());
                    for bytes in chunk.records() {
                        let outcome = flow::decode(format, bytes, None, &mut flows);
                        engine.stats().count_decoded(&outcome);
                    }
                    if flows_tx.send(flows).is_err() {
                        return;
                    }
                }
            };
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn_scoped(scope, decode)
                .context("starting a decoding thread")?;
            to_decode.push(chunk_tx);
            decoded.push(flows_rx);
        }
        let apply = move || {
            // Chunk k is decoded by thread k % decoders; once that thread
            // has nothing more, no later chunk exists either.
            for k in 0.. {
                let Ok(flows) = decoded[k % decoders].recv() else {
                    return;
                };
                for f in &flows {
                    engine.apply(f, wall_now_ms);
                }
            }
        };
        std::thread::Builder::new()
            .name("apply".into())
            .spawn_scoped(scope, apply)
            .context("starting the applying thread")?;
        let mut sent = 0usize;
        read_chunks(engine, files, format, CHUNK_RECORDS, err, |chunk| {
            // A decoding thread only stops early if the applying one did,
            // which is a panic that the scope reports.
            let _ = to_decode[sent % decoders].send(std::mem::take(chunk));
            sent += 1;
        })
    })
}

/// Reads the records of `files` into chunks of `chunk_records` and hands
/// each full chunk, and the last one, to `hand_on`, which leaves it empty.
/// A file that cannot be split into records past some point counts one
/// rejected record and is reported on `err`; the next file is read.
fn read_chunks(
    engine: &Engine,
    files: &[PathBuf],
    format: Format,
    chunk_records: usize,
    err: &mut dyn Write,
    mut hand_on: impl FnMut(&mut Chunk),
) -> anyhow::Result<()> {
    let mut chunk = Chunk::default();
    for path in files {
        let what = || format!("reading {}", path.display());
        let input = file::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = file::reader(input, format).with_context(what)?;
        while let Some(framed) = reader.next_into(&mut chunk.bytes).with_context(what)? {
            match framed {
                // Decode errors are counted in the summary, not printed one by one.
                Ok(()) => {
                    chunk.ends.push(chunk.bytes.len());
                    if chunk.ends.len() == chunk_records {
                        hand_on(&mut chunk);
                    }
                }
                Err(e) => {
                    // The rest of this file cannot be split into records.
                    engine.stats().count_record();
                    engine.stats().count_record_rejected(e.reason());
                    writeln!(err, "{}: {e}", path.display())?;
                }
            }
        }
    }
    if !chunk.ends.is_empty() {
        hand_on(&mut chunk);
    }
    Ok(())
}

/// The one-line report on stderr.
pub fn summary(stats: &StatsSnapshot, open_endpoints: usize, rows: u64) -> String {
    format!("{}, rows {rows}", counts(stats, open_endpoints))
}

/// What became of the input: records, flows by outcome, open endpoints.
fn counts(stats: &StatsSnapshot, open_endpoints: usize) -> String {
    let by_reason = |m: &std::collections::BTreeMap<&str, u64>| {
        let total: u64 = m.values().sum();
        if m.is_empty() {
            return "0".to_owned();
        }
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{total} ({})", parts.join(", "))
    };
    format!(
        "records read {}, flows applied {}, rejected {}, ignored {}, open endpoints {}",
        stats.records,
        stats.applied,
        by_reason(&stats.rejected),
        by_reason(&stats.ignored),
        open_endpoints,
    )
}
