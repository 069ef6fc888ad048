//! A small WebDriver client for headless Chromium through chromedriver, both from Debian
//! (`scripts/test.sh` installs them). Only what the browser test needs.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn chromium() -> String {
    std::env::var("WHISTLE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// chromedriver cannot be told to pick its own port: it gets a port that was free a moment ago,
/// and if something took it in between (chromedriver exits), another one.
async fn start_driver(http: &reqwest::Client) -> (Child, String) {
    for _ in 0..3 {
        let port = super::nats_server::free_port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (./scripts/test.sh installs Debian's chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if driver.try_wait().ok().flatten().is_some() {
                break;
            }
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    return (driver, base);
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("chromedriver exited on three ports in a row");
}

impl Browser {
    pub async fn start() -> Browser {
        let http = reqwest::Client::new();
        let (driver, base) = start_driver(&http).await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1100",
            "--lang=zh-CN",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium(), "args": args }
        }}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_owned();
        Browser { driver, base, session, http, _profile: profile }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        res["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn find(&self, css: &str) -> Option<String> {
        let v =
            self.cmd(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await;
        v[ELEMENT_KEY].as_str().map(str::to_owned)
    }

    /// An element matching `css` now, without waiting.
    pub async fn find_now(&self, css: &str) -> Option<String> {
        self.find(css).await
    }

    /// Waits for an element (at most `within`).
    pub async fn wait_for(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(id) = self.find(css).await {
                return id;
            }
            assert!(Instant::now() < deadline, "{css} did not appear within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a script returns true (at most `within`).
    pub async fn wait_until(&self, script: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.exec(script).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "{script} was not true within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    /// Chooses a local file in a file input, as a person picking it would.
    pub async fn choose_file(&self, css: &str, path: &std::path::Path) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        let text = path.to_str().expect("a UTF-8 path");
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn exec(&self, script: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// Resizes the window (the page's viewport follows: headless Chromium has no frame).
    pub async fn window(&self, width: u32, height: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({ "width": width, "height": height }))).await;
    }

    /// The text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : '';", json!(css));
        self.exec(&script).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64_decode as decode;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = decode(v.as_str().expect("screenshot data"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot encoding), without a dependency for one call.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
