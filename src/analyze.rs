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
        Ok(engine) => {
            // The process ends here: freeing a state of a million
            // endpoints box by box would only delay the exit (on 2 cores,
            // by some 5 % of a run over 1 M records).
            std::mem::forget(engine);
            ExitCode::SUCCESS
        }
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
/// answer. Gives back the engine it filled.
pub fn run(
    opts: &AnalyzeOptions,
    config: &Config,
    catalog: Catalog,
    expected: Option<Watched>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Engine> {
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
        return Ok(engine);
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
    Ok(engine)
}

/// Records in a chunk of a protobuf stream.
const CHUNK_RECORDS: usize = 4096;
/// Bytes of JSON lines in a chunk (some 3,000 collector records).
const CHUNK_BYTES: usize = 1 << 20;
/// Records or bytes in a chunk on one core: small, so that a record is
/// applied while it is in cache.
const SMALL_CHUNK_RECORDS: usize = 64;
const SMALL_CHUNK_BYTES: usize = 32 << 10;
/// Chunks queued before and after each decoding thread.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Emptied buffers kept for reuse, of each kind.
const SPARES: usize = 2 * CHUNKS_IN_FLIGHT;

/// Records read in a row, in one buffer: either whole JSON lines, split
/// into records by whoever decodes the chunk, or records one after
/// another, record `i` being `bytes[ends[i - 1]..ends[i]]` (from 0 for the
/// first).
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    lines: bool,
}

impl Chunk {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.lines = false;
    }

    /// Decodes each record in order into `flows` and counts it, as
    /// [`flow::decode`]; then calls `then` with what it appended.
    fn decode_each(
        &self,
        format: Format,
        engine: &Engine,
        flows: &mut Vec<Flow>,
        mut then: impl FnMut(&mut Vec<Flow>),
    ) {
        let mut decode = |bytes: &[u8], text: Option<&str>| {
            let outcome = match text {
                Some(text) => flow::decode_utf8(format, text, None, flows),
                None => flow::decode(format, bytes, None, flows),
            };
            engine.stats().count_decoded(&outcome);
            then(flows);
        };
        if self.lines {
            // One UTF-8 check for the block rather than one a record: lines
            // end at a newline, so every line of valid text is valid text.
            let text = std::str::from_utf8(&self.bytes).ok();
            for line in file::lines(&self.bytes) {
                let at = line.as_ptr() as usize - self.bytes.as_ptr() as usize;
                decode(line, text.map(|text| &text[at..at + line.len()]));
            }
            return;
        }
        let mut start = 0;
        for &end in &self.ends {
            decode(&self.bytes[start..end], None);
            start = end;
        }
    }

    /// About how many records it holds, to size a buffer of flows.
    fn records_hint(&self) -> usize {
        if self.lines {
            self.bytes.len() / 256
        } else {
            self.ends.len()
        }
    }
}

/// Reads the records of `files`, decodes them on one thread per core and
/// applies their flows to `engine` on one more thread, in the order of the
/// input: the answer and every count are those of one thread reading the
/// files in turn (the event clock moves as it would), only sooner. On one
/// core, one thread does it all.
///
/// Chunks go to the decoding threads in turn, and the applying thread
/// takes their flows back in the same turn, so no reordering buffer is
/// needed. Files that cannot be split into records past some point are
/// reported on `err` once the input is read.
fn read_and_apply(
    engine: &Engine,
    files: &[PathBuf],
    format: Format,
    wall_now_ms: i64,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let decoders = crate::cores();
    let mut source = ChunkSource::new(engine, files, format, decoders);
    let read = if decoders == 1 {
        apply_on_this_thread(engine, &mut source, format, wall_now_ms)
    } else {
        decode_and_apply_on_threads(engine, &mut source, decoders, format, wall_now_ms)
    };
    for problem in &source.problems {
        writeln!(err, "{problem}")?;
    }
    read
}

/// [`read_and_apply`] on one core.
fn apply_on_this_thread(
    engine: &Engine,
    source: &mut ChunkSource<'_>,
    format: Format,
    wall_now_ms: i64,
) -> anyhow::Result<()> {
    let mut chunk = Chunk::default();
    let mut flows = Vec::new();
    while source.next(&mut chunk)? {
        chunk.decode_each(format, engine, &mut flows, |flows| {
            for f in flows.drain(..) {
                engine.apply(&f, wall_now_ms);
            }
        });
        chunk.clear();
    }
    Ok(())
}

/// [`read_and_apply`] with `decoders` decoding threads and an applying
/// one, reading on this thread.
///
/// Emptied buffers go back to where they are filled, to be filled again: a
/// new megabyte for every chunk would be mapped, faulted in and unmapped
/// each time.
fn decode_and_apply_on_threads(
    engine: &Engine,
    source: &mut ChunkSource<'_>,
    decoders: usize,
    format: Format,
    wall_now_ms: i64,
) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let mut to_decode = Vec::with_capacity(decoders);
        let mut decoded = Vec::with_capacity(decoders);
        let mut emptied_flows = Vec::with_capacity(decoders);
        let (emptied_chunk_tx, emptied_chunks) = mpsc::sync_channel::<Chunk>(SPARES);
        for i in 0..decoders {
            let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
            let (flows_tx, flows_rx) = mpsc::sync_channel::<Vec<Flow>>(CHUNKS_IN_FLIGHT);
            let (emptied_flows_tx, emptied_flows_rx) = mpsc::sync_channel::<Vec<Flow>>(SPARES);
            let emptied_chunk_tx = emptied_chunk_tx.clone();
            let decode = move || {
                for mut chunk in chunk_rx {
                    let mut flows = emptied_flows_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(chunk.records_hint()));
                    chunk.decode_each(format, engine, &mut flows, |_| {});
                    if flows_tx.send(flows).is_err() {
                        return;
                    }
                    chunk.clear();
                    let _ = emptied_chunk_tx.try_send(chunk);
                }
            };
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn_scoped(scope, decode)
                .context("starting a decoding thread")?;
            to_decode.push(chunk_tx);
            decoded.push(flows_rx);
            emptied_flows.push(emptied_flows_tx);
        }
        let apply = move || {
            // Chunk k is decoded by thread k % decoders; once that thread
            // has nothing more, no later chunk exists either.
            for k in 0.. {
                let Ok(mut flows) = decoded[k % decoders].recv() else {
                    return;
                };
                for f in &flows {
                    engine.apply(f, wall_now_ms);
                }
                flows.clear();
                let _ = emptied_flows[k % decoders].try_send(flows);
            }
        };
        std::thread::Builder::new()
            .name("apply".into())
            .spawn_scoped(scope, apply)
            .context("starting the applying thread")?;
        let mut chunk = Chunk::default();
        let mut k = 0;
        while source.next(&mut chunk)? {
            let emptied = emptied_chunks.try_recv().unwrap_or_default();
            // A decoding thread only stops early if the applying one did,
            // which is a panic that the scope reports.
            let _ = to_decode[k % decoders].send(std::mem::replace(&mut chunk, emptied));
            k += 1;
        }
        Ok(())
    })
}

/// The records of the input files, a chunk at a time, in the order of the
/// files. JSON lines come a block of whole lines at a time, split where
/// the chunk is decoded; a protobuf stream, a record at a time. A file that
/// cannot be split into records past some point counts one rejected
/// record, is noted in `problems`, and the next file is read.
struct ChunkSource<'a> {
    engine: &'a Engine,
    files: std::slice::Iter<'a, PathBuf>,
    format: Format,
    /// Records (protobuf) or bytes (JSON lines) in a chunk.
    records: usize,
    bytes: usize,
    /// The file being read, and how.
    current: Option<(&'a Path, Input)>,
    /// What made files end early, one line each, for the summary's stream.
    problems: Vec<String>,
}

enum Input {
    Lines(file::LineBlocks),
    Records(file::RecordReader),
}

impl<'a> ChunkSource<'a> {
    fn new(engine: &'a Engine, files: &'a [PathBuf], format: Format, decoders: usize) -> Self {
        let (records, bytes) = if decoders == 1 {
            (SMALL_CHUNK_RECORDS, SMALL_CHUNK_BYTES)
        } else {
            (CHUNK_RECORDS, CHUNK_BYTES)
        };
        ChunkSource {
            engine,
            files: files.iter(),
            format,
            records,
            bytes,
            current: None,
            problems: Vec::new(),
        }
    }

    /// Fills `chunk` (empty) with the next records; `false` when no file
    /// has any left.
    fn next(&mut self, chunk: &mut Chunk) -> anyhow::Result<bool> {
        loop {
            let Some((path, input)) = &mut self.current else {
                let Some(path) = self.files.next() else {
                    return Ok(false);
                };
                let opened =
                    file::open(path).with_context(|| format!("opening {}", path.display()))?;
                let reader = file::reader(opened, self.format)
                    .with_context(|| format!("reading {}", path.display()))?;
                let input = match reader.into_line_blocks() {
                    Ok(blocks) => Input::Lines(blocks),
                    Err(records) => Input::Records(records),
                };
                self.current = Some((path, input));
                continue;
            };
            let path = *path;
            let what = || format!("reading {}", path.display());
            match input {
                Input::Lines(blocks) => {
                    if blocks
                        .next_block(&mut chunk.bytes, self.bytes)
                        .with_context(what)?
                    {
                        chunk.lines = true;
                        return Ok(true);
                    }
                }
                Input::Records(reader) => {
                    while chunk.ends.len() < self.records {
                        match reader.next_into(&mut chunk.bytes).with_context(what)? {
                            None => break,
                            Some(Ok(())) => chunk.ends.push(chunk.bytes.len()),
                            // Decode errors are counted in the summary, not
                            // printed one by one; this one ends the file.
                            Some(Err(e)) => {
                                self.engine.stats().count_record();
                                self.engine.stats().count_record_rejected(e.reason());
                                self.problems.push(format!("{}: {e}", path.display()));
                            }
                        }
                    }
                    if chunk.ends.len() == self.records {
                        return Ok(true);
                    }
                    if !chunk.ends.is_empty() {
                        // The file's last records.
                        self.current = None;
                        return Ok(true);
                    }
                }
            }
            self.current = None;
        }
    }
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
