//! Every default (`docs/operations.md#configuration`): one `const fn` per key, and the `Default`
//! impls built from them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::flow::Format;

use super::{
    ApiConfig, Auth, ChangesConfig, Clock, ClusterConfig, Config, KafkaConfig, NetworkConfig,
    OffsetReset, ServicesConfig, StateConfig, WindowConfig,
};

const fn default_brokers() -> &'static str {
    "127.0.0.1:9092"
}
const fn default_topics() -> &'static [&'static str] {
    &["flows"]
}
const fn default_group_id() -> &'static str {
    "exposure"
}
const fn default_format() -> Format {
    Format::Auto
}
/// librdkafka's own default is `latest`; a new deployment should see the
/// flows already in the topic, so ours is `earliest`.
const fn default_auto_offset_reset() -> OffsetReset {
    OffsetReset::Earliest
}
const fn default_dead_letter_topic() -> &'static str {
    ""
}
/// librdkafka properties set unless the config sets them:
/// - `fetch.wait.max.ms` is 500 in librdkafka; 100 keeps freshness well
///   under the 1 s goal (`docs/benchmarks.md#goals-and-results`).
/// - `fetch.queue.backoff.ms` is 1000 in librdkafka: once a partition's
///   local queue passes `queued.min.messages` (100 k), its next fetch waits
///   that long. Ingest drains such a queue in about 0.1 s, so with 1000 the
///   consumer idles 90 % of the time while catching up (measured with
///   `examples/bench_kafka.rs`).
const fn default_librdkafka() -> &'static [(&'static str, &'static str)] {
    &[
        ("fetch.wait.max.ms", "100"),
        ("fetch.queue.backoff.ms", "10"),
    ]
}
const fn default_retention_days() -> u32 {
    30
}
const fn default_clock() -> Clock {
    Clock::Wall
}
const fn default_max_future_skew() -> Duration {
    Duration::from_secs(5 * 60)
}
const fn default_state_dir() -> &'static str {
    "data"
}
const fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}
const fn default_max_endpoints() -> usize {
    5_000_000
}
const fn default_max_pending() -> usize {
    1_000_000
}
const fn default_listen() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080))
}
const fn default_auth() -> Auth {
    Auth::Acs
}
/// As in Alibaba Cloud's documented per-user limit for this API.
const fn default_qps() -> u32 {
    10
}
const fn default_max_page_size() -> u32 {
    1000
}
const fn default_catalog() -> &'static str {
    crate::catalog::DEFAULT_PATH
}
/// No file: nothing is expected, every open endpoint is unexpected.
const fn default_expected() -> Option<&'static str> {
    None
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers().to_owned(),
            topics: default_topics().iter().map(|t| (*t).to_owned()).collect(),
            group_id: default_group_id().to_owned(),
            format: default_format(),
            auto_offset_reset: default_auto_offset_reset(),
            dead_letter_topic: default_dead_letter_topic().to_owned(),
            librdkafka: default_librdkafka()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            retention_days: default_retention_days(),
            clock: default_clock(),
            max_future_skew: default_max_future_skew(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from(default_state_dir()),
            checkpoint_interval: default_checkpoint_interval(),
            max_endpoints: default_max_endpoints(),
            max_pending: default_max_pending(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            auth: default_auth(),
            default_qps: default_qps(),
            max_page_size: default_max_page_size(),
            users: Vec::new(),
        }
    }
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            catalog: PathBuf::from(default_catalog()),
        }
    }
}

impl Default for ChangesConfig {
    fn default() -> Self {
        ChangesConfig {
            expected: default_expected().map(PathBuf::from),
            closed_after: Duration::from_secs(24 * 3600),
            keep: 10_000,
            topic: None,
            lang: crate::catalog::Lang::Zh,
            webhooks: Vec::new(),
        }
    }
}

/// Every default (`docs/operations.md#configuration`); `network.assets` is
/// empty (a file must set it).
impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::default(),
            network: NetworkConfig::default(),
            window: WindowConfig::default(),
            state: StateConfig::default(),
            api: ApiConfig::default(),
            logging: Default::default(),
            services: ServicesConfig::default(),
            changes: ChangesConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

const fn default_cluster_partitions() -> u32 {
    12
}

const fn default_commit_interval() -> Duration {
    Duration::from_millis(500)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            advertise: None,
            partitions: default_cluster_partitions(),
            commit_interval: default_commit_interval(),
        }
    }
}
