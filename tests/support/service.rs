//! The `exposure` binary as a separate process: `exposure run` with a
//! config written for the test, and any other subcommand with stdin.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get, wait_for_port, wait_until};

/// Runs `exposure ARGS` in the crate's directory with `stdin` (or nothing)
/// as its input; its exit status and output.
pub fn exposure(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exposure"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// What a test may change in the service's config.
pub struct ServiceOptions {
    pub checkpoint_interval: &'static str,
    pub session_timeout_ms: u32,
    /// `kafka.dead_letter_topic` ("" for none).
    pub dead_letter_topic: String,
    /// librdkafka's `partition.assignment.strategy`, if not its default
    /// (an eager protocol).
    pub assignment_strategy: Option<&'static str>,
    /// Environment variables of the first start (not of restarts), such
    /// as `FAILPOINTS` for the fault tests.
    pub env: Vec<(&'static str, String)>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            checkpoint_interval: "10s",
            session_timeout_ms: 6000,
            dead_letter_topic: String::new(),
            assignment_strategy: None,
            env: Vec::new(),
        }
    }
}

/// The `exposure` binary running `exposure run` with a config written for the test.
pub struct Service {
    child: Child,
    pub api: SocketAddr,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Service {
    /// Starts `exposure run` consuming `topics` from `bootstrap`, with extra TOML appended.
    pub fn start(bootstrap: &str, topics: &[&str], group: &str, extra: &str) -> Service {
        Service::start_opts(bootstrap, topics, group, extra, &ServiceOptions::default())
    }

    /// [`Service::start`] with non-default options.
    pub fn start_opts(
        bootstrap: &str,
        topics: &[&str],
        group: &str,
        extra: &str,
        opts: &ServiceOptions,
    ) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
        let config = format!(
            r#"
[kafka]
brokers = "{bootstrap}"
topics = [{topics}]
group_id = "{group}"
format = "auto"
auto_offset_reset = "earliest"
dead_letter_topic = "{dead_letter_topic}"
librdkafka = {{ "fetch.wait.max.ms" = "10", "session.timeout.ms" = "{session_timeout_ms}", "heartbeat.interval.ms" = "500"{strategy} }}

[network]
assets = ["203.0.113.0/24", "2001:db8:100::/48"]

[window]
clock = "wall"

[state]
dir = "{dir}"
checkpoint_interval = "{checkpoint_interval}"

[api]
listen = "{api}"
auth = "none"
default_qps = 0
{extra}
"#,
            topics = topics.join(", "),
            dir = dir.path().join("state").display(),
            session_timeout_ms = opts.session_timeout_ms,
            checkpoint_interval = opts.checkpoint_interval,
            dead_letter_topic = opts.dead_letter_topic,
            strategy = opts.assignment_strategy.map_or(String::new(), |s| format!(
                r#", "partition.assignment.strategy" = "{s}""#
            )),
        );
        let path = dir.path().join("exposure.toml");
        std::fs::write(&path, config).unwrap();
        Service::start_with(dir, &path, api, &opts.env)
    }

    fn start_with(
        dir: tempfile::TempDir,
        config: &Path,
        api: SocketAddr,
        env: &[(&str, String)],
    ) -> Service {
        let log = dir.path().join("exposure.log");
        let child = Command::new(env!("CARGO_BIN_EXE_exposure"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("exposure runs");
        let service = Service {
            child,
            api,
            dir,
            log,
        };
        wait_for_port(&api.to_string(), Duration::from_secs(20));
        service
    }

    /// Restarts with the same config (after [`Service::terminate`]).
    pub fn restart(mut self) -> Service {
        let placeholder = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, placeholder);
        let path = dir.path().join("exposure.toml");
        Service::start_with(dir, &path, self.api, &[])
    }

    /// The service's log so far (stderr).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        self.signal("TERM");
        let code = self.wait_exit(Duration::from_secs(30), "SIGTERM");
        (code, started.elapsed())
    }

    /// Sends SIGHUP (the service re-reads `changes.expected`).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Stops the process with SIGSTOP: every thread halts, as in a long
    /// pause of its machine, until [`Service::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `timeout` for the process to exit by itself (after
    /// `what`); returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> Option<i32> {
        let log = &self.log;
        let child = &mut self.child;
        wait_until(
            timeout,
            Duration::from_millis(20),
            || child.try_wait().unwrap().map(|s| s.code()).ok_or(()),
            |()| format!("exposure did not exit after {what}:\n{}", read_log(log)),
        )
    }

    /// GET `path_and_query`; returns (status, body).
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        http_get(self.api, path_and_query)
    }

    /// The `DescribeInternetOpenPort` answer with all rows.
    pub fn open_ports(&self) -> serde_json::Value {
        let (status, body) = self.get("/?Action=DescribeInternetOpenPort&PageSize=1000");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// The `DescribeExposureChanges` answer to `query` (`""`: the defaults).
    pub fn exposure_changes(&self, query: &str) -> serde_json::Value {
        let (status, body) = self.get(&format!("/?Action=DescribeExposureChanges&{query}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Polls until `check` holds for the open-port answer, or panics after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_until(
            timeout,
            Duration::from_millis(20),
            || {
                let answer = self.open_ports();
                if check(&answer) {
                    Ok(answer)
                } else {
                    Err(answer)
                }
            },
            |answer| {
                format!(
                    "{what} not seen after {timeout:?}; last answer: {answer}\nlog:\n{}",
                    self.log()
                )
            },
        )
    }

    /// Polls until the open-port answer's TotalBytes by port are `expected`
    /// (or panics after `timeout`); returns that answer.
    pub fn wait_for_totals(
        &self,
        timeout: Duration,
        what: &str,
        expected: &BTreeMap<u64, u64>,
    ) -> serde_json::Value {
        let answer = self.wait_for(timeout, what, |a| totals(a) == *expected);
        assert_eq!(totals(&answer), *expected);
        answer
    }

    /// After `settle`, the totals are still `expected`: nothing was counted
    /// twice later.
    pub fn assert_totals_stay(&self, settle: Duration, expected: &BTreeMap<u64, u64>, why: &str) {
        std::thread::sleep(settle);
        assert_eq!(totals(&self.open_ports()), *expected, "{why}");
    }

    /// The value of a metric line starting with `prefix` in /metrics.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls `/metrics` until the line starting with `prefix` reads `value`,
    /// or panics after `timeout`.
    pub fn wait_for_metric(&self, timeout: Duration, prefix: &str, value: f64) {
        wait_until(
            timeout,
            Duration::from_millis(50),
            || match self.metric(prefix) {
                Some(read) if read == value => Ok(()),
                read => Err(read),
            },
            |read| {
                format!(
                    "{prefix} is not {value} after {timeout:?} (it reads {read:?}):\n{}",
                    self.log()
                )
            },
        );
    }

    /// Polls `/readyz` until its body contains `needle`, or panics after
    /// `timeout`; returns (status, body).
    pub fn wait_for_readyz(&self, timeout: Duration, needle: &str) -> (u16, String) {
        wait_until(
            timeout,
            Duration::from_millis(50),
            || {
                let (status, body) = self.get("/readyz");
                if body.contains(needle) {
                    Ok((status, body))
                } else {
                    Err(body)
                }
            },
            |body| format!("/readyz never said {needle}: {body}\n{}", self.log()),
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TotalBytes by port of a `DescribeInternetOpenPort` answer.
pub fn totals(answer: &serde_json::Value) -> BTreeMap<u64, u64> {
    answer["DataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Port"].as_u64().unwrap(),
                r["TotalBytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
