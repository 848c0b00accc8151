//! Cluster mode against a separate broker process that is not librdkafka's
//! own: tansu. The instances create the group's internal topics themselves
//! (the mock cluster has no CreateTopics), instances starting at once all
//! get them, and two instances answer exactly what was produced.
//!
//! tansu 0.6.0's defects (`docs/testing.md#known-defects-of-tansu-060`)
//! bound what is tried here: a partition that moves after records were
//! counted resumes inside a batch, where tansu returns nothing (defect 1),
//! so the group settles before anything is produced, and no instance is
//! killed (defect 3). Moves, kills and outages are the mock cluster's
//! tests (`tests/cluster_mock.rs`).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use exposure::cluster::node::{ensure_topics, Names};
use exposure::flow::Flow;
use support::{
    conversation, create_topic, goflow2_pb, produce, producer, rand_name, wait_until, Service,
    ServiceOptions, Tansu,
};

const PARTITIONS: u32 = 4;
const WITHIN: Duration = Duration::from_secs(90);

fn instance(bootstrap: &str, flows: &str, group: &str) -> Service {
    let cluster = format!(
        "\n[cluster]\nenabled = true\nadvertise = \"http://127.0.0.1:8080\"\npartitions = {PARTITIONS}\ncommit_interval = \"200ms\"\n"
    );
    let opts = ServiceOptions {
        session_timeout_ms: 6000,
        ..ServiceOptions::default()
    };
    Service::start_opts(bootstrap, &[flows], group, &cluster, &opts)
}

/// The routing partitions `service` counts.
fn held(service: &Service) -> f64 {
    service
        .metric("exposure_cluster_partitions_held")
        .unwrap_or(0.0)
}

#[test]
fn two_instances_on_tansu_create_the_internal_topics_and_answer_exactly() {
    let broker = Tansu::start();
    let (flows, group) = (rand_name("flows"), rand_name("group"));
    create_topic(&broker.bootstrap, &flows, 4);
    let instances = [
        instance(&broker.bootstrap, &flows, &group),
        instance(&broker.bootstrap, &flows, &group),
    ];
    // The group settles first: every routing partition held, by both.
    wait_until(
        WITHIN,
        Duration::from_millis(100),
        || {
            let each: Vec<f64> = instances.iter().map(held).collect();
            (each.iter().all(|&h| h > 0.0) && each.iter().sum::<f64>() == f64::from(PARTITIONS))
                .then_some(())
                .ok_or(each)
        },
        |each| {
            format!(
                "the routing partitions held are {each:?}, not {PARTITIONS} between both:\n{}\n{}",
                instances[0].log(),
                instances[1].log()
            )
        },
    );
    // Conversations on 30 hosts (so both instances count some), one
    // record per batch (tansu defect 1).
    let now = exposure::state::wall_now_ms();
    let mut records = Vec::new();
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..300u64 {
        let host = format!("203.0.113.{}", 1 + i % 30);
        let port = 20_000 + (i % 7) as u16;
        let (request, reply) = (100 + i, 1_000 + 3 * i);
        for (j, f) in conversation(&host, port, "198.51.100.7", request, reply, now)
            .into_iter()
            .enumerate()
        {
            records.push((format!("k{i}-{j}"), goflow2_pb(&Flow { packets: 4, ..f })));
        }
        *expected.entry(u64::from(port)).or_default() += request + reply;
    }
    produce(&producer(&broker.bootstrap), &flows, &records);
    for (i, service) in instances.iter().enumerate() {
        wait_until(
            WITHIN,
            Duration::from_millis(100),
            || {
                let (status, body) = service.get("/readyz");
                (status == 200).then_some(()).ok_or(body)
            },
            |body| format!("instance {i} is not ready: {body}\n{}", service.log()),
        );
        service.wait_for_totals(WITHIN, &format!("instance {i}"), &expected);
    }
    for service in &instances {
        service.assert_totals_stay(
            Duration::from_secs(1),
            &expected,
            "nothing counted twice later",
        );
    }
    let sum = |name: &str| -> f64 {
        instances
            .iter()
            .map(|s| s.metric(name).unwrap_or(0.0))
            .sum()
    };
    assert_eq!(
        sum("exposure_cluster_flows_counted_total"),
        sum("exposure_flows_applied_total"),
        "every flow routed is counted once, across the instances"
    );
    assert!(sum("exposure_flows_applied_total") > 0.0);
}

#[test]
fn instances_starting_together_all_get_the_internal_topics() {
    let broker = Tansu::start();
    let group = rand_name("group");
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n[network]\nassets = [\"203.0.113.0/24\"]\n[api]\nauth = \"none\"\n\
         [cluster]\nenabled = true\nadvertise = \"http://127.0.0.1:8080\"\npartitions = {PARTITIONS}\n",
        broker.bootstrap
    );
    let config = exposure::config::Config::from_toml_str(&text, &|_| None).expect("config");
    let names = Names::of(&group);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Four instances' starts at once: each finds the topics missing or
    // made by another, and none fails for having lost the race.
    let results: Vec<anyhow::Result<()>> = runtime.block_on(async {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (kafka, cluster, names) =
                    (config.kafka.clone(), config.cluster.clone(), names.clone());
                tokio::spawn(async move { ensure_topics(&kafka, &cluster, &names).await })
            })
            .collect();
        let mut results = Vec::new();
        for start in starts {
            results.push(start.await.expect("the start ran"));
        }
        results
    });
    for (i, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("start {i}: {e:#}"));
    }
    // And they are what a later start finds: the partition count wanted.
    runtime
        .block_on(ensure_topics(&config.kafka, &config.cluster, &names))
        .expect("the topics exist with cluster.partitions partitions");
}
