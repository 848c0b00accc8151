//! One instance of a group in cluster mode (`cluster.enabled = true`,
//! `docs/operations.md#scale-out`): three threads, each a Kafka client of
//! its own.
//!
//! - **route** consumes `kafka.topics` in group `kafka.group_id`, decodes
//!   and classifies each record, and produces each flow that counts for an
//!   endpoint to `<group_id>-by-asset`, keyed by the asset address (so both
//!   directions of every connection of an asset meet in one partition),
//!   with where it was read. The source offsets are committed once the
//!   routed records are delivered; a record routed again after a crash or
//!   a rebalance is a replay the counting side drops.
//! - **count** consumes `<group_id>-by-asset` in group `<group_id>-count`.
//!   A partition it is given is taken over at once: restored from its
//!   changelog partition ([`super::changelog::Reader`]), claimed under a
//!   new generation and written again under it, then counted on from the
//!   offset the last closed flush names; every `cluster.commit_interval`
//!   the cells that changed go to `<group_id>-changelog` (same partition)
//!   with a closing marker, and only then are the offsets committed.
//! - **replica** reads every changelog partition into the engine the API
//!   answers from: each instance holds the whole group's committed state.
//!   Until it has read every partition to the end seen at start, queries
//!   are refused naming the partitions it lacks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::changelog::{Flusher, Read, Reader, Record};
use super::context::{Context, Move, STATISTICS_INTERVAL_MS};
use super::replay::Applied;
use super::routed::{self, SourcePosition};
use crate::catalog::Catalog;
use crate::config::{ClusterConfig, Config, KafkaConfig};
use crate::flow::{self, Flow};
use crate::health::Health;
use crate::metrics::ClusterMetrics;
use crate::source::kafka::consumer_config;
use crate::state::{wall_now_ms, Engine, Outcome};

/// How long one poll waits for a record.
const POLL: Duration = Duration::from_millis(50);
/// How long topic metadata and watermarks may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a flush's records may take to be delivered before the flush
/// is given up (and tried again, from a restored state, later).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the restore of one partition may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a partition whose take-over failed waits before the next try.
const TAKE_OVER_RETRY: Duration = Duration::from_secs(2);
/// How long the instance that took over a partition still given here
/// must have written no flush of it before the partition is claimed back.
const CLAIM_BACK_QUIET: Duration = Duration::from_secs(3);
/// How many claims in a row, each beaten by another claim of its
/// generation, a new owner writes before it gives up.
const CLAIM_ATTEMPTS: u32 = 5;
/// How often the counted partitions' state is compacted and expired.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// The generation the replica applies for each changelog partition, and
/// when it last read a flush of it closing: how the count thread learns
/// that another instance took over a partition it counts, and whether
/// that instance is still flushing (`super::changelog`, "Generations,
/// claims and fencing").
#[derive(Debug)]
pub struct Claims(Vec<(AtomicU64, AtomicU64)>);

impl Claims {
    pub fn new(partitions: u32) -> Self {
        Claims(
            (0..partitions)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        )
    }

    fn slot(&self, partition: i32) -> Option<&(AtomicU64, AtomicU64)> {
        usize::try_from(partition).ok().and_then(|p| self.0.get(p))
    }

    /// Notes that a flush of `generation` closed just now.
    fn closed(&self, partition: i32, generation: u64) {
        if let Some((g, at)) = self.slot(partition) {
            g.store(generation, Ordering::Release);
            at.store(u64::try_from(wall_now_ms()).unwrap_or(0), Ordering::Release);
        }
    }

    /// The generation applied, and how long since a flush of it closed.
    fn get(&self, partition: i32) -> (u64, Duration) {
        self.slot(partition).map_or((0, Duration::MAX), |(g, at)| {
            let since = u64::try_from(wall_now_ms())
                .unwrap_or(0)
                .saturating_sub(at.load(Ordering::Acquire));
            (g.load(Ordering::Acquire), Duration::from_millis(since))
        })
    }
}

/// The internal topics and group of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub by_asset: String,
    pub changelog: String,
    pub count_group: String,
}

impl Names {
    pub fn of(group_id: &str) -> Names {
        Names {
            by_asset: format!("{group_id}-by-asset"),
            changelog: format!("{group_id}-changelog"),
            count_group: format!("{group_id}-count"),
        }
    }
}

/// The librdkafka settings every cluster client starts from: the brokers
/// and the user's `kafka.librdkafka`.
fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.librdkafka {
        cc.set(k, v);
    }
    cc
}

/// Makes sure both internal topics exist with `cluster.partitions`
/// partitions, creating those missing (the changelog compacted). A topic
/// with another partition count is an error naming it and the key: its
/// partitions hold state, so it cannot be changed under a running group.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    cluster: &ClusterConfig,
    names: &Names,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .context("creating the kafka admin client")?;
    let wanted = i32::try_from(cluster.partitions).unwrap_or(i32::MAX);
    let missing = missing_topics(&admin, cluster, names)?;
    if missing.is_empty() {
        return Ok(());
    }
    let topics: Vec<NewTopic> = missing
        .iter()
        .map(|&name| {
            let topic = NewTopic::new(name, wanted, TopicReplication::Fixed(-1));
            if name == names.changelog {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .with_context(|| format!("cluster: cannot create topics {missing:?}"))?;
    let mut raced = false;
    for result in results {
        match result {
            Ok(topic) => info!(
                topic,
                partitions = wanted,
                "cluster: internal topic created"
            ),
            // Instances started together race to create the topics: the
            // one that loses checks what the winner made.
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                info!(
                    topic,
                    "cluster: internal topic created meanwhile by another instance"
                );
                raced = true;
            }
            Err((topic, code)) => anyhow::bail!(
                "cluster: cannot create topic {topic} ({code}); create it with \
                 cluster.partitions = {wanted} partitions (the changelog with \
                 cleanup.policy=compact)"
            ),
        }
    }
    if raced {
        let deadline = Instant::now() + METADATA_TIMEOUT;
        loop {
            let still = missing_topics(&admin, cluster, names)?;
            if still.is_empty() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "cluster: topics {still:?} exist, by the broker's word, but have no partitions \
                 after {METADATA_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The internal topics that do not exist yet; an error names one that
/// exists with another partition count than `cluster.partitions`.
fn missing_topics<'a>(
    admin: &AdminClient<DefaultClientContext>,
    cluster: &ClusterConfig,
    names: &'a Names,
) -> anyhow::Result<Vec<&'a str>> {
    let mut missing = Vec::new();
    for topic in [&names.by_asset, &names.changelog] {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .with_context(|| format!("cluster: cannot read the metadata of topic {topic}"))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                let found = t.partitions().len();
                anyhow::ensure!(
                    found == cluster.partitions as usize,
                    "cluster.partitions = {}, but topic {topic} has {found} partitions; \
                     set cluster.partitions = {found}, or delete the group's internal topics \
                     ({}, {}) to start the group over",
                    cluster.partitions,
                    names.by_asset,
                    names.changelog
                );
            }
            _ => missing.push(topic.as_str()),
        }
    }
    Ok(missing)
}

/// Remembers the first failed delivery of a producer.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl Deliveries {
    /// The first failure since the last call, if any.
    fn take_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

fn producer(kafka: &KafkaConfig, what: &str) -> anyhow::Result<BaseProducer<Deliveries>> {
    client_config(kafka)
        .set("enable.idempotence", "true")
        // A record never times out in the queue: one that did would leave
        // a gap that later records close over (a routed flow then dropped
        // as a replay, a flush's marker closing missing cells). A broker
        // away for long holds the records until it is back.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("allow.auto.create.topics", "false")
        .create_with_context(Deliveries::default())
        .with_context(|| format!("creating the {what} producer"))
}

/// Queues one record, waiting while the producer's queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                producer.poll(Duration::from_millis(20));
                record = back;
            }
            Err((e, _)) => anyhow::bail!("cannot queue a record: {e}"),
        }
    }
}

/// Waits until everything queued is delivered; whether it all was.
fn delivered(producer: &BaseProducer<Deliveries>, what: &str) -> bool {
    match delivery(producer) {
        Delivery::Done => true,
        Delivery::Pending(e) => {
            warn!(error = %e, "cluster {what}: records not delivered within {DELIVERY_TIMEOUT:?}; tried again later");
            false
        }
        Delivery::Failed(failure) => {
            warn!(
                failure,
                "cluster {what}: a record was not delivered; tried again later"
            );
            false
        }
    }
}

/// How the records queued so far fared.
enum Delivery {
    Done,
    /// Still queued after [`DELIVERY_TIMEOUT`] (the broker is away).
    Pending(rdkafka::error::KafkaError),
    /// A record failed for good: the records after it may have landed.
    Failed(String),
}

/// Waits until everything queued is delivered, or [`DELIVERY_TIMEOUT`].
fn delivery(producer: &BaseProducer<Deliveries>) -> Delivery {
    let flushed = producer.flush(DELIVERY_TIMEOUT);
    match (flushed, producer.context().take_failure()) {
        (_, Some(failure)) => Delivery::Failed(failure),
        (Err(e), None) => Delivery::Pending(e),
        (Ok(()), None) => Delivery::Done,
    }
}

/// The route thread: until `stop`, reads the flow topics and produces each
/// flow that counts for an endpoint to the routing topic.
pub fn route(
    config: &Config,
    engine: &Engine,
    health: &Arc<Health>,
    names: &Names,
    metrics: &ClusterMetrics,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let kafka = &config.kafka;
    let consumer: BaseConsumer<Context> = consumer_config(kafka)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(Context::new(metrics, Some(health.clone())))
        .context("creating the route consumer")?;
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    let producer = producer(kafka, "route")?;
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    let mut flows: Vec<Flow> = Vec::new();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    // Reused for every flow: its topic is copied only when it changes.
    let mut source = SourcePosition {
        topic: String::new(),
        partition: 0,
        offset: 0,
        index: 0,
    };
    let mut last_commit = Instant::now();
    loop {
        let stopping = stop.is_cancelled();
        if let Some(polled) = (!stopping).then(|| consumer.poll(POLL)).flatten() {
            match polled {
                Ok(m) => {
                    let topic = m.topic();
                    flows.clear();
                    let decoded = flow::decode(
                        kafka.format,
                        m.payload().unwrap_or_default(),
                        m.timestamp().to_millis(),
                        &mut flows,
                    );
                    engine.stats().count_decoded(&decoded);
                    if decoded.is_ok() {
                        let wall = wall_now_ms();
                        for (index, f) in flows.iter().enumerate() {
                            let prepared = match engine.prepare(f, wall) {
                                Ok(prepared) => prepared,
                                Err(outcome) => {
                                    engine.stats().count(outcome);
                                    continue;
                                }
                            };
                            engine.stats().count(Outcome::Applied);
                            key.clear();
                            routed::put_key(prepared.endpoint().ip, &mut key);
                            value.clear();
                            if source.topic != topic {
                                source.topic = topic.to_owned();
                            }
                            source.partition = m.partition();
                            source.offset = m.offset();
                            source.index = u32::try_from(index).unwrap_or(u32::MAX);
                            routed::encode(f, &source, &mut value);
                            send(
                                &producer,
                                BaseRecord::to(&names.by_asset)
                                    .key(&key[..])
                                    .payload(&value[..]),
                            )?;
                        }
                    }
                    next.insert((topic.to_owned(), m.partition()), m.offset() + 1);
                }
                Err(e) => warn!(error = %e, "cluster route: consume error"),
            }
        }
        producer.poll(Duration::ZERO);
        if stopping || last_commit.elapsed() >= config.cluster.commit_interval {
            last_commit = Instant::now();
            if !next.is_empty() {
                match delivery(&producer) {
                    Delivery::Done => {
                        commit(&consumer, &next, stopping);
                        next.clear();
                    }
                    Delivery::Pending(e) => {
                        warn!(error = %e, "cluster route: routed flows not delivered within {DELIVERY_TIMEOUT:?}; offsets committed once they are");
                    }
                    // Committing later would skip the lost flows, and
                    // sending them again now would put them after flows
                    // that follow them (dropped as replays): start over
                    // from the last commit instead.
                    Delivery::Failed(failure) => anyhow::bail!(
                        "cluster route: a routed flow was not delivered ({failure}); the instance stops so that its flow partitions are routed again from their last committed offsets"
                    ),
                }
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Commits `next` offsets of the partitions still assigned.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    next: &HashMap<(String, i32), i64>,
    sync: bool,
) {
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), &offset) in next {
        if assigned.find_partition(topic, *partition).is_some() {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    let mode = if sync {
        CommitMode::Sync
    } else {
        CommitMode::Async
    };
    if let Err(e) = consumer.commit(&tpl, mode) {
        warn!(error = %e, "cluster: committing offsets failed; the next commit carries them");
    }
}

/// A partition of the routing topic counted here.
struct Owner {
    engine: Engine,
    applied: Applied,
    flusher: Flusher,
    /// The next routing offset to count.
    next: i64,
    /// The offset the last closed flush named.
    flushed: i64,
    /// Whether a record of the partition was read since it was restored
    /// (the first one tells whether the consumer must seek).
    started: bool,
}

/// The count thread: until `stop`, counts the routing partitions this
/// instance is given and flushes their changes to the changelog.
pub fn count(
    config: &Config,
    catalog: &Arc<Catalog>,
    names: &Names,
    claims: &Claims,
    metrics: &ClusterMetrics,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let kafka = &config.kafka;
    let consumer: BaseConsumer<Context> = client_config(kafka)
        .set("group.id", &names.count_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(Context::new(metrics, None))
        .context("creating the count consumer")?;
    consumer
        .subscribe(&[&names.by_asset])
        .with_context(|| format!("subscribing to {}", names.by_asset))?;
    let producer = producer(kafka, "changelog")?;
    let mut owners: HashMap<i32, Owner> = HashMap::new();
    let mut last_flush = Instant::now();
    let mut last_maintenance = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    // Partitions given whose take-over failed, and when it last did.
    let mut untaken: HashMap<i32, Instant> = HashMap::new();
    let take_over = |owners: &mut HashMap<i32, Owner>,
                     untaken: &mut HashMap<i32, Instant>,
                     partition: i32| {
        match restore(config, catalog, names, partition, &producer, metrics) {
            Ok(owner) => {
                // Counting resumes where the last closed flush says,
                // whether or not a record comes: the consumer may stand
                // past it (a partition taken back, or one whose last
                // owner committed flushes that a claim had made stale).
                let at = Offset::Offset(owner.next);
                if let Err(e) = consumer.seek(&names.by_asset, partition, at, METADATA_TIMEOUT) {
                    debug!(partition, error = %e, "cluster count: seek after the take-over deferred to the first record");
                }
                untaken.remove(&partition);
                owners.insert(partition, owner);
            }
            Err(e) => {
                warn!(
                    partition,
                    error = format!("{e:#}"),
                    "cluster count: partition not taken over; tried again in {TAKE_OVER_RETRY:?}"
                );
                untaken.insert(partition, Instant::now());
            }
        }
    };
    loop {
        let stopping = stop.is_cancelled();
        let polled = (!stopping).then(|| consumer.poll(POLL)).flatten();
        // Moves are heard inside `poll`, before any record after them.
        let moves = consumer.context().take_moves();
        for &moved in &moves {
            match moved {
                Move::Assigned(partition) => {
                    if !owners.contains_key(&partition) {
                        take_over(&mut owners, &mut untaken, partition);
                    }
                }
                Move::Revoked(partition) => {
                    untaken.remove(&partition);
                    if owners.remove(&partition).is_some() {
                        info!(partition, "cluster count: partition moved away");
                    }
                }
            }
        }
        if !moves.is_empty() {
            set_held(metrics, &owners);
        }
        if let Some(polled) = polled {
            match polled {
                Ok(m) => {
                    let partition = m.partition();
                    // Not taken over yet (the last try failed): tried again
                    // when due, and the record read again from where the
                    // changelog says.
                    if !owners.contains_key(&partition)
                        && untaken
                            .get(&partition)
                            .is_none_or(|at| at.elapsed() >= TAKE_OVER_RETRY)
                    {
                        take_over(&mut owners, &mut untaken, partition);
                        set_held(metrics, &owners);
                    }
                    let Some(owner) = owners.get_mut(&partition) else {
                        continue;
                    };
                    let offset = m.offset();
                    if !owner.started || offset > owner.next {
                        owner.started = true;
                        if offset != owner.next {
                            consumer
                                .seek(
                                    &names.by_asset,
                                    partition,
                                    Offset::Offset(owner.next),
                                    METADATA_TIMEOUT,
                                )
                                .with_context(|| {
                                    format!("seeking {} partition {partition}", names.by_asset)
                                })?;
                            continue;
                        }
                    }
                    if offset < owner.next {
                        continue;
                    }
                    owner.next = offset + 1;
                    match routed::decode(m.payload().unwrap_or_default()) {
                        Ok((f, source)) => {
                            if !owner.applied.admit(&source) {
                                metrics.replays_dropped.inc();
                            } else {
                                if let Ok(prepared) = owner.engine.prepare(&f, wall_now_ms()) {
                                    let (endpoint, hour) = (prepared.endpoint(), prepared.hour());
                                    if owner.engine.apply_prepared(prepared) == Outcome::Applied {
                                        owner.flusher.touched(endpoint, hour);
                                        metrics.flows_counted.inc();
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            warn!(partition, offset, error = %e, "cluster count: routed record skipped")
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cluster count: consume error"),
            }
        }
        if stopping || last_flush.elapsed() >= config.cluster.commit_interval {
            last_flush = Instant::now();
            let due: Vec<i32> = untaken
                .iter()
                .filter(|(_, at)| at.elapsed() >= TAKE_OVER_RETRY)
                .map(|(&partition, _)| partition)
                .collect();
            // A partition another instance took over (one that heard of
            // its assignment late) is claimed back while it is still given
            // here, once that instance has stopped flushing it: while it
            // flushes it counts the partition well, and taking it back
            // then would set the answers back to the state read.
            let fenced: Vec<(i32, u64, u64)> = owners
                .iter()
                .filter_map(|(&partition, owner)| {
                    let (ours, (newest, since)) =
                        (owner.flusher.generation(), claims.get(partition));
                    (newest > ours && since >= CLAIM_BACK_QUIET)
                        .then_some((partition, ours, newest))
                })
                .collect();
            for &(partition, ours, newest) in &fenced {
                warn!(
                    partition,
                    ours,
                    newest,
                    "cluster count: partition claimed by another instance; claiming it back"
                );
                metrics.fenced.inc();
                owners.remove(&partition);
            }
            if !stopping {
                for partition in due.into_iter().chain(fenced.into_iter().map(|(p, ..)| p)) {
                    take_over(&mut owners, &mut untaken, partition);
                }
            }
            let failed = flush(
                &consumer,
                &producer,
                names,
                &mut owners,
                &mut records,
                metrics,
                stopping,
            );
            untaken.extend(
                failed
                    .into_iter()
                    .map(|partition| (partition, Instant::now())),
            );
            set_held(metrics, &owners);
        }
        if last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
            last_maintenance = Instant::now();
            for owner in owners.values() {
                owner.engine.maintain(wall_now_ms());
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Sets `exposure_cluster_partitions_held` to the partitions counted here.
fn set_held(metrics: &ClusterMetrics, owners: &HashMap<i32, Owner>) {
    metrics
        .partitions_held
        .set(i64::try_from(owners.len()).unwrap_or(i64::MAX));
}

/// Flushes every partition that counted something since its last flush,
/// then commits their offsets. A partition whose flush was not delivered
/// is forgotten and returned, to be taken over again from the changelog.
fn flush(
    consumer: &BaseConsumer<Context>,
    producer: &BaseProducer<Deliveries>,
    names: &Names,
    owners: &mut HashMap<i32, Owner>,
    records: &mut Vec<Record>,
    metrics: &ClusterMetrics,
    sync: bool,
) -> Vec<i32> {
    let (mut flushed, mut unqueued) = (Vec::new(), Vec::new());
    for (&partition, owner) in owners.iter_mut() {
        if owner.next == owner.flushed {
            continue;
        }
        records.clear();
        owner
            .flusher
            .flush(&owner.engine, owner.next, &owner.applied, records);
        match queue(producer, names, partition, records) {
            Ok(()) => flushed.push(partition),
            Err(e) => {
                warn!(partition, error = %e, "cluster count: flush not queued");
                unqueued.push(partition);
            }
        }
    }
    // A flush cut short never closes: its partition is taken over again.
    for partition in &unqueued {
        owners.remove(partition);
    }
    if !unqueued.is_empty() {
        metrics.flushes.with_label_values(&["failed"]).inc();
    }
    if flushed.is_empty() {
        return unqueued;
    }
    if !delivered(producer, "changelog") {
        for partition in &flushed {
            owners.remove(partition);
        }
        metrics.flushes.with_label_values(&["failed"]).inc();
        flushed.extend(unqueued);
        return flushed;
    }
    metrics.flushes.with_label_values(&["ok"]).inc();
    let mut next = HashMap::new();
    for partition in flushed {
        let owner = owners.get_mut(&partition).expect("flushed above");
        owner.flushed = owner.next;
        next.insert((names.by_asset.clone(), partition), owner.next);
    }
    commit(consumer, &next, sync);
    unqueued
}

/// The settings of a consumer that reads assigned partitions and commits
/// nothing.
fn reader_config(kafka: &KafkaConfig, names: &Names, what: &str) -> ClientConfig {
    let mut cc = client_config(kafka);
    cc.set("group.id", format!("{}-{what}", names.count_group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    cc
}

/// The low and high watermarks of a changelog partition.
fn changelog_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    names: &Names,
    partition: i32,
) -> anyhow::Result<(i64, i64)> {
    consumer
        .fetch_watermarks(&names.changelog, partition, METADATA_TIMEOUT)
        .with_context(|| {
            format!(
                "reading the offsets of {} partition {partition}",
                names.changelog
            )
        })
}

/// Takes a routing partition over: restores its state from its changelog
/// partition, claims it under a new generation and writes that state again
/// under it, then deletes the keys of the older generations
/// (`super::changelog`, "Generations, claims and fencing").
fn restore(
    config: &Config,
    catalog: &Arc<Catalog>,
    names: &Names,
    partition: i32,
    producer: &BaseProducer<Deliveries>,
    metrics: &ClusterMetrics,
) -> anyhow::Result<Owner> {
    let started = Instant::now();
    let what = || format!("restoring {} partition {partition}", names.changelog);
    let engine = Engine::from_config(config, catalog.clone());
    let consumer: BaseConsumer = reader_config(&config.kafka, names, "restore")
        .create()
        .context("creating the restore consumer")?;
    let (low, high) = changelog_offsets(&consumer, names, partition)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&names.changelog, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut reader = Reader::for_restore();
    let mut read = 0u64;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let mut next_record = |reader: &mut Reader| -> anyhow::Result<(i64, Option<Read>)> {
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: not done within {RESTORE_TIMEOUT:?}",
                what()
            );
            let Some(polled) = consumer.poll(POLL) else {
                continue;
            };
            let m = polled.with_context(what)?;
            read += 1;
            let key = m.key().unwrap_or_default();
            return match reader.read(&engine, key, m.payload().unwrap_or_default()) {
                Ok(heard) => Ok((m.offset(), Some(heard))),
                Err(e) => {
                    warn!(partition, offset = m.offset(), error = %e, "cluster restore: changelog record skipped");
                    Ok((m.offset(), None))
                }
            };
        }
    };
    let mut at = low;
    while at < high {
        at = next_record(&mut reader)?.0 + 1;
    }
    let read_in = started.elapsed();
    for attempt in 1.. {
        let nonce: u64 = rand::random();
        let claim = reader.claim(nonce);
        write(producer, names, partition, std::slice::from_ref(&claim))
            .with_context(|| format!("{}: writing its claim", what()))?;
        let accepted = loop {
            if let (_, Some(Read::Claim { nonce: n, accepted })) = next_record(&mut reader)? {
                if n == nonce {
                    break accepted;
                }
            }
        };
        if accepted {
            break;
        }
        anyhow::ensure!(
            attempt < CLAIM_ATTEMPTS,
            "{}: {CLAIM_ATTEMPTS} claims in a row were beaten by other claims",
            what()
        );
    }
    let (next, applied) = match reader.marker() {
        Some(marker) => (marker.next_offset, Applied::resume(marker.applied.clone())),
        None => (0, Applied::default()),
    };
    // What is past retention is not written again, and its keys go with
    // the older generations'.
    engine.maintain(wall_now_ms());
    let (stale, obsolete) = (reader.stale(), reader.obsolete());
    let claimed_in = started.elapsed() - read_in;
    let mut flusher = reader.into_flusher(&engine);
    let generation = flusher.generation();
    let mut rewrite = Vec::new();
    flusher.flush(&engine, next, &applied, &mut rewrite);
    write(producer, names, partition, &rewrite).with_context(|| {
        format!(
            "{}: writing its state under generation {generation}",
            what()
        )
    })?;
    let rewritten_in = started.elapsed() - read_in - claimed_in;
    write(producer, names, partition, &obsolete)
        .with_context(|| format!("{}: deleting the older generations' keys", what()))?;
    metrics.restores.inc();
    metrics.restore_seconds.set(started.elapsed().as_secs_f64());
    info!(
        partition,
        generation,
        records = read,
        stale,
        rewritten = rewrite.len(),
        deleted = obsolete.len(),
        endpoints = engine.open_endpoints() + engine.pending_endpoints(),
        next_offset = next,
        elapsed = ?started.elapsed(),
        ?read_in,
        ?claimed_in,
        ?rewritten_in,
        "cluster count: partition taken over from the changelog"
    );
    Ok(Owner {
        engine,
        applied,
        flusher,
        next,
        flushed: next,
        started: false,
    })
}

/// Queues `records` (an empty value is a tombstone) for a changelog
/// partition, stopping at the first that cannot be.
fn queue(
    producer: &BaseProducer<Deliveries>,
    names: &Names,
    partition: i32,
    records: &[Record],
) -> anyhow::Result<()> {
    for (key, value) in records {
        let record = BaseRecord::to(&names.changelog)
            .partition(partition)
            .key(&key[..]);
        let record = if value.is_empty() {
            record
        } else {
            record.payload(&value[..])
        };
        send(producer, record)?;
    }
    Ok(())
}

/// Writes `records` to a changelog partition and waits until they are
/// delivered.
fn write(
    producer: &BaseProducer<Deliveries>,
    names: &Names,
    partition: i32,
    records: &[Record],
) -> anyhow::Result<()> {
    queue(producer, names, partition, records)?;
    anyhow::ensure!(delivered(producer, "count"), "not delivered");
    Ok(())
}

/// The replica thread: until `stop`, reads every changelog partition into
/// `engine`. `health` names the partitions not yet read to the end they
/// had at start; queries are refused until there are none.
pub fn replica(
    config: &Config,
    engine: &Engine,
    health: &Health,
    names: &Names,
    claims: &Claims,
    metrics: &ClusterMetrics,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<Context> = reader_config(&config.kafka, names, "replica")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(Context::new(metrics, None))
        .context("creating the replica consumer")?;
    let partitions = i32::try_from(config.cluster.partitions).unwrap_or(i32::MAX);
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in 0..partitions {
        let (low, high) = changelog_offsets(&consumer, names, partition)?;
        if high > low {
            ends.insert(partition, high);
        }
        tpl.add_partition_offset(&names.changelog, partition, Offset::Beginning)?;
    }
    let missing = |ends: &HashMap<i32, i64>| {
        health.set_missing_partitions(ends.keys().copied().collect());
        metrics
            .partitions_missing
            .set(i64::try_from(ends.len()).unwrap_or(i64::MAX));
        if ends.is_empty() {
            info!(
                partitions,
                "cluster replica: every partition read; answering for the group"
            );
        }
    };
    missing(&ends);
    consumer.assign(&tpl)?;
    let mut readers: HashMap<i32, Reader> = HashMap::new();
    while !stop.is_cancelled() {
        let Some(polled) = consumer.poll(POLL) else {
            continue;
        };
        let m = match polled {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cluster replica: consume error");
                continue;
            }
        };
        let partition = m.partition();
        let reader = readers.entry(partition).or_default();
        let stale = reader.stale();
        match reader.read(
            engine,
            m.key().unwrap_or_default(),
            m.payload().unwrap_or_default(),
        ) {
            Ok(Read::Closed) => claims.closed(partition, reader.generation()),
            Ok(_) => {}
            Err(e) => {
                warn!(partition, offset = m.offset(), error = %e, "cluster replica: changelog record skipped")
            }
        }
        metrics.stale_records.inc_by(reader.stale() - stale);
        if ends
            .get(&partition)
            .is_some_and(|&end| m.offset() + 1 >= end)
        {
            ends.remove(&partition);
            missing(&ends);
        }
    }
    Ok(())
}
