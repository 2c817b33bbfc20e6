//! The server side: accepting TCP connections and doing their TLS handshakes concurrently (at
//! most [`MAX_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]), so a slow or bad client
//! never holds up the others, and handing the verified streams to tonic.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::{Connection, MutualTls, describe, identity_of};
use crate::identity::Peer;

/// How long a client may take to complete its handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in flight; more connections wait in the listen backlog.
pub(crate) const MAX_HANDSHAKES: usize = 1024;

/// A verified TLS connection, with the [`Connection`] tonic puts into its requests.
pub(crate) struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: Connection,
}

impl Connected for TlsConn {
    type ConnectInfo = Connection;

    fn connect_info(&self) -> Connection {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The verified connections of `listener`, until `shutdown` or until the stream is dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<MutualTls>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<TlsConn, Infallible>> + Send + 'static {
    let (sender, receiver) = mpsc::channel::<TlsConn>(64);
    tokio::spawn(accept_loop(listener, tls, sender, shutdown));
    futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|conn| (Ok(conn), receiver)) },
    )
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<MutualTls>,
    sender: mpsc::Sender<TlsConn>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sender.closed() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sender.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let acceptor = TlsAcceptor::from(tls.server_config());
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    refused(remote, &describe(&e));
                    return;
                }
                Err(_) => {
                    refused(remote, &format!("no handshake within {HANDSHAKE_TIMEOUT:?}"));
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| identity_of(cert).map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("no client certificate".to_owned()));
            match identity {
                Ok(identity) => {
                    let info = Connection { remote: Some(remote), local, peer: Peer::Verified(identity) };
                    let _ = sender.send(TlsConn { stream, info }).await;
                }
                // The verifier already refuses these; never serve a connection without a peer.
                Err(reason) => refused(remote, &reason),
            }
        });
    }
}

/// One debug line per refused connection: anyone can connect, so refusals must not flood the log.
fn refused(remote: std::net::SocketAddr, reason: &str) {
    metrics::counter!("tls_handshake_failures_total").increment(1);
    tracing::debug!(peer = %remote, reason, "TLS handshake refused");
}
