//! A small WebDriver client (the W3C protocol over HTTP) for driving
//! Debian's headless Chromium through chromedriver in the browser tests.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process on a free loopback port.
pub struct Driver {
    child: Child,
    url: String,
}

fn find(bin: &str, fallback: &str) -> Result<PathBuf> {
    if Path::new(fallback).exists() {
        return Ok(fallback.into());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(bin))
        .find(|p| p.exists())
        .with_context(|| {
            format!("{bin} is not installed (apt-get install chromium chromium-driver; scripts/test does)")
        })
}

impl Driver {
    pub fn start() -> Result<Driver> {
        let exe = find("chromedriver", "/usr/bin/chromedriver")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(v) = get(&format!("{}/status", d.url)) {
                if v["value"]["ready"].as_bool() == Some(true) {
                    return Ok(d);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("chromedriver did not become ready in 20 s")
    }

    /// A new headless browser with its own empty profile in `profile`.
    pub fn session(&self, profile: &Path) -> Result<Session> {
        let chromium = find("chromium", "/usr/bin/chromium")?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let v = post(&format!("{}/session", self.url), &caps)?;
        let id = v["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session id in {v}"))?;
        Ok(Session {
            base: format!("{}/session/{id}", self.url),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answer(r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
    let mut r = r.map_err(|e| anyhow!("webdriver: {e}"))?;
    let status = r.status();
    let v: Value = r.body_mut().read_json().context("webdriver answer")?;
    if !status.is_success() {
        bail!(
            "webdriver {}: {}",
            v["value"]["error"].as_str().unwrap_or("error"),
            v["value"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn get(url: &str) -> Result<Value> {
    answer(agent().get(url).call())
}

fn post(url: &str, body: &Value) -> Result<Value> {
    answer(agent().post(url).send_json(body))
}

/// One browser window.
pub struct Session {
    base: String,
}

impl Session {
    fn cmd(&self, path: &str, body: Value) -> Result<Value> {
        Ok(post(&format!("{}/{path}", self.base), &body)?["value"].take())
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("url", json!({ "url": url })).map(|_| ())
    }

    pub fn url(&self) -> Result<String> {
        Ok(get(&format!("{}/url", self.base))?["value"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    fn element(&self, css: &str) -> Result<String> {
        let v = self.cmd("element", json!({"using": "css selector", "value": css}))?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no element {css}"))
    }

    /// Whether `css` matches an element now.
    pub fn element_exists(&self, css: &str) -> bool {
        self.element(css).is_ok()
    }

    /// Waits until `css` matches an element, up to `secs`.
    pub fn wait_for(&self, css: &str, secs: u64) -> Result<()> {
        let t = Instant::now();
        loop {
            if self.element(css).is_ok() {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(secs) {
                bail!(
                    "no {css} after {secs} s on {} (toast: {:?})",
                    self.url()?,
                    self.toast()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.element(css)?;
        self.cmd(&format!("element/{e}/click"), json!({}))
            .map(|_| ())
    }

    /// Types `text` into the element (for a file input: the file's path).
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.element(css)?;
        if !text.starts_with('/') {
            self.cmd(&format!("element/{e}/clear"), json!({}))?;
        }
        self.cmd(&format!("element/{e}/value"), json!({ "text": text }))
            .map(|_| ())
    }

    pub fn text(&self, css: &str) -> Result<String> {
        let e = self.element(css)?;
        Ok(get(&format!("{}/element/{e}/text", self.base))?["value"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`).
    pub fn exec(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd("execute/sync", json!({"script": script, "args": args}))
    }

    /// Runs `script` whose last argument is the callback to call with its result.
    pub fn exec_async(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd("execute/async", json!({"script": script, "args": args}))
    }

    /// The page's latest message to its user, if one shows.
    pub fn toast(&self) -> Option<String> {
        self.exec(
            "const t = document.querySelector('#toast'); return t && t.className ? t.textContent : null;",
            json!([]),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
    }

    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = get(&format!("{}/screenshot", self.base))?;
        let b64 = v["value"].as_str().context("no screenshot")?;
        std::fs::write(path, base64(b64)?)?;
        Ok(())
    }

    pub fn close(&self) {
        let _ = agent().delete(&self.base).call();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn base64(s: &str) -> Result<Vec<u8>> {
    let val = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let k = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + k]);
    }
    Ok(out)
}
