//! The live view (`docs/api.md#the-live-view`): one page at `/ui/` that
//! shows the exposure as it changes, by calling the API's Actions from the
//! browser. Its three files (`ui/` at the crate root) are embedded in the
//! binary, so the page works offline and a new binary never serves an old
//! page. The page's own routes hold no data and need no auth; its API calls
//! are ordinary API calls, signed in the browser when `api.auth = "acs"`.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::rpc::decode_pairs_list;

/// Where the page is served.
pub const PATH: &str = "/ui/";

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");
const FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

/// Only the page's own files may be loaded, scripted or connected to; no
/// inline script, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; frame-ancestors 'none'";

/// The page's routes: `/ui/` and its script, style sheet and icon; `/ui` is
/// redirected to `/ui/` so relative links resolve.
pub fn routes() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to(PATH) }))
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// One embedded file with its type, the CSP, and `no-cache` (revalidated
/// on every load, so an upgraded binary's page is the one shown).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Middleware around `/`: a browser opening the service's address is sent
/// to the page (303); every other request to `/` reaches the API unchanged.
pub async fn redirect_browsers(req: Request, next: Next) -> Response {
    if is_browser_visit(req.method(), req.headers(), req.uri().query()) {
        return Redirect::to(PATH).into_response();
    }
    next.run(req).await
}

/// A `GET`/`HEAD` that accepts `text/html` and names no `Action` (in the
/// query or `x-acs-action`). API clients and the official SDKs never send
/// `text/html`, and a request naming an Action always gets the API's answer.
fn is_browser_visit(method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
    let accepts_html = headers.get_all(header::ACCEPT).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("text/html")
    });
    let names_action = headers.contains_key("x-acs-action")
        || match decode_pairs_list(query.unwrap_or("").as_bytes()) {
            Ok(pairs) => pairs
                .iter()
                .any(|(name, value)| name == "Action" && !value.is_empty()),
            // A query the API cannot decode gets the API's error.
            Err(_) => true,
        };
    matches!(*method, Method::GET | Method::HEAD) && accepts_html && !names_action
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(method: Method, accept: Option<&str>, query: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        is_browser_visit(&method, &headers, query)
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn only_a_browser_asking_for_no_action_is_redirected() {
        assert!(visit(Method::GET, Some(BROWSER), None));
        assert!(visit(Method::HEAD, Some("TEXT/HTML"), Some("Lang=en")));
        assert!(
            visit(Method::GET, Some(BROWSER), Some("Action=")),
            "empty is absent"
        );
        assert!(!visit(Method::GET, Some("*/*"), None));
        assert!(!visit(Method::GET, Some("application/json"), None));
        assert!(!visit(Method::GET, None, None));
        assert!(!visit(Method::POST, Some(BROWSER), None));
        assert!(!visit(
            Method::GET,
            Some(BROWSER),
            Some("Action=DescribeInternetOpenPort")
        ));
        assert!(!visit(Method::GET, Some(BROWSER), Some("%FF=1")));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(BROWSER));
        headers.insert(
            "x-acs-action",
            HeaderValue::from_static("DescribeInternetOpenIp"),
        );
        assert!(!is_browser_visit(&Method::GET, &headers, None));
    }

    #[test]
    fn the_page_loads_its_script_and_style_by_path_and_runs_no_inline_script() {
        assert!(INDEX_HTML.contains(r#"<script src="app.js""#));
        assert!(INDEX_HTML.contains(r#"href="style.css""#));
        assert_eq!(
            INDEX_HTML.matches("<script").count(),
            1,
            "one external script"
        );
        let handlers: Vec<&str> = INDEX_HTML
            .split_whitespace()
            .filter(|word| word.starts_with("on") && word.contains('='))
            .collect();
        assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
