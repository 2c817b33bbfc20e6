//! A headless Chromium page driven over the DevTools protocol, with no crate beyond serde_json:
//! Chromium's `--remote-debugging-pipe` reads NUL-terminated JSON commands on fd 3 and writes
//! replies and events on fd 4, which a shell connects to two named pipes this module opens.
//!
//! Every call runs on blocking threads and gives up after [`PATIENCE`], so a hung browser fails
//! the test instead of hanging it. The browser process is killed when the page is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// How long one DevTools call, or one [`Page::wait_for`], may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Set to make a missing browser fail the test instead of skipping it.
const REQUIRE_ENV: &str = "DIEGO_TEST_REQUIRE_CHROMIUM";
/// A browser binary to use instead of the first of [`NAMES`] on `PATH`.
const BROWSER_ENV: &str = "DIEGO_TEST_CHROMIUM";
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The browser to drive: `DIEGO_TEST_CHROMIUM`, or the first of [`NAMES`] on `PATH`. `None`
/// (the test skips) when there is none, unless `DIEGO_TEST_REQUIRE_CHROMIUM` is set.
pub fn chromium() -> Option<PathBuf> {
    let found = match std::env::var_os(BROWSER_ENV) {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path).flat_map(|dir| NAMES.map(|name| dir.join(name))).find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "{REQUIRE_ENV} is set but no browser was found (install Debian's chromium, or set {BROWSER_ENV})"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium; {REQUIRE_ENV}=1 makes this a failure)");
    }
    found
}

/// The DevTools connection: commands out, messages in (read by a thread of its own).
struct Connection {
    commands: File,
    messages: mpsc::Receiver<Value>,
    next_id: u64,
}

impl Connection {
    /// Sends `method` (to the page's `session`, or the browser) and waits for its reply.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&command).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.commands.write_all(&bytes).map_err(|e| format!("{method}: cannot write to the browser: {e}"))?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message =
                self.messages.recv_timeout(left).map_err(|e| format!("{method}: no reply from the browser: {e}"))?;
            // Events (no id) and replies to earlier calls are not this call's reply.
            if message["id"] != json!(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(message["result"].clone());
        }
    }
}

/// One browser tab showing a URL.
pub struct Page {
    connection: Arc<Mutex<Connection>>,
    session: String,
    browser: Mutex<Child>,
    dir: PathBuf,
}

impl Page {
    /// Starts a headless browser and opens `url` in a new tab.
    pub async fn open(chromium: &Path, url: &str) -> Page {
        let chromium = chromium.to_owned();
        let url = url.to_owned();
        let opened = tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || open(&chromium, &url)));
        opened.await.expect("the browser started in time").expect("the browser start did not panic")
    }

    /// The value of the JavaScript `expression` in the page.
    pub async fn evaluate(&self, expression: &str) -> Value {
        match self.try_evaluate(expression).await {
            Ok(value) => value,
            Err(e) => panic!("evaluating {expression:?}: {e}"),
        }
    }

    async fn try_evaluate(&self, expression: &str) -> Result<Value, String> {
        let connection = self.connection.clone();
        let session = self.session.clone();
        let params = json!({ "expression": expression, "returnByValue": true });
        let reply = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            connection.call(Some(&session), "Runtime.evaluate", params)
        })
        .await
        .map_err(|e| e.to_string())??;
        if let Some(exception) = reply.get("exceptionDetails") {
            return Err(format!("the page threw: {exception}"));
        }
        Ok(reply["result"]["value"].clone())
    }

    /// Polls `expression` (which evaluates to a JSON string) until `done` holds for its parsed
    /// value and returns that value; fails naming `what` and the last value after [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, expression: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let last = match self.try_evaluate(expression).await {
                Ok(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(value) if done(&value) => return value,
                    Ok(value) => value.to_string(),
                    Err(e) => format!("not JSON ({e}): {text}"),
                },
                Ok(other) => format!("not a string: {other}"),
                // The page may still be loading.
                Err(e) => e,
            };
            assert!(tokio::time::Instant::now() < deadline, "the page never showed {what}; last seen: {last}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a PNG of the page to `path` (for a person to look at).
    pub async fn screenshot(&self, path: &Path) {
        let connection = self.connection.clone();
        let session = self.session.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let size = json!({ "width": 1280, "height": 1400, "deviceScaleFactor": 1, "mobile": false });
            connection.call(Some(&session), "Emulation.setDeviceMetricsOverride", size)?;
            connection.call(Some(&session), "Page.captureScreenshot", json!({ "format": "png" }))
        })
        .await
        .expect("the screenshot call did not panic")
        .expect("the browser takes a screenshot");
        let data = reply["data"].as_str().expect("base64 image data");
        std::fs::write(path, base64_decode(data)).expect("the screenshot is written");
    }

    /// Closes the browser and waits for it to exit.
    pub async fn close(&self) {
        let connection = self.connection.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            connection.call(None, "Browser.close", json!({}))
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self.browser.lock().unwrap_or_else(|p| p.into_inner()).try_wait().ok().flatten().is_some();
            if exited || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let browser = self.browser.get_mut().unwrap_or_else(|p| p.into_inner());
        if browser.try_wait().ok().flatten().is_none() {
            let _ = browser.kill();
            let _ = browser.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the browser on two named pipes, then opens `url` in a new tab and attaches to it.
fn open(chromium: &Path, url: &str) -> Page {
    let dir = std::env::temp_dir().join(format!("diego-dashboard-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (to_browser, from_browser) = (dir.join("to-browser"), dir.join("from-browser"));
    let made = Command::new("mkfifo").arg(&to_browser).arg(&from_browser).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let log = File::create(dir.join("browser.log")).unwrap();
    // The shell connects the pipes to fds 3 and 4, then becomes the browser.
    let browser = Command::new("bash")
        .arg("-c")
        .arg(r#"exec "$0" "$@" 3<"$DIEGO_TO_BROWSER" 4>"$DIEGO_FROM_BROWSER""#)
        .arg(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("about:blank")
        .env("DIEGO_TO_BROWSER", &to_browser)
        .env("DIEGO_FROM_BROWSER", &from_browser)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the browser starts");
    // Each open waits for the shell to open the other end, in the same order.
    let commands = std::fs::OpenOptions::new().write(true).open(&to_browser).expect("the command pipe opens");
    let mut replies = File::open(&from_browser).expect("the reply pipe opens");
    let (send, messages) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut pending, mut chunk) = (Vec::new(), [0_u8; 64 * 1024]);
        while let Ok(n) = replies.read(&mut chunk) {
            if n == 0 {
                return;
            }
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|b| *b == 0) {
                let message: Vec<u8> = pending.drain(..=end).collect();
                if let Ok(value) = serde_json::from_slice::<Value>(&message[..end])
                    && send.send(value).is_err()
                {
                    return;
                }
            }
        }
    });
    let mut connection = Connection { commands, messages, next_id: 0 };
    let created = connection.call(None, "Target.createTarget", json!({ "url": url })).expect("a tab opens");
    let target = created["targetId"].clone();
    let attached = connection
        .call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }))
        .expect("the tab can be driven");
    let session = attached["sessionId"].as_str().expect("a session id").to_owned();
    Page { connection: Arc::new(Mutex::new(connection)), session, browser: Mutex::new(browser), dir }
}

/// Decodes standard base64 (the DevTools protocol's binary encoding); invalid characters are
/// skipped.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut bits, mut count) = (Vec::with_capacity(text.len() * 3 / 4), 0_u32, 0);
    for byte in text.bytes() {
        let Some(value) = ALPHABET.iter().position(|c| *c == byte) else { continue };
        bits = ((bits << 6) | value as u32) & 0xffff;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
