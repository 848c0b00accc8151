//! Typed configuration: loading, environment overrides, secrets, validation
//! (`docs/operations.md#configuration`).
//!
//! [`Config::load`] reads a TOML file, applies `EXPOSURE__SECTION__KEY`
//! environment overrides, resolves `env:NAME` secrets and validates, then
//! returns either a [`Config`] or *every* problem found, each with its key
//! path ([`ConfigErrors`]). Unknown keys are errors.
//!
//! Decisions (also in `docs/operations.md#configuration`):
//!
//! - An asset range that overlaps a built-in internal range
//!   (`docs/semantics.md#addresses`) or
//!   `network.internal` is an error, as is a CIDR with host bits set (the
//!   message gives the network); a bare address is taken as a /32 or /128.
//! - `kafka.librdkafka` values may be strings, integers, floats or booleans
//!   (stringified, as librdkafka takes text); keys that duplicate a typed key
//!   (`bootstrap.servers`, `group.id`, `auto.offset.reset`) or that would let
//!   librdkafka manage offsets (`enable.auto.commit`,
//!   `enable.auto.offset.store`; the checkpoint holds them,
//!   `docs/operations.md#durability-what-survives-what`) are
//!   errors. The map is merged over the service's own defaults.
//! - An override's value is a TOML value when it parses as one, else a
//!   string; a key that expects a string takes the text as given
//!   (`EXPOSURE__KAFKA__GROUP_ID=123`), and a list of strings may be given as
//!   `a,b`. Overrides may go deeper than section and key:
//!   `EXPOSURE__KAFKA__LIBRDKAFKA__FETCH.WAIT.MAX.MS=10`.
//! - `api.users[].actions` is required (no implicit `"*"`).
//! - Whether `services.catalog` exists is left to the catalog loader.
//!
//! Layout: `read` applies overrides and converts values, `fields` hands out
//! a table's keys and reports unknown ones, `sections` reads the sections
//! (with `network` and `api` in their own files), `defaults` holds one
//! `const fn` per default.

mod api;
mod defaults;
mod fields;
mod network;
mod read;
mod sections;
#[cfg(test)]
mod tests;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::catalog::Catalog;
use crate::flow::Format;

pub use api::ACTIONS;
pub use network::builtin_internal_ranges;

/// The whole configuration of the service (`docs/operations.md#configuration`).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where flow records come from.
    pub kafka: KafkaConfig,
    /// Which addresses are ours and which are not the Internet.
    pub network: NetworkConfig,
    /// How long history is kept and what "now" means.
    pub window: WindowConfig,
    /// Where state is checkpointed and how large it may grow.
    pub state: StateConfig,
    /// The HTTP API: address, authentication, limits.
    pub api: ApiConfig,
    /// How the service writes its logs.
    pub logging: LoggingConfig,
    /// The service catalog that names services and rates their risk.
    pub services: ServicesConfig,
    /// What exposure changes are judged against.
    pub changes: ChangesConfig,
    /// Several instances sharing one consumer group.
    pub cluster: ClusterConfig,
}

/// Several instances sharing one consumer group (`docs/operations.md#scale-out`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// This process is one of several sharing `kafka.group_id`.
    pub enabled: bool,
    /// How the other instances reach this one's API, e.g.
    /// `http://10.0.0.5:8080`; required when enabled.
    pub advertise: Option<String>,
    /// Partitions of the internal topics, created at start if missing.
    pub partitions: u32,
    /// How often state and offsets advance together.
    pub commit_interval: Duration,
}

/// The Kafka consumer (`docs/semantics.md#input-records`).
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`, as librdkafka takes them.
    pub brokers: String,
    /// Topics carrying flow records; every one is consumed.
    pub topics: Vec<String>,
    /// Consumer group, so that partitions are shared between instances and
    /// lag tools can follow the committed offsets.
    pub group_id: String,
    /// How records are encoded; `auto` detects it per record.
    pub format: Format,
    /// Where a partition with neither a checkpointed nor a committed offset
    /// starts.
    pub auto_offset_reset: OffsetReset,
    /// Topic that receives a copy of every rejected record; empty: rejected
    /// records are only counted.
    pub dead_letter_topic: String,
    /// Extra librdkafka properties, passed as they are (tuning, TLS, SASL).
    pub librdkafka: BTreeMap<String, String>,
}

/// Address classes (`docs/semantics.md#addresses`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NetworkConfig {
    /// Our public ranges: the only addresses whose open ports are reported.
    pub assets: Vec<IpNet>,
    /// Extra ranges that are not the Internet (VPNs, partners), added to the
    /// built-in list of [`builtin_internal_ranges`].
    pub internal: Vec<IpNet>,
}

/// Time windows (`docs/semantics.md#time`).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowConfig {
    /// Days of history kept and queryable; older buckets are dropped.
    pub retention_days: u32,
    /// What "now" is: the wall clock, or the latest flow seen (replays).
    pub clock: Clock,
    /// How far ahead of the wall clock a flow may be before it is rejected,
    /// so one bad timestamp cannot drag the event clock into the future.
    pub max_future_skew: Duration,
}

/// State and checkpoints (`docs/operations.md#durability-what-survives-what`).
#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    /// Directory holding checkpoints.
    pub dir: PathBuf,
    /// How often state and offsets are checkpointed; bounds the work redone
    /// after a crash.
    pub checkpoint_interval: Duration,
    /// Upper bound on tracked endpoints, so memory stays bounded.
    pub max_endpoints: usize,
    /// Upper bound on unconfirmed endpoints (inbound only, no response yet),
    /// so scans of our ranges cannot grow state without bound.
    pub max_pending: usize,
}

/// The HTTP API (`docs/api.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    /// Address the API, `/metrics` and health checks listen on.
    pub listen: SocketAddr,
    /// Whether requests must be signed with a user's AccessKey.
    pub auth: Auth,
    /// Requests per second per user without its own `qps` (per client
    /// address when `auth = "none"`); 0 = no limit.
    pub default_qps: u32,
    /// Largest `PageSize` a request may ask for.
    pub max_page_size: u32,
    /// Who may call the API with `auth = "acs"`.
    pub users: Vec<UserConfig>,
}

/// One API user (an AccessKey).
#[derive(Clone, Debug, PartialEq)]
pub struct UserConfig {
    /// Name in logs and metrics, so that requests can be attributed.
    pub name: String,
    /// The AccessKeyId the user signs with.
    pub access_key_id: String,
    /// The AccessKeySecret, resolved from `env:NAME` when written so.
    pub access_key_secret: Secret,
    /// This user's requests per second, overriding `api.default_qps`.
    pub qps: Option<u32>,
    /// Actions the user may call (names from [`ACTIONS`]; `"*"` = all).
    pub actions: Vec<String>,
}

/// How logs are written (`[logging]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoggingConfig {
    /// `text` for people, `json` (one object per line) for log collectors.
    pub format: crate::logging::LogFormat,
}

/// Where the service catalog lives.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicesConfig {
    /// Path of the catalog TOML (`docs/semantics.md#services-and-risk`).
    pub catalog: PathBuf,
}

/// Exposure changes (`docs/operations.md#expected-exposures`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangesConfig {
    /// The TOML file of expected exposures, re-read on SIGHUP and when it
    /// changes; `None`: nothing is expected. A relative path is taken from
    /// the working directory, as `state.dir` is.
    pub expected: Option<PathBuf>,
    /// An open endpoint with no flow in either direction for this long is
    /// closed (on the window clock).
    pub closed_after: Duration,
    /// How many of the newest events a reconnecting `/events` client can
    /// replay.
    pub keep: usize,
    /// The Kafka topic every event is produced to, exactly once
    /// (`docs/operations.md#the-kafka-topic`); `None`: none.
    pub topic: Option<String>,
    /// The language of the texts a webhook sends (Alertmanager annotations).
    pub lang: crate::catalog::Lang,
    /// Where events are pushed (`[[changes.webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
}

/// One `[[changes.webhooks]]` entry (`docs/operations.md#webhooks`).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Names it in metrics, logs and its file under `state.dir`: the
    /// `name` key, else the URL's host and port.
    pub name: String,
    /// `http://` or `https://`; for `alertmanager` the server's base URL.
    pub url: String,
    pub format: WebhookFormat,
    /// The kinds of event sent (`json`); every kind by default.
    pub kinds: Vec<crate::changes::events::Kind>,
    /// Events (alerts) of exposures below this risk level are not sent.
    pub min_risk_level: u8,
    /// Only exposures that are not expected (or were not, before a change).
    pub only_unexpected: bool,
    /// Signs each `json` body (`X-Exposure-Signature`).
    pub secret: Option<Secret>,
    /// How often `alertmanager` alerts are sent again while they last.
    pub resend_interval: Duration,
    /// How long a delivery is retried before it is given up.
    pub max_retry: Duration,
}

impl WebhookConfig {
    /// A webhook with every optional key at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>, format: WebhookFormat) -> Self {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            format,
            kinds: crate::changes::events::Kind::ALL.to_vec(),
            min_risk_level: 0,
            only_unexpected: true,
            secret: None,
            resend_interval: Duration::from_secs(60),
            max_retry: Duration::from_secs(3600),
        }
    }
}

/// What a webhook sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `POST url` with `{"Events": [...]}`.
    Json,
    /// `POST url/api/v2/alerts`, one alert per unexpected open exposure.
    Alertmanager,
}

impl WebhookFormat {
    pub const NAMES: &'static [&'static str] = &["json", "alertmanager"];
}

impl FromStr for WebhookFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "json" => Ok(WebhookFormat::Json),
            "alertmanager" => Ok(WebhookFormat::Alertmanager),
            _ => Err(()),
        }
    }
}

/// A resolved secret. It never prints: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a resolved secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A string that names none of an enum's choices.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not valid; expected one of {}", quoted_list(.expected))]
pub struct UnknownChoice {
    /// What was given.
    pub found: String,
    /// The valid choices, for the message.
    pub expected: &'static [&'static str],
}

/// `"a", "b", "c"`.
fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("{item:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Defines a config enum with its names, `FromStr`, `as_str` and `Display`.
macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The choices, as written in the config.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name, as written in the config.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownChoice;

            fn from_str(text: &str) -> Result<Self, UnknownChoice> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownChoice { found: text.to_owned(), expected: $name::NAMES }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// Where a partition without a stored offset starts (librdkafka's
    /// `auto.offset.reset`).
    OffsetReset {
        /// At the oldest record still in the topic.
        Earliest = "earliest",
        /// At the next record produced.
        Latest = "latest",
    }
}

choice_enum! {
    /// What "now" is (`docs/semantics.md#time`).
    Clock {
        /// The machine's clock (production).
        Wall = "wall",
        /// The latest accepted flow time (replays, backfills, tests).
        Event = "event",
    }
}

choice_enum! {
    /// How API requests are authenticated (`docs/api.md#signed-requests`).
    Auth {
        /// Alibaba Cloud signatures (ACS3-HMAC-SHA256 or v1 HMAC-SHA1).
        Acs = "acs",
        /// No signature (demo, local use).
        None = "none",
    }
}

impl Config {
    /// Reads the file at `path`, applies `EXPOSURE__SECTION__KEY` environment
    /// overrides, resolves `env:` secrets and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigProblem {
                key: String::new(),
                message: format!("cannot read the config file: {error}"),
            }])
        })?;
        let mut problems = Vec::new();
        let mut overrides = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(read::ENV_PREFIX)) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => overrides.push((name.to_owned(), value)),
                Err(_) => problems.push(ConfigProblem {
                    key: String::new(),
                    message: format!("{name}: the value is not valid UTF-8"),
                }),
            }
        }
        overrides.sort();
        let env = |name: &str| std::env::var(name).ok();
        match Self::from_toml_str_with_overrides(&text, &overrides, &env) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(problems)),
            Err(ConfigErrors(more)) => {
                problems.extend(more);
                Err(ConfigErrors(problems))
            }
        }
    }

    /// Parses and validates `text` without environment overrides; `env`
    /// looks up the variables named by `env:` secrets.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Self::from_toml_str_with_overrides(text, &[], env)
    }

    /// Parses `text`, applies `overrides` (`(variable name, value)` pairs,
    /// e.g. `("EXPOSURE__KAFKA__BROKERS", "k1:9092")`), resolves `env:`
    /// secrets with `env` and validates.
    pub fn from_toml_str_with_overrides(
        text: &str,
        overrides: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut root: toml::Table = text.parse().map_err(|error: toml::de::Error| {
            ConfigErrors(vec![ConfigProblem {
                key: String::new(),
                message: syntax_message(text, &error),
            }])
        })?;
        let mut reader = read::Reader::new(&mut root, overrides, env);
        let config = sections::read(&root, &mut reader);
        if reader.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(reader.problems))
        }
    }
}

/// "invalid TOML at line L, column C: ...".
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', "; ");
    let Some(span) = error.span() else {
        return format!("invalid TOML: {message}");
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("invalid TOML at line {line}, column {column}: {message}")
}

/// Every problem found in a config, in reading order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One problem, with the key it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `network.assets[1]` or `api.users[0].access_key_secret`;
    /// empty for problems with the file as a whole.
    pub key: String,
    /// What was wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// `exposure check-config`: prints `config OK: PATH` on stdout and exits 0,
/// or prints every problem on stderr (`PATH: key: message`) and exits 2;
/// the config is checked, then the service catalog it names, then the
/// expected list it names (`<file> line L: <key>: <message>`).
pub fn check_config(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("{}: {problem}", path.display());
            }
            return ExitCode::from(2);
        }
    };
    // The catalog it names is read as `run` reads it, so that what passes
    // here also starts.
    if let Err(e) = Catalog::for_config(&config.services.catalog) {
        eprintln!("{}: services.catalog: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Some(file) = &config.changes.expected {
        if let Err(problems) = crate::changes::expected::Expected::load(file) {
            for problem in &problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(2);
        }
    }
    println!("config OK: {}", path.display());
    ExitCode::SUCCESS
}
