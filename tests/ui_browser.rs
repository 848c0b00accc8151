//! The live view in a real browser (`docs/testing.md#the-live-view-in-a-browser`):
//! two instances of the API on real sockets over one engine, one with
//! `auth = "none"` and one with `auth = "acs"`, driven by `tests/ui/test_ui.py`
//! (Selenium in the virtual environment of `.ci/install-sdk`, Debian's
//! headless `chromium` and `chromedriver` from `.ci/install-tools`). The
//! script asks for new flows mid-test; this side applies them to the engine,
//! which records their changes for the page's feed (`GET /events`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exposure::catalog::Catalog;
use exposure::changes::watch::Watched;
use exposure::config::Config;
use exposure::flow::{Flow, PROTO_UDP};
use exposure::metrics::Metrics;
use exposure::state::{wall_now_ms, Engine};
use support::{over, ApiServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Debian's browser and its driver, as `.ci/install-tools` installs them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the whole browser script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
/// Ports of unknown services on one asset, so the table has three pages.
const EXTRA_PORTS: std::ops::Range<u16> = 20001..20247;
const KEY_ID: &str = "LTAI5tBROWSER";

/// The venv's python with Selenium, after checking every tool is there.
fn tools() -> PathBuf {
    for (tool, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is missing: run .ci/install-tools (it installs Debian's {package})"
        );
    }
    let venv = std::env::var_os("EXPOSURE_SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo("target/sdk-venv"));
    let python = venv.join("bin/python");
    let has_selenium = std::process::Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_selenium,
        "Selenium is missing from {}: run .ci/install-tools and .ci/install-sdk \
         (it installs tests/sdk/requirements.txt, selenium included, into target/sdk-venv)",
        venv.display()
    );
    python
}

/// One open TCP or UDP endpoint, a minute old.
fn open(engine: &Engine, server: &str, port: u16, proto: u8, now_ms: i64) {
    for f in support::conversation(server, port, "192.0.2.50", 2_000, 9_000, now_ms - 60_000) {
        engine.apply(
            &Flow {
                packets: 10,
                ..over(proto, f)
            },
            now_ms,
        );
    }
}

/// SSH, HTTPS, MySQL, DNS over IPv6 and [`EXTRA_PORTS`].
fn fill(engine: &Engine, now_ms: i64) {
    let tcp = exposure::flow::PROTO_TCP;
    for (server, port) in [
        ("203.0.113.10", 22),
        ("203.0.113.11", 22),
        ("203.0.113.11", 443),
        ("203.0.113.12", 443),
        ("203.0.113.13", 3306),
    ] {
        open(engine, server, port, tcp, now_ms);
    }
    open(engine, "2001:db8:100::5", 53, PROTO_UDP, now_ms);
    for port in EXTRA_PORTS {
        open(engine, "203.0.113.100", port, tcp, now_ms);
    }
}

#[test]
fn the_live_view_shows_the_api_and_follows_it_in_a_browser() {
    let python = tools();
    let secret = format!("{:032x}", rand::random::<u128>());
    let toml = format!(
        "[network]\nassets = [\"203.0.113.0/24\", \"2001:db8:100::/48\"]\n\n\
         [api]\nauth = \"acs\"\n\n\
         [[api.users]]\nname = \"browser\"\naccess_key_id = \"{KEY_ID}\"\n\
         access_key_secret = \"env:EXPOSURE_UI_SECRET\"\nqps = 100\nactions = [\"*\"]\n"
    );
    let env = |name: &str| (name == "EXPOSURE_UI_SECRET").then(|| secret.clone());
    let config = Config::from_toml_str(&toml, &env).expect("a valid config");
    let engine = Arc::new(Engine::from_config_with_changes(
        &config,
        Arc::new(Catalog::builtin()),
        Arc::new(Watched::empty()),
    ));
    fill(&engine, wall_now_ms());

    let rt = support::runtime();
    rt.block_on(async {
        let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
        let start = |api| {
            ApiServer::start(
                Arc::clone(&engine),
                Arc::clone(&metrics),
                support::ready(),
                api,
                wall_now_ms,
            )
        };
        // The page polls every 2 s with a few calls: the default 10 qps suffices.
        let open_api = start(support::no_auth()).await;
        let acs_api = start(config.api.clone()).await;

        let screenshots = support::repo("target/ui-screenshots");
        let mut child = tokio::process::Command::new(&python)
            .arg(support::repo("tests/ui/test_ui.py"))
            .env("EXPOSURE_UI_ENDPOINT", open_api.addr.to_string())
            .env("EXPOSURE_UI_ACS_ENDPOINT", acs_api.addr.to_string())
            .env("EXPOSURE_UI_KEY_ID", KEY_ID)
            .env("EXPOSURE_UI_SECRET", &secret)
            .env("EXPOSURE_UI_SCREENSHOTS", &screenshots)
            .env("EXPOSURE_UI_CHROMIUM", CHROMIUM)
            .env("EXPOSURE_UI_CHROMEDRIVER", CHROMEDRIVER)
            .env("SE_OFFLINE", "true")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the browser script starts");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            stderr.read_to_string(&mut text).await.ok();
            text
        });

        let dialogue = async {
            let mut said = Vec::new();
            while let Some(line) = stdout.next_line().await.expect("the script's stdout") {
                if line == "open-endpoints" {
                    // A new high-risk row, and a second address for SSH.
                    let now_ms = wall_now_ms();
                    open(
                        &engine,
                        "203.0.113.77",
                        6379,
                        exposure::flow::PROTO_TCP,
                        now_ms,
                    );
                    open(
                        &engine,
                        "203.0.113.78",
                        22,
                        exposure::flow::PROTO_TCP,
                        now_ms,
                    );
                    stdin
                        .write_all(b"{\"opened\": [6379, \"tcp\"]}\n")
                        .await
                        .unwrap();
                    stdin.flush().await.unwrap();
                }
                said.push(line);
            }
            said
        };
        let said = tokio::time::timeout(SCRIPT_TIMEOUT, dialogue)
            .await
            .expect("the browser script finishes within 4 minutes");
        let status = child.wait().await.unwrap();
        let errors = errors.await.unwrap();
        println!("{errors}");
        assert!(
            status.success() && said.last().map(String::as_str) == Some("passed"),
            "the browser script failed ({status}):\n{}\n{errors}",
            said.join("\n")
        );
        assert!(said.iter().any(|l| l == "open-endpoints"), "{said:?}");
        for name in [
            "table-zh",
            "table-en",
            "risk-filter",
            "signin-error",
            "signed-in",
        ] {
            let png = screenshots.join(format!("{name}.png"));
            assert!(png.is_file(), "no screenshot {}", png.display());
        }
        open_api.stop().await.unwrap();
        acs_api.stop().await.unwrap();
    });
}
