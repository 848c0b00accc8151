//! A tansu broker process, in one place for the test kit (`support::Tansu`)
//! and the Kafka bench (`examples/bench_kafka/support.rs` includes this
//! file by path): the same binary, the same command line. Needs only `std`
//! and `anyhow`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long tansu may take to listen after it starts.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A tansu broker with in-memory storage on a free loopback port; killed
/// when dropped, so also when a test or the bench panics.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    /// The command line that started it, with tansu's version.
    pub command: String,
}

impl Tansu {
    /// Starts tansu and waits until it listens; panics with the cause if it
    /// cannot (for tests).
    pub fn start() -> Tansu {
        Tansu::launch().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts tansu and waits until it listens.
    pub fn launch() -> anyhow::Result<Tansu> {
        let binary = find_tool("tansu").context(
            "tansu is not installed: run .ci/install-tools, or \
             cargo install tansu --version 0.6.0 --features dynostore --locked",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let args = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ];
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let child = Command::new(&binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let tansu = Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            command: format!("{} {} ({version})", binary.display(), args.join(" ")),
        };
        let deadline = Instant::now() + START_WITHIN;
        while TcpStream::connect(&tansu.bootstrap).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "tansu does not listen on {} after {START_WITHIN:?}",
                    tansu.bootstrap
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(tansu)
    }

    /// The broker's process id (the bench reads its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool's binary: on PATH, or in cargo's bin directory.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}
