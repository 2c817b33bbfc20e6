//! `diego-demo-app`: the demo program a diego-rs cluster runs on any runtime without downloads.
//! A tiny HTTP/1.1 server (std::net, one thread per connection, `Connection: close`) on `$PORT`
//! (default 8080), all interfaces:
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | one line naming the instance: index, guid, host and port |
//! | `GET /health` | 200 `ok`, or 503 once `POST /unhealthy` was called |
//! | `GET /env` | JSON: `INSTANCE_INDEX`, `INSTANCE_GUID`, `PORT`, every `CF_INSTANCE_*`, `hostname` |
//! | `POST /unhealthy` | 200; from now on `/health` answers 503 |
//! | `POST /crash` | 200, then the process exits with status 1 |
//!
//! Anything else is a 404 (unknown path) or 405 (wrong method).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The largest request head read; the demo's requests are tiny.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> ExitCode {
    let port = match std::env::var("PORT") {
        Err(_) => 8080,
        Ok(text) => match text.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("error: PORT must be a port number, got {text:?}");
                return ExitCode::from(2);
            }
        },
    };
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on port {port}: {e}");
            return ExitCode::from(1);
        }
    };
    let healthy = Arc::new(AtomicBool::new(true));
    println!("diego-demo-app: instance {} listening on port {port}", instance_label());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let healthy = healthy.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &healthy) {
                eprintln!("diego-demo-app: connection failed: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}

/// Answers one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, healthy: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let Some((method, path)) = read_request_line(&mut stream)? else {
        // A TCP health check connects and closes without a request: nothing to answer.
        return Ok(());
    };
    let path = path.split('?').next().unwrap_or("/").to_owned();
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/") => respond(&mut stream, 200, "text/plain", &format!("{}\n", instance_label())),
        ("GET" | "HEAD", "/health") => {
            if healthy.load(Ordering::SeqCst) {
                respond(&mut stream, 200, "text/plain", "ok\n")
            } else {
                respond(&mut stream, 503, "text/plain", "unhealthy\n")
            }
        }
        ("GET" | "HEAD", "/env") => respond(&mut stream, 200, "application/json", &env_json()),
        ("POST", "/unhealthy") => {
            healthy.store(false, Ordering::SeqCst);
            println!("diego-demo-app: turned unhealthy on request");
            respond(&mut stream, 200, "text/plain", "/health now answers 503\n")
        }
        ("POST", "/crash") => {
            let _ = respond(&mut stream, 200, "text/plain", "crashing with exit status 1\n");
            close_gracefully(&mut stream);
            println!("diego-demo-app: crashing on request");
            std::process::exit(1);
        }
        (_, "/" | "/health" | "/env" | "/unhealthy" | "/crash") => {
            respond(&mut stream, 405, "text/plain", "method not allowed\n")
        }
        _ => respond(&mut stream, 404, "text/plain", "not found: try /, /health, /env, POST /unhealthy, POST /crash\n"),
    }
}

/// Sends FIN after the response and waits (at most a second) for the client to close its side,
/// so that exiting right after cannot turn the close into a reset that discards the response.
fn close_gracefully(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 512];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Reads the request head and returns the method and target of its first line; `None` when
/// the peer closed the connection without sending one.
fn read_request_line(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_HEAD {
            break;
        }
    }
    if head.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => Ok(Some((method.to_owned(), target.to_owned()))),
        _ => {
            respond(stream, 400, "text/plain", "bad request\n")?;
            Ok(None)
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// `index 0 (guid ...) on HOST:PORT`.
fn instance_label() -> String {
    let var = |name| std::env::var(name).unwrap_or_else(|_| "?".to_owned());
    format!(
        "diego demo app: index {} (instance guid {}) on {} port {}",
        var("INSTANCE_INDEX"),
        var("INSTANCE_GUID"),
        hostname(),
        var("PORT")
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The instance's identity from its environment, as JSON.
fn env_json() -> String {
    let mut values: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| {
            name.starts_with("CF_INSTANCE_") || matches!(name.as_str(), "INSTANCE_INDEX" | "INSTANCE_GUID" | "PORT")
        })
        .collect();
    values.insert("hostname".to_owned(), hostname());
    let mut text = serde_json::to_string_pretty(&values).unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}
