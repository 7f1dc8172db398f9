//! The web console: a single page and its scripts, embedded in the binary and served from
//! the API's own origin. The page holds the token in sessionStorage and calls the same API
//! as the CLI, so every action passes the same scope checks; a bearer token in a header
//! (never a cookie) makes cross-site requests useless by design.
//!
//! The replay and live terminal are asciinema-player, vendored from its npm package
//! (`broker/console/vendor/asciinema-player`, see `vendor.sh` there).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Scripts and styles only from this origin; the player's terminal is WebAssembly, which
/// needs `wasm-unsafe-eval` (it allows compiling wasm, not `eval` of scripts).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path under `/console/`, its type, its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", CSS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/pages/signin.js", JS),
    asset!("js/pages/sessions.js", JS),
    asset!("js/pages/session.js", JS),
    asset!("js/pages/recordings.js", JS),
    asset!("js/pages/replay.js", JS),
    asset!("js/pages/streams.js", JS),
    asset!("js/pages/requests.js", JS),
    asset!("js/pages/locks.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("vendor/asciinema-player/asciinema-player.min.js", JS),
    asset!("vendor/asciinema-player/asciinema-player.css", CSS),
];

/// `GET /`: the console's page.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /favicon.ico`: browsers ask for it whatever the page says.
pub async fn favicon() -> Response {
    serve("favicon.svg")
}

/// `GET /console/{*path}`
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound("no such file".into()).into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary may bring new scripts: the browser asks again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_loads_is_embedded() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/console/"))
        {
            let path = reference.trim_start_matches("/console/");
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{path} is not embedded"
            );
        }
        for asset in ASSETS.iter().filter(|a| a.path.starts_with("js/")) {
            let script = std::str::from_utf8(asset.body).unwrap_or_default();
            for import in script
                .lines()
                .filter_map(|l| l.trim().strip_prefix("import "))
                .filter_map(|l| l.split('"').nth(1))
            {
                let base = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
                let resolved = resolve(base, import);
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {import} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn the_vendored_player_is_the_one_vendor_sh_checked() {
        let sums = include_str!("../../console/vendor/asciinema-player/SHA256SUMS");
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").unwrap_or_default();
            let path = format!("vendor/asciinema-player/{name}");
            let asset = ASSETS.iter().find(|a| a.path == path);
            let body = asset.map(|a| a.body).unwrap_or_default();
            let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, body));
            assert_eq!(actual, sum, "{path} differs from what vendor.sh unpacked");
        }
        assert_eq!(sums.lines().count(), 2);
    }

    fn resolve(base: &str, import: &str) -> String {
        let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
        for piece in import.split('/') {
            match piece {
                "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.join("/")
    }
}
