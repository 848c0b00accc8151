//! The deployment files, kept correct without a Docker engine: the compose
//! file parses, every file it mounts or builds from exists, the services
//! find each other under the names and ports the configs use, the
//! service's config is valid with the compose overrides, and the
//! Dockerfile copies only what exists and runs as a non-root user.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use exposure::config::Config;
use serde_yaml_ng::Value;
use support::repo;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

/// The compose file with its `<<:` merge keys applied, as compose reads it.
fn compose() -> Value {
    let mut compose = yaml("docker-compose.yml");
    compose.apply_merge().expect("merge keys resolve");
    compose
}

fn services(compose: &Value) -> &serde_yaml_ng::Mapping {
    compose["services"].as_mapping().expect("services")
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (host side, container side) of every `volumes:` entry of a service.
fn mounts(service: &Value) -> Vec<(String, String)> {
    str_list(&service["volumes"])
        .into_iter()
        .map(|m| {
            let mut parts = m.split(':');
            let host = parts.next().unwrap().to_owned();
            let container = parts
                .next()
                .unwrap_or_else(|| panic!("mount {m:?} has no target"));
            (host, container.to_owned())
        })
        .collect()
}

/// The service's environment as a map (the mapping form).
fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_brings_up_kafka_the_service_prometheus_and_grafana() {
    let compose = compose();
    let names: BTreeSet<&str> = services(&compose)
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    for wanted in ["kafka", "kafka-init", "exposure", "prometheus", "grafana"] {
        assert!(names.contains(wanted), "no {wanted} service in {names:?}");
    }
    let kafka = &compose["services"]["kafka"];
    assert!(kafka["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    let env = environment(kafka);
    assert_eq!(
        env["KAFKA_PROCESS_ROLES"], "broker,controller",
        "KRaft, no ZooKeeper"
    );
    let exposure = &compose["services"]["exposure"];
    assert_eq!(exposure["build"]["context"].as_str(), Some("."));
    assert!(repo(
        exposure["build"]["dockerfile"]
            .as_str()
            .unwrap_or("Dockerfile")
    )
    .is_file());
}

#[test]
fn every_mounted_file_exists_and_every_named_volume_is_declared() {
    let compose = compose();
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (name, service) in services(&compose) {
        let name = name.as_str().unwrap();
        for (host, container) in mounts(service) {
            if host.starts_with("./") || host.starts_with('/') {
                if !repo(&host).exists() {
                    problems.push(format!(
                        "{name}: {host} (mounted at {container}) does not exist"
                    ));
                }
            } else if !declared.contains(&host) {
                problems.push(format!("{name}: named volume {host} is not declared"));
            }
        }
        for dependency in service["depends_on"]
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| str_list(&service["depends_on"]))
        {
            if !services(&compose).contains_key(dependency.as_str()) {
                problems.push(format!("{name} depends on unknown service {dependency}"));
            }
        }
        // Long-running services say when they are healthy.
        if name != "kafka-init" && service["healthcheck"]["test"].is_null() {
            problems.push(format!("{name} has no health check"));
        }
        // Published ports stay on the host's loopback.
        for port in str_list(&service["ports"]) {
            if !port.starts_with("127.0.0.1:") {
                problems.push(format!("{name} publishes {port} beyond loopback"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The scrape job the alerts name (`up{job="exposure"}`) in a Prometheus
/// config.
fn exposure_scrape_job(config: &Value) -> &Value {
    config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "exposure")
        .expect("a scrape job named exposure (the alerts use up{job=\"exposure\"})")
}

/// The container path `path` is served from, given a service's mounts.
fn host_file(service: &Value, container_path: &str) -> Option<PathBuf> {
    mounts(service).into_iter().find_map(|(host, container)| {
        let rest = container_path.strip_prefix(&container)?;
        Some(repo(&host).join(rest.trim_start_matches('/')))
    })
}

#[test]
fn prometheus_loads_the_shipped_rules_and_scrapes_the_service() {
    let compose = compose();
    let prometheus = &compose["services"]["prometheus"];
    let config_flag = str_list(&prometheus["command"])
        .into_iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_owned))
        .expect("--config.file");
    let config_path = host_file(prometheus, &config_flag).expect("the config file is mounted");
    assert_eq!(config_path, repo("./config/prometheus/prometheus.yml"));
    let config = yaml("config/prometheus/prometheus.yml");
    // Rule files resolve beside the config file, inside the container.
    let config_dir = Path::new(&config_flag).parent().unwrap();
    let rules = str_list(&config["rule_files"]);
    assert!(!rules.is_empty());
    for rule_file in rules {
        let inside = config_dir.join(&rule_file);
        let host = host_file(prometheus, inside.to_str().unwrap())
            .unwrap_or_else(|| panic!("{} is not mounted", inside.display()));
        assert_eq!(host, repo("./config/prometheus/alerts.yml"));
    }
    // The scrape job the alerts name targets the exposure service's port.
    let job = exposure_scrape_job(&config);
    let targets = str_list(&job["static_configs"][0]["targets"]);
    let listen = environment(&compose["services"]["exposure"])["EXPOSURE__API__LISTEN"].clone();
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(targets, [format!("exposure:{port}")]);
}

#[test]
fn grafana_provisions_the_prometheus_data_source_and_the_dashboard() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let datasources = yaml("config/grafana/provisioning/datasources/prometheus.yml");
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    let url = ds["url"].as_str().unwrap();
    assert!(url.starts_with("http://prometheus:9090"), "{url}");
    assert!(str_list(&compose["services"]["prometheus"]["ports"])
        .iter()
        .any(|p| p.ends_with(":9090")));
    assert_eq!(
        host_file(
            grafana,
            "/etc/grafana/provisioning/datasources/prometheus.yml"
        ),
        Some(repo(
            "./config/grafana/provisioning/datasources/prometheus.yml"
        ))
    );
    let providers = yaml("config/grafana/provisioning/dashboards/exposure.yml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboards = host_file(grafana, path).expect("the dashboards folder is mounted");
    assert!(
        dashboards.join("exposure.json").is_file(),
        "{}",
        dashboards.display()
    );
    let home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].clone();
    assert!(
        host_file(grafana, &home).is_some_and(|p| p.is_file()),
        "{home}"
    );
}

/// The config `service` runs with: its mounted `--config` file with its
/// `EXPOSURE__` environment overrides, validated.
fn service_config(service: &Value) -> Config {
    let command = str_list(&service["command"]);
    let config_flag = command
        .iter()
        .position(|a| a == "--config")
        .map(|i| command[i + 1].clone())
        .expect("run --config PATH");
    let config_file = host_file(service, &config_flag).expect("the config is mounted");
    let text = std::fs::read_to_string(&config_file).unwrap();
    let overrides: Vec<(String, String)> = environment(service)
        .into_iter()
        .filter(|(k, _)| k.starts_with("EXPOSURE__"))
        .collect();
    Config::from_toml_str_with_overrides(&text, &overrides, &|_| None)
        .unwrap_or_else(|e| panic!("{}: {:?}", config_file.display(), e.0))
}

#[test]
fn the_service_config_is_valid_with_the_compose_overrides() {
    let compose = compose();
    let exposure = &compose["services"]["exposure"];
    let config = service_config(exposure);
    assert!(!config.cluster.enabled, "the single service is one process");
    assert_eq!(config.kafka.brokers, "kafka:9092");
    assert_eq!(config.kafka.topics, ["flows"]);
    assert_eq!(config.api.listen.to_string(), "0.0.0.0:8080");
    // The topics the service reads and writes are the ones kafka-init creates.
    let init = serde_yaml_ng::to_string(&compose["services"]["kafka-init"]["command"]).unwrap();
    for topic in config
        .kafka
        .topics
        .iter()
        .chain([&config.kafka.dead_letter_topic])
    {
        assert!(
            init.contains(topic.as_str()),
            "kafka-init does not create {topic}: {init}"
        );
    }
    // The catalog path in the config resolves in the image's working directory.
    let catalog = config.services.catalog.to_str().unwrap().to_owned();
    assert!(
        host_file(exposure, &format!("/app/{catalog}")).is_some_and(|p| p.is_file()),
        "{catalog} is not in the mounted config"
    );
}

#[test]
fn the_cluster_profile_runs_three_instances_of_one_group_each_advertising_itself() {
    let compose = compose();
    let single = service_config(&compose["services"]["exposure"]);
    let mut groups = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for n in 1..=3 {
        let name = format!("exposure-cluster-{n}");
        let service = &compose["services"][name.as_str()];
        assert_eq!(str_list(&service["profiles"]), ["cluster"], "{name}");
        assert!(
            !service["depends_on"]["kafka-init"].is_null(),
            "{name} waits for the flow topics"
        );
        let config = service_config(service);
        assert!(config.cluster.enabled, "{name} runs in cluster mode");
        assert_eq!(config.kafka.brokers, "kafka:9092", "{name}");
        assert_eq!(config.kafka.topics, single.kafka.topics, "{name}");
        let advertise = config.cluster.advertise.expect("advertise");
        assert_eq!(
            advertise.to_string(),
            format!("http://{name}:8080"),
            "{name}"
        );
        groups.insert(config.kafka.group_id.clone());
        host_ports.extend(str_list(&service["ports"]));
        // Each keeps its own state directory.
        assert!(
            mounts(service).iter().any(
                |(host, container)| host == &format!("{name}-data") && container == "/app/data"
            ),
            "{name}: {:?}",
            mounts(service)
        );
    }
    assert_eq!(groups.len(), 1, "one group: {groups:?}");
    assert!(
        !groups.contains(&single.kafka.group_id),
        "the cluster's group is not the single service's"
    );
    assert_eq!(host_ports.len(), 3, "a host port each: {host_ports:?}");
    // Prometheus finds the instances by name, under the job the alerts use.
    let config = yaml("config/prometheus/prometheus.yml");
    let job = exposure_scrape_job(&config);
    let names = str_list(&job["dns_sd_configs"][0]["names"]);
    assert_eq!(
        names,
        [
            "exposure-cluster-1",
            "exposure-cluster-2",
            "exposure-cluster-3"
        ]
    );
    assert_eq!(job["dns_sd_configs"][0]["port"].as_u64(), Some(8080));
}

#[test]
fn the_dockerfile_builds_from_files_that_exist_and_runs_unprivileged() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let ignored: Vec<String> = std::fs::read_to_string(repo(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            if !repo(source).exists() {
                problems.push(format!("{line}: {source} does not exist"));
            }
            let top = source.trim_end_matches('/').split('/').next().unwrap();
            if ignored.iter().any(|i| i == top || i == source) {
                problems.push(format!("{line}: {source} is excluded by .dockerignore"));
            }
        }
    }
    // Cargo needs every target the manifest names, benches included.
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    if manifest.contains("[[bench]]") && !text.contains("COPY benches") {
        problems.push("Cargo.toml names benches the build stage does not copy".to_owned());
    }
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    if user.trim() == "root" || user.trim() == "0" {
        problems.push(format!("runs as {user}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn docker_compose_accepts_the_file_where_it_is_installed() {
    // No Docker engine runs here; `config` only reads and validates. The
    // structural checks above run everywhere; this one needs the tool.
    let candidates: [(&str, &[&str]); 2] = [
        ("docker-compose", &["config", "-q"]),
        ("docker", &["compose", "config", "-q"]),
    ];
    let mut ran = false;
    for (program, args) in candidates {
        // `docker` may be a CLI without the compose plugin.
        let version = [&args[..args.len() - 2], &["version"]].concat();
        let installed = std::process::Command::new(program)
            .args(&version)
            .output()
            .is_ok_and(|out| out.status.success());
        if !installed {
            continue;
        }
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{program} {args:?}:\n{stderr}");
        ran = true;
    }
    if !ran {
        eprintln!("note: neither docker-compose nor docker compose is installed; checked structurally only");
    }
}
