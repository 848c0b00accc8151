//! Structured logs with `tracing`: human-readable text on a terminal, one
//! JSON object per line for log collectors (`LogFormat::Json`).
//!
//! The level filter comes from `RUST_LOG` (default `info`). Events carry
//! their fields as fields (`warn!(partition, offset, "record rejected:
//! {reason}")`), so the JSON lines can be queried by them. Per-record events
//! on the hot path are rate-limited where they are emitted (the Kafka
//! source logs one rejected record per interval with a count of the rest).

use std::io::IsTerminal;

use serde::Deserialize;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2024-03-01T12:00:00Z  INFO exposure::service: consuming brokers=...`
    #[default]
    Text,
    /// `{"timestamp":"...","level":"INFO","target":"...","message":"...",...fields}`
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected text or json"
            )),
        }
    }
}

/// The level filter: `RUST_LOG` when set and valid, else `info`.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing `format` lines to `writer`, filtered by `RUST_LOG`.
/// [`init`] installs one on stderr; tests pass their own writer.
pub fn subscriber<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter());
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                // Fields at the top level, next to "message", not under "fields".
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process-wide subscriber writing to stderr (colours only on
/// a terminal). Returns an error when one is installed already.
pub fn init(format: LogFormat) -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    let ansi = std::io::stderr().is_terminal();
    tracing::subscriber::set_global_default(subscriber(format, std::io::stderr, ansi))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(captured: &Captured) -> Vec<String> {
        String::from_utf8(captured.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn json_lines_carry_fields_at_the_top_level() {
        let captured = Captured::default();
        let subscriber = subscriber(LogFormat::Json, captured.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                partition = 3,
                offset = 42_i64,
                reason = "malformed_json",
                "record rejected"
            );
        });
        let lines = lines(&captured);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let event: serde_json::Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["message"], "record rejected");
        assert_eq!(event["partition"], 3);
        assert_eq!(event["offset"], 42);
        assert_eq!(event["reason"], "malformed_json");
        assert!(event["timestamp"].is_string(), "{event}");
    }

    #[test]
    fn text_lines_are_not_json() {
        let captured = Captured::default();
        let subscriber = subscriber(LogFormat::Text, captured.clone(), false);
        tracing::subscriber::with_default(subscriber, || tracing::info!(port = 22, "open"));
        let lines = lines(&captured);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("INFO") && lines[0].contains("port=22"),
            "{}",
            lines[0]
        );
        assert!(serde_json::from_str::<serde_json::Value>(&lines[0]).is_err());
    }

    #[test]
    fn log_formats_parse_from_their_config_names() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("text or json"));
    }
}
