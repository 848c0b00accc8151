//! `exposure demo`: the whole service with nothing installed.
//!
//! An embedded Kafka-protocol broker (librdkafka's mock cluster) runs on its
//! own thread (it is `!Send`); a traffic thread produces goflow2-pb records
//! into it — a day of history first, then live traffic, with a few
//! high-risk services appearing over the first minutes — and the service
//! consumes them through the same Kafka path as `exposure run`.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::catalog::Catalog;
use crate::config::{Auth, Clock, Config};
use crate::flow::{encode_goflow2_pb, tcp_flags as tf, Flow, Format, PROTO_TCP, PROTO_UDP};
use crate::generate::{Generator, World};
use crate::state::wall_now_ms;
use crate::{service, supervise};

/// The demo's topic and its partitions.
const TOPIC: &str = "flows";
const PARTITIONS: i32 = 3;
/// Open server endpoints in the demo world.
const SERVERS: usize = 400;
/// Flows of history produced before live traffic starts (the last 24 hours).
const HISTORY_FLOWS: usize = 120_000;
/// Live flows per second.
const LIVE_RATE: usize = 2_000;
const TICK: Duration = Duration::from_millis(250);

/// A service that starts answering some time into the demo.
struct Appearing {
    after: Duration,
    ip: &'static str,
    port: u16,
    proto: u8,
    what: &'static str,
}

const APPEARING: &[Appearing] = &[
    Appearing {
        after: Duration::from_secs(15),
        ip: "203.0.113.240",
        port: 6379,
        proto: PROTO_TCP,
        what: "Redis",
    },
    Appearing {
        after: Duration::from_secs(30),
        ip: "203.0.113.241",
        port: 3389,
        proto: PROTO_TCP,
        what: "RDP",
    },
    Appearing {
        after: Duration::from_secs(45),
        ip: "203.0.113.242",
        port: 2375,
        proto: PROTO_TCP,
        what: "Docker API",
    },
    Appearing {
        after: Duration::from_secs(60),
        ip: "203.0.113.243",
        port: 9200,
        proto: PROTO_TCP,
        what: "Elasticsearch",
    },
    Appearing {
        after: Duration::from_secs(90),
        ip: "203.0.113.244",
        port: 11211,
        proto: PROTO_UDP,
        what: "Memcached",
    },
];

/// The embedded broker, alive until dropped.
struct MockBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    fn start() -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow::anyhow!("starting the mock cluster: {e}")));
                        return;
                    }
                };
                if let Err(e) = cluster.create_topic(TOPIC, PARTITIONS, 1) {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("creating topic {TOPIC}: {e}")));
                    return;
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Keep the cluster alive until told to stop (or the demo is gone).
                let _ = stop_rx.recv();
            })
            .context("starting the mock broker thread")?;
        let bootstrap = ready_rx.recv().context("the mock broker thread died")??;
        Ok(MockBroker {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The demo's configuration: the shipped defaults, the embedded broker, no
/// authentication, the given listen address, checkpoints in `state_dir`.
pub fn demo_config(bootstrap: &str, listen: SocketAddr, state_dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.state.dir = state_dir.to_owned();
    config.kafka.brokers = bootstrap.to_owned();
    config.kafka.topics = vec![TOPIC.to_owned()];
    config.kafka.group_id = "exposure-demo".to_owned();
    config.kafka.format = Format::Goflow2Pb;
    config
        .kafka
        .librdkafka
        .insert("fetch.wait.max.ms".into(), "10".into());
    config.network.assets = World::new(0, 0).assets();
    config.window.clock = Clock::Wall;
    config.api.listen = listen;
    config.api.auth = Auth::None;
    config
}

/// `exposure demo --listen ADDR`: runs the demo until a signal.
pub fn command(listen: SocketAddr) -> std::process::ExitCode {
    crate::exit_status(crate::supervise::run_until_signal(|stop| run(listen, stop)))
}

/// Runs the demo until `shutdown` is cancelled.
pub async fn run(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let broker = MockBroker::start()?;
    // Checkpoints as in `run`, but of this broker's offsets: a fresh
    // directory per demo, removed when it stops (a new mock cluster starts
    // its offsets at 0 again).
    let state_dir = std::env::temp_dir().join(format!("exposure-demo-{}", std::process::id()));
    let config = demo_config(&broker.bootstrap, listen, &state_dir);
    // The traffic is what the demo shows: if it stops before the demo
    // does, the demo stops too, with its cause, instead of answering from
    // a state that no longer moves.
    let traffic_stop = CancellationToken::new();
    let service_stop = shutdown.child_token();
    let traffic = {
        let bootstrap = broker.bootstrap.clone();
        let (stop, service_stop) = (traffic_stop.clone(), service_stop.clone());
        std::thread::Builder::new()
            .name("demo-traffic".into())
            .spawn(move || {
                let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    produce_traffic(&bootstrap, &stop)
                }))
                .unwrap_or_else(|panic| Err(supervise::panicked(panic.as_ref())));
                if !stop.is_cancelled() {
                    let cause = match &ended {
                        Ok(()) => anyhow::anyhow!("the demo traffic ended"),
                        Err(e) => anyhow::anyhow!("the demo traffic failed: {e:#}"),
                    };
                    error!(error = %cause, "stopping the demo");
                    service_stop.cancel();
                    return Err(cause);
                }
                ended
            })
            .context("starting the traffic thread")?
    };
    let bootstrap = broker.bootstrap.clone();
    let expected = crate::changes::watch::Watched::empty();
    let result = service::run(
        config,
        Catalog::builtin(),
        expected,
        service_stop,
        |addr, _| print_banner(&bootstrap, addr),
    )
    .await;
    traffic_stop.cancel();
    let traffic = traffic
        .join()
        .unwrap_or_else(|panic| Err(supervise::panicked(panic.as_ref())));
    let result = match (result, traffic) {
        (Ok(()), Err(e)) if !shutdown.is_cancelled() => Err(e),
        (result, Err(e)) => {
            warn!(error = %e, "demo traffic stopped");
            result
        }
        (result, Ok(())) => result,
    };
    drop(broker);
    if let Err(e) = std::fs::remove_dir_all(&state_dir) {
        warn!(dir = %state_dir.display(), error = %e, "could not remove the demo's checkpoints");
    }
    result
}

fn print_banner(bootstrap: &str, api: SocketAddr) {
    let base = format!("http://{api}/");
    println!(
        "\nexposure demo is running: open {base}ui/ in a browser for the live view\n\n\
         \x20 broker:  {bootstrap}  (librdkafka mock cluster; topic \"{TOPIC}\", {PARTITIONS} partitions, goflow2-pb)\n\
         \x20 api:     {base}\n\n\
         Try:\n\
         \x20 curl -s '{base}?Action=DescribeInternetOpenPort&Lang=en&PageSize=5'\n\
         \x20 curl -s '{base}?Action=DescribeInternetOpenPort&Lang=en&RiskLevel=3'\n\
         \x20 curl -s '{base}?Action=DescribeInternetOpenPort&Lang=en&ServiceNameFuzzy=sql'\n\
         \x20 curl -N {base}events   (exposure changes as they happen)\n\
         \x20 curl -s '{base}?Action=DescribeExposureChanges&Kind=opened&RiskLevel=3'\n\
         \x20 curl -s {base}readyz\n\
         \x20 curl -s {base}metrics | grep '^exposure_'\n\n\
         A day of history is loaded first; then live traffic flows, and new high-risk\n\
         services ({}) start answering\n\
         over the next two minutes. Ctrl-C stops.\n",
        APPEARING.iter().map(|a| a.what).collect::<Vec<_>>().join(", ")
    );
}

/// Produces a day of history, then live traffic, until `stop`.
fn produce_traffic(bootstrap: &str, stop: &CancellationToken) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the demo producer")?;
    let world = World::new(7, SERVERS);
    let mut record = Vec::with_capacity(128);
    let mut send = |flow: &Flow| {
        record.clear();
        encode_goflow2_pb(flow, &mut record);
        let key = flow.dst_addr.to_string();
        let mut r: BaseRecord<'_, String, Vec<u8>> =
            BaseRecord::to(TOPIC).key(&key).payload(&record);
        // The queue is large; when it is full, wait for deliveries and retry.
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    };
    let now = wall_now_ms();
    let day_ms = 24 * 3_600_000;
    for flow in Generator::new(&world, 1, now - day_ms, day_ms - 60_000).take(HISTORY_FLOWS) {
        if stop.is_cancelled() {
            return Ok(());
        }
        send(&flow);
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(11);
    let mut tick: u64 = 0;
    while !stop.is_cancelled() {
        fail::fail_point!("demo-traffic");
        tick += 1;
        let now = wall_now_ms();
        let span = TICK.as_millis() as i64;
        let per_tick = LIVE_RATE * TICK.as_millis() as usize / 1000;
        for flow in Generator::new(&world, 100 + tick, now - span, span).take(per_tick) {
            send(&flow);
        }
        for a in APPEARING.iter().filter(|a| started.elapsed() >= a.after) {
            for flow in appearing_session(a, now, &mut rng) {
                send(&flow);
            }
        }
        std::thread::sleep(TICK);
    }
    let _ = producer.flush(Duration::from_secs(2));
    Ok(())
}

/// One client session with an appearing service: request in, reply out.
fn appearing_session(a: &Appearing, now: i64, rng: &mut StdRng) -> [Flow; 2] {
    let server: IpAddr = a.ip.parse().expect("demo addresses parse");
    let client = IpAddr::from([198, 51, 100, rng.gen_range(1..=254)]);
    let client_port = rng.gen_range(49152..=65535);
    let flags = if a.proto == PROTO_TCP {
        tf::SYN | tf::ACK | tf::PSH
    } else {
        0
    };
    let request = rng.gen_range(200..2_000);
    let reply = rng.gen_range(1_000..60_000);
    [
        Flow {
            src_addr: client,
            dst_addr: server,
            src_port: client_port,
            dst_port: a.port,
            proto: a.proto,
            tcp_flags: flags,
            bytes: request,
            packets: (request / 500).max(1),
            time_ms: now,
            label: None,
        },
        Flow {
            src_addr: server,
            dst_addr: client,
            src_port: a.port,
            dst_port: client_port,
            proto: a.proto,
            tcp_flags: flags,
            bytes: reply,
            packets: (reply / 1_200).max(1),
            time_ms: now,
            label: None,
        },
    ]
}
