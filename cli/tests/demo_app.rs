//! `diego-demo-app`: started with `PORT` and an instance environment, it answers `/`,
//! `/health`, `/env`, turns unhealthy on `POST /unhealthy` and exits 1 on `POST /crash`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const APP: &str = env!("CARGO_BIN_EXE_diego-demo-app");

/// A running demo app, killed when dropped.
struct App {
    child: Child,
    port: u16,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl App {
    /// Starts the app on a free port and waits until it answers as itself. A port another
    /// process took between the pick and the app's bind (the app then exits, or a stranger
    /// answers there) is given up for another one.
    fn start() -> App {
        for _ in 0..5 {
            if let Some(app) = App::try_start() {
                return app;
            }
        }
        panic!("diego-demo-app never answered on a port of its own");
    }

    /// One attempt of [`App::start`]: `None` when the port turned out to be taken.
    fn try_start() -> Option<App> {
        let port = svc::ports::free_port().unwrap();
        let child = Command::new(APP)
            .env("PORT", port.to_string())
            .env("INSTANCE_INDEX", "2")
            .env("INSTANCE_GUID", "ig-7")
            .env("CF_INSTANCE_ADDR", format!("127.0.0.1:{port}"))
            .env("CF_INSTANCE_PORT", port.to_string())
            .env("UNRELATED", "not echoed")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start diego-demo-app");
        let mut app = App { child, port };
        for _ in 0..200 {
            if let Some(status) = app.child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = app.child.stderr.take().unwrap().read_to_string(&mut stderr);
                if stderr.contains("cannot listen") {
                    return None;
                }
                panic!("diego-demo-app exited ({status}) before it listened on port {port}: {stderr}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Whoever listens there must answer as this instance.
                return match app.try_request("GET", "/") {
                    Ok((200, body)) if body.contains("ig-7") => Some(app),
                    _ => None,
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("diego-demo-app never listened on port {port}");
    }

    /// Sends one request; returns the status code and the body.
    fn request(&self, method: &str, path: &str) -> (u16, String) {
        self.try_request(method, path).unwrap()
    }

    fn try_request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok((status, body))
    }
}

#[test]
fn the_root_names_the_instance_and_env_echoes_its_environment() {
    let app = App::start();
    let (status, body) = app.request("GET", "/");
    assert_eq!(status, 200);
    assert!(body.contains("index 2") && body.contains("ig-7") && body.contains(&app.port.to_string()), "{body}");

    let (status, body) = app.request("GET", "/env");
    assert_eq!(status, 200);
    let env: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["INSTANCE_INDEX"], "2");
    assert_eq!(env["INSTANCE_GUID"], "ig-7");
    assert_eq!(env["PORT"], app.port.to_string());
    assert_eq!(env["CF_INSTANCE_ADDR"], format!("127.0.0.1:{}", app.port));
    assert_eq!(env["CF_INSTANCE_PORT"], app.port.to_string());
    assert!(env["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{env}");
    assert!(env.get("UNRELATED").is_none(), "{env}");

    assert_eq!(app.request("GET", "/nope").0, 404);
    assert_eq!(app.request("DELETE", "/health").0, 405);
}

#[test]
fn health_turns_503_after_unhealthy_and_a_bare_tcp_check_is_harmless() {
    let app = App::start();
    assert_eq!(app.request("GET", "/health"), (200, "ok\n".to_owned()));
    // A TCP health check connects and closes without a request.
    drop(TcpStream::connect(("127.0.0.1", app.port)).unwrap());
    assert_eq!(app.request("GET", "/health?probe=1").0, 200);
    assert_eq!(app.request("POST", "/unhealthy").0, 200);
    assert_eq!(app.request("GET", "/health").0, 503);
    assert_eq!(app.request("GET", "/").0, 200, "only /health reports the state");
}

#[test]
fn crash_exits_with_status_1() {
    let mut app = App::start();
    let (status, _) = app.request("POST", "/crash");
    assert_eq!(status, 200);
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = app.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = exited.expect("diego-demo-app did not exit after POST /crash");
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    app.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_port_is_refused_with_one_line() {
    let output = Command::new(APP).env("PORT", "eighty").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end(), "error: PORT must be a port number, got \"eighty\"");
}
