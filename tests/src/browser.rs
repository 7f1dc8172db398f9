//! A real headless Chromium, driven through ChromeDriver's WebDriver protocol (plain JSON
//! over HTTP on loopback): the web console is tested the way a reviewer uses it.
//!
//! Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs them). Screenshots
//! go to `target/console-screenshots/`, kept as the test run's artifacts.
//!
//! Why not `fantoccini` (or `thirtyfour`, built on it): even without its TLS features it
//! brings 48 crates into the build (Mozilla's `webdriver` crate with `http` 0.2, two
//! `cookie`s, `thiserror` 1, the ICU tables of `url`), eleven of them second versions of
//! crates already here — for the dozen WebDriver calls these tests make over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{free_port, stop, wait_for};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// WebDriver's name for an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser window.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// The browser's profile, removed with it.
    _profile: tempfile::TempDir,
}

/// An element on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that accepts the bastion's self-signed
    /// certificate (the test pins nothing in the browser; the API tests pin it).
    pub fn start() -> Self {
        for program in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: apt-get install chromium chromium-driver (as .ci/run does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("browser profile dir");
        let profile_path = profile.path().display().to_string();
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let ready = wait_for(Duration::from_secs(20), || {
            browser
                .try_request("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        });
        assert!(ready.is_some(), "chromedriver did not become ready");
        let created = browser.request(
            "POST",
            "/session",
            Some(json!({
                "capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1400,1000",
                            format!("--user-data-dir={profile_path}"),
                        ],
                    },
                }}
            })),
        );
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        browser
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url }));
    }

    /// The first element matching the CSS selector, if there is one now.
    pub fn find(&self, css: &str) -> Option<Element> {
        let found = self.try_command(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        )?;
        found[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Every element matching the CSS selector now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.try_command(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        )
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
        .collect()
    }

    /// Waits (up to 20 s) for an element matching the CSS selector.
    pub fn wait(&self, css: &str) -> Element {
        wait_for(Duration::from_secs(20), || self.find(css)).unwrap_or_else(|| {
            panic!(
                "no element {css} on the page; it shows:\n{}",
                self.page_text()
            )
        })
    }

    /// Waits (up to 20 s) until the element matching `css` contains `needle`; its text.
    pub fn wait_for_text(&self, css: &str, needle: &str) -> String {
        wait_for(Duration::from_secs(20), || {
            let text = self.text_of(&self.find(css)?);
            text.contains(needle).then_some(text)
        })
        .unwrap_or_else(|| {
            panic!(
                "{needle:?} never appeared in {css}; the page shows:\n{}",
                self.page_text()
            )
        })
    }

    /// Clicks the element matching `css` (waiting for it; found again if the page redrew
    /// it in between).
    pub fn click(&self, css: &str) {
        self.act(css, "click", json!({}));
    }

    /// Clicks an element.
    pub fn click_element(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), json!({}));
    }

    /// Types `text` into the input matching `css` (waiting for it, as `click`).
    pub fn type_into(&self, css: &str, text: &str) {
        self.act(css, "value", json!({ "text": text }));
    }

    /// `POST /element/ID/ACTION` on the element matching `css`, finding it again while the
    /// page replaces it (a refreshing list redraws its rows).
    fn act(&self, css: &str, action: &str, body: Value) {
        let mut last = String::new();
        let done = wait_for(Duration::from_secs(20), || {
            let element = self.find(css)?;
            let path = format!("/session/{}/element/{}/{action}", self.session, element.0);
            match self.try_request("POST", &path, Some(body.clone())) {
                Ok(reply) if reply["value"]["error"].is_null() => Some(()),
                Ok(reply) => {
                    last = reply["value"]["error"].to_string();
                    None
                }
                Err(error) => {
                    last = error;
                    None
                }
            }
        });
        assert!(
            done.is_some(),
            "could not {action} {css} ({last}); the page shows:\n{}",
            self.page_text()
        );
    }

    /// The visible text of an element.
    pub fn text_of(&self, element: &Element) -> String {
        self.try_command("GET", &format!("/element/{}/text", element.0), json!(null))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// An attribute of an element.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.try_command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            json!(null),
        )
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The whole page's visible text.
    pub fn page_text(&self) -> String {
        self.find("body")
            .map(|body| self.text_of(&body))
            .unwrap_or_default()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Runs `script` that calls `arguments[arguments.length - 1](value)` when done.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.command("GET", "/url", json!(null))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the window as `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.command("GET", "/screenshot", json!(null));
        let png = decode_base64(encoded.as_str().unwrap_or_default());
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// What the page wrote to the browser console at warning level or above (CSP
    /// violations, script errors), since the last call.
    pub fn console_problems(&self) -> Vec<String> {
        self.try_request(
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(json!({ "type": "browser" })),
        )
        .ok()
        .and_then(|v| v["value"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|entry| matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING")))
        .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
        .collect()
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (!body.is_null()).then_some(body);
        let reply = self.request(method, &path, body);
        reply["value"].clone()
    }

    fn try_command(&self, method: &str, path: &str, body: Value) -> Option<Value> {
        let path = format!("/session/{}{path}", self.session);
        let body = (!body.is_null()).then_some(body);
        let reply = self.try_request(method, &path, body).ok()?;
        (reply["value"]["error"].is_null()).then(|| reply["value"].clone())
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self
            .try_request(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert!(
            reply["value"]["error"].is_null(),
            "webdriver {method} {path}: {}",
            reply["value"]
        );
        reply
    }

    /// One HTTP/1.1 exchange with ChromeDriver.
    fn try_request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        // ChromeDriver may keep the connection open whatever the request says: read the
        // head, then exactly the body it announces.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("no HTTP reply: {}", String::from_utf8_lossy(&raw)));
            }
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let body = if header("transfer-encoding:").is_some_and(|v| v == "chunked") {
            while !raw[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
            }
            dechunk(&String::from_utf8_lossy(&raw[head_end..]))
        } else {
            let length: usize = header("content-length:")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no content length in {head}"))?;
            while raw.len() < head_end + length {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the reply was cut short".into());
                }
                raw.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned()
        };
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_request("DELETE", &format!("/session/{}", self.session), None);
        }
        stop(&mut self.driver);
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// Where screenshots are kept: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let bin = crate::util::portcullis_bin();
    let profile_dir = bin.parent().expect("target/debug");
    profile_dir
        .parent()
        .unwrap_or(profile_dir)
        .join("console-screenshots")
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for digit in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | digit;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunks_decode() {
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(decode_base64("YQ=="), b"a");
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
