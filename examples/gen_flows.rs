//! Writes generated flow records in one input format to stdout.
//!
//! ```text
//! cargo run --release --example gen_flows -- \
//!     --format goflow2-json --records 1000000 --seed 1 --endpoints 10000 > flows.json
//! ```
//!
//! JSON formats are one record a line; `goflow2-pb` is a stream of
//! varint-length-prefixed messages (goflow2 `-format=bin`), one flow each.
//! The asset ranges to analyze the output with go to stderr.

use std::io::{self, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use exposure::flow::{self, Format};
use exposure::generate::{Generator, World};

/// 2026-11-27T00:00:00Z: the default start, so the same arguments give the
/// same bytes.
const DEFAULT_START_S: i64 = 1_795_737_600;

#[derive(Parser, Debug)]
#[command(about = "Write generated flow records to stdout")]
struct Args {
    /// goflow2-pb, goflow2-json or pmacct-json.
    #[arg(long, default_value = "goflow2-json")]
    format: Format,
    /// Number of records (flows) to write.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Seed of the world and of the flows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Open server endpoints in the world.
    #[arg(long, default_value_t = 10_000)]
    endpoints: usize,
    /// Start of the time span, UNIX seconds, or `now` (the span then ends now).
    #[arg(long, default_value_t = DEFAULT_START_S.to_string())]
    start: String,
    /// Length of the time span in hours.
    #[arg(long, default_value_t = 24)]
    span_hours: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let span_ms = args.span_hours.max(1) * 3_600_000;
    let start_ms = match args.start.as_str() {
        "now" => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            now - span_ms
        }
        s => s.parse::<i64>()? * 1000,
    };
    let world = World::new(args.seed, args.endpoints);
    let assets: Vec<String> = world.assets().iter().map(ToString::to_string).collect();
    eprintln!("assets: {}", assets.join(","));

    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut pb = Vec::with_capacity(128);
    let flows = Generator::new(&world, args.seed, start_ms, span_ms).take(args.records);
    for f in flows {
        match args.format {
            Format::Goflow2Pb => {
                pb.clear();
                flow::encode_goflow2_pb(&f, &mut pb);
                out.write_all(&pb)?;
            }
            Format::Goflow2Json => writeln!(out, "{}", flow::encode_goflow2_json(&f))?,
            Format::PmacctJson => writeln!(out, "{}", flow::encode_pmacct_json(&f))?,
            Format::Auto => {
                anyhow::bail!("pick one format: goflow2-pb, goflow2-json or pmacct-json")
            }
        }
    }
    out.flush()?;
    Ok(())
}
