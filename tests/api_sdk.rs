//! Alibaba Cloud compatibility with the official Python SDK
//! (`docs/testing.md#the-alibaba-cloud-sdk`): the API with `auth = "acs"`
//! served on a real socket, from a config whose secrets come from `env:`
//! variables, driven by `tests/sdk` (pytest and
//! `alibabacloud-cloudfw20171207` in the virtual environment that
//! `.ci/install-sdk` creates). Also checks that no secret reaches the log.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exposure::catalog::Catalog;
use exposure::config::Config;
use exposure::flow::{Flow, PROTO_TCP, PROTO_UDP};
use exposure::metrics::Metrics;
use exposure::state::Engine;
use support::{over, ApiServer};

/// How long the whole Python suite may take.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// The virtual environment with the SDK: `$EXPOSURE_SDK_VENV`, else
/// `target/sdk-venv` (where `.ci/install-sdk` puts it).
fn sdk_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os("EXPOSURE_SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/sdk-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "the SDK test environment is missing ({}): run .ci/install-sdk first \
         (it installs alibabacloud-cloudfw20171207 and pytest into target/sdk-venv)",
        python.display()
    );
    python
}

/// The world `tests/sdk/conftest.py` describes, one minute old.
fn fill(engine: &Engine, now_ms: i64) {
    let t = now_ms - 60_000;
    for (server, client, port, proto, request, reply, packets) in [
        (
            "203.0.113.10",
            "192.0.2.50",
            22,
            PROTO_TCP,
            4_000,
            6_000,
            10,
        ),
        (
            "203.0.113.11",
            "192.0.2.50",
            443,
            PROTO_TCP,
            10_000,
            90_000,
            10,
        ),
        (
            "203.0.113.12",
            "192.0.2.50",
            443,
            PROTO_TCP,
            1_000,
            9_000,
            10,
        ),
        (
            "203.0.113.13",
            "192.0.2.50",
            3306,
            PROTO_TCP,
            2_000,
            3_000,
            10,
        ),
        ("203.0.113.14", "192.0.2.50", 40000, PROTO_TCP, 40, 40, 1),
        ("2001:db8:100::5", "2001:db8::9", 53, PROTO_UDP, 300, 700, 2),
    ] {
        for f in support::conversation(server, port, client, request, reply, t) {
            engine.apply(
                &Flow {
                    packets,
                    ..over(proto, f)
                },
                now_ms,
            );
        }
    }
}

struct User {
    name: &'static str,
    key: String,
    secret: String,
    qps: Option<u32>,
    actions: &'static str,
}

fn users() -> Vec<User> {
    let user = |name: &'static str, qps: Option<u32>, actions: &'static str| User {
        name,
        key: format!("LTAI5t{}", name.replace('-', "").to_uppercase()),
        secret: format!("{:032x}", rand::random::<u128>()),
        qps,
        actions,
    };
    vec![
        // Functional tests run many calls in a row: a high limit.
        user("secops", Some(1000), r#"["*"]"#),
        user("ports-only", Some(1000), r#"["DescribeInternetOpenPort"]"#),
        user("limited", Some(3), r#"["*"]"#),
        user("peer", Some(3), r#"["*"]"#),
        // No qps of its own: api.default_qps (10, as Alibaba Cloud documents).
        user("defaulted", None, r#"["*"]"#),
    ]
}

/// `[api]` with `auth = "acs"` and every user's secret as `env:VARIABLE`.
fn config_toml(users: &[User]) -> String {
    let mut toml = String::from(
        "[network]\nassets = [\"203.0.113.0/24\", \"2001:db8:100::/48\"]\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\nauth = \"acs\"\ndefault_qps = 10\nmax_page_size = 1000\n",
    );
    for u in users {
        toml.push_str(&format!(
            "\n[[api.users]]\nname = \"{}\"\naccess_key_id = \"{}\"\n\
             access_key_secret = \"env:{}\"\nactions = {}\n",
            u.name,
            u.key,
            secret_variable(u.name),
            u.actions
        ));
        if let Some(qps) = u.qps {
            toml.push_str(&format!("qps = {qps}\n"));
        }
    }
    toml
}

fn secret_variable(name: &str) -> String {
    format!(
        "EXPOSURE_SDK_SECRET_{}",
        name.replace('-', "_").to_uppercase()
    )
}

/// `{name: {key, secret, qps, actions}}` for the Python side.
fn users_json(users: &[User]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = users
        .iter()
        .map(|u| {
            let actions: serde_json::Value = serde_json::from_str(u.actions).unwrap();
            (
                u.name.to_owned(),
                serde_json::json!({"key": u.key, "secret": u.secret, "qps": u.qps, "actions": actions}),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_against_the_service() {
    let python = sdk_python();
    let logs = support::capture_logs(tracing::Level::TRACE);
    let users = users();
    let secrets: Vec<(String, String)> = users
        .iter()
        .map(|u| (secret_variable(u.name), u.secret.clone()))
        .collect();
    let env = |name: &str| {
        secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let config = Config::from_toml_str(&config_toml(&users), &env).expect("a valid config");
    assert_eq!(config.api.users.len(), users.len());

    let catalog = Arc::new(Catalog::builtin());
    let engine = Arc::new(Engine::from_config(&config, catalog));
    fill(&engine, exposure::state::wall_now_ms());
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    let server = ApiServer::start(
        engine,
        Arc::clone(&metrics),
        support::ready(),
        config.api.clone(),
        exposure::state::wall_now_ms,
    )
    .await;
    let addr = server.addr;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "tests/sdk", "-q", "-p", "no:cacheprovider"])
        .current_dir(root)
        .env("EXPOSURE_SDK_ENDPOINT", addr.to_string())
        .env("EXPOSURE_SDK_USERS", users_json(&users))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SUITE_TIMEOUT, run)
        .await
        .expect("the SDK suite finishes within 5 minutes")
        .expect("the SDK suite starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the SDK suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(" passed"), "{stdout}");

    server.stop().await.unwrap();

    // Every request was logged with its verified user, and no secret ever
    // reached the log.
    let text = logs.text();
    assert!(
        text.contains(r#"user="secops""#),
        "{}",
        &text[..text.len().min(2000)]
    );
    for u in &users {
        assert!(
            !text.contains(&u.secret),
            "the secret of {} is in the log",
            u.name
        );
    }
    let rendered = metrics.render();
    assert!(
        rendered.contains(r#"exposure_api_throttled_total{user="limited"}"#),
        "{rendered}"
    );
    for code in [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId.NotFound",
        "SignatureNonceUsed",
        "InvalidTimeStamp.Expired",
        "Forbidden.RAM",
        "Throttling.User",
    ] {
        assert!(
            rendered.contains(&format!("code=\"{code}\"")),
            "{code} not counted"
        );
    }
}
