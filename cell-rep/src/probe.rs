//! Network probing: one TCP connect or HTTP GET from the host to a container's host port, with
//! the messages of the Go healthcheck binary (`healthcheck/cmd/healthcheck`), including its
//! capitalisation, because they become crash reasons users see.
//!
//! This is the probe alone. The loops that decide when to probe and what a failure means live in
//! `checks`; runtimes call [`probe_network`] from `ContainerRuntime::probe` (the sim overrides it).

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest timeout or interval a check may ask for; longer values are clamped (a deadline that
/// far out would overflow the clock).
pub const MAX_CHECK_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The kind of a health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP GET of `path` that must answer 200.
    Http {
        /// The request path, `/` by default.
        path: String,
    },
}

/// One health probe against a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// TCP or HTTP.
    pub kind: ProbeKind,
    /// The address to connect to (the container's host IP).
    pub address: String,
    /// The container port the check names; messages mention it.
    pub container_port: u32,
    /// The host port it maps to; the probe connects here.
    pub host_port: u32,
    /// Connect / request timeout.
    pub timeout: Duration,
}

pub(crate) fn timeout_message(kind: &ProbeKind, port: u32, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64();
    match kind {
        ProbeKind::Tcp => format!("Failed to make TCP connection to port {port}: timed out after {secs:.2} seconds"),
        ProbeKind::Http { path } => {
            format!("Failed to make HTTP request to '{path}' on port {port}: timed out after {secs:.2} seconds")
        }
    }
}

/// A connect error the way Go prints its cause: `connection refused`, without `(os error N)`.
fn describe_io(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        return "connection refused".into();
    }
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}

/// Probes from the host: a TCP connect, or an HTTP GET that must answer 200, to
/// `address:host_port` within `timeout`. The default of `ContainerRuntime::probe`.
pub async fn probe_network(probe: &Probe) -> Result<(), String> {
    let port = probe.container_port;
    let prefix = match &probe.kind {
        ProbeKind::Tcp => format!("Failed to make TCP connection to port {port}"),
        ProbeKind::Http { path } => format!("Failed to make HTTP request to '{path}' on port {port}"),
    };
    let started = Instant::now();
    let deadline = started + probe.timeout.min(MAX_CHECK_DURATION);
    let address = format!("{}:{}", probe.address, probe.host_port);
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(&address)).await {
        Err(_) => return Err(timeout_message(&probe.kind, port, probe.timeout)),
        Ok(Err(error)) => return Err(format!("{prefix}: {}", describe_io(&error))),
        Ok(Ok(stream)) => stream,
    };
    // Host ports come from the ephemeral range, so with nothing listening the kernel can pick
    // the destination port as the source port and connect the socket to itself.
    if matches!((stream.local_addr(), stream.peer_addr()), (Ok(local), Ok(peer)) if local == peer) {
        return Err(format!("{prefix}: connection refused"));
    }
    let ProbeKind::Http { path } = &probe.kind else { return Ok(()) };
    let request = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, address.as_str())
            .header(hyper::header::USER_AGENT, "diego-rs-healthcheck")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(response.status())
    };
    match tokio::time::timeout_at(deadline, request).await {
        Err(_) => Err(timeout_message(&probe.kind, port, probe.timeout)),
        Ok(Err(error)) => Err(format!("{prefix}: {}", error.to_lowercase())),
        Ok(Ok(status)) if status == hyper::StatusCode::OK => Ok(()),
        Ok(Ok(status)) => {
            Err(format!("{prefix}: received status code {} in {}ms", status.as_u16(), started.elapsed().as_millis()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_with_the_healthcheck_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let probe = Probe {
            kind: ProbeKind::Tcp,
            address: "127.0.0.1".into(),
            container_port: 8080,
            host_port: u32::from(port),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            probe_network(&probe).await,
            Err("Failed to make TCP connection to port 8080: connection refused".into())
        );
    }

    #[tokio::test]
    async fn http_checks_need_a_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let status = if request.starts_with("GET /ok ") { "200 OK" } else { "500 Internal Server Error" };
                let _ = socket.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let probe = |path: &str| Probe {
            kind: ProbeKind::Http { path: path.into() },
            address: "127.0.0.1".into(),
            container_port: 8080,
            host_port: u32::from(port),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(probe_network(&probe("/ok")).await, Ok(()));
        let err = probe_network(&probe("/bad")).await.expect_err("500");
        assert!(
            err.starts_with("Failed to make HTTP request to '/bad' on port 8080: received status code 500 in "),
            "{err}"
        );
    }
}
