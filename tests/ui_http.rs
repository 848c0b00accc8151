//! The live view's routes over a real socket, as a client sees them: the
//! page's files (types, CSP, cache headers, no auth needed), and the
//! redirect of a browser opening `/`, which leaves every API call alone.

mod support;

use std::sync::Arc;

use exposure::config::{ApiConfig, Config};
use exposure::metrics::Metrics;
use exposure::state::wall_now_ms;
use support::{request, ApiServer, Response};

/// The `Accept` header Chromium sends for a page.
const BROWSER: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

async fn server(config: ApiConfig) -> ApiServer {
    let engine = Arc::new(support::engine());
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine)));
    ApiServer::start(engine, metrics, support::ready(), config, wall_now_ms).await
}

fn get(server: &ApiServer, target: &str, accept: &str) -> Response {
    request(server.addr, "GET", target, &[("Accept", accept)], b"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opening_the_address_is_sent_to_the_page_and_api_calls_are_not() {
    let server = server(support::no_auth()).await;

    for target in ["/", "/?Lang=en"] {
        let r = get(&server, target, BROWSER);
        assert_eq!(r.status, 303, "{target}: {}", r.text());
        assert_eq!(r.header("location"), Some("/ui/"), "{target}");
    }
    // Without text/html, `/` is the API as before: no Action is an error.
    let r = get(&server, "/", "*/*");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["Code"], "MissingParameter");
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    // An Action always gets the API's answer, whatever the client accepts.
    let r = get(
        &server,
        "/?Action=DescribeInternetOpenStatistic&Lang=en",
        BROWSER,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["InternetPortNum"], 0);
    let r = request(
        server.addr,
        "POST",
        "/",
        &[
            ("Accept", BROWSER),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"Action=DescribeInternetOpenStatistic",
    );
    assert_eq!(r.status, 200, "a form posted by a browser: {}", r.text());
    // `/ui` without its slash.
    let r = get(&server, "/ui", BROWSER);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/ui/"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_without_auth_with_its_types_csp_and_no_cache() {
    let toml = concat!(
        "[network]\nassets = [\"203.0.113.0/24\"]\n\n[api]\nauth = \"acs\"\n\n",
        "[[api.users]]\nname = \"secops\"\naccess_key_id = \"LTAI5tSECOPS\"\n",
        "access_key_secret = \"a-secret\"\nactions = [\"*\"]\n",
    );
    let config = Config::from_toml_str(toml, &|_: &str| None).expect("a valid config");
    let server = server(config.api).await;
    for (path, content_type, contains) in [
        ("/ui/", "text/html; charset=utf-8", "<table id=\"ports\">"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "ACS3-HMAC-SHA256",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", "#ports"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = get(&server, path, BROWSER);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.text().contains(contains), "{path}");
    }
    // The page's calls are API calls: unsigned, they are refused.
    let r = get(&server, "/?Action=DescribeInternetOpenPort", "*/*");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Code"], "MissingParameter");
    assert!(r.json()["Message"].as_str().unwrap().contains("Signature"));
    // Nothing else is served under /ui/.
    assert_eq!(get(&server, "/ui/other.js", BROWSER).status, 404);
    server.stop().await.unwrap();
}
