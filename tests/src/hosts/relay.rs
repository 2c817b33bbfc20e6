//! TCP relays across namespaces, run by the test process: a listener in one namespace whose
//! every connection is forwarded to an address reached from another. The database host's port
//! is one (listening on the host's address, forwarding to the database server on the machine's
//! loopback), and so is the test's own way in to a host's view of the network (listening on the
//! machine's loopback, connecting from inside the host).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::netns::in_netns;

/// How long a relayed connection may take to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running relay; it stops, and its connections close, when dropped.
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens at `listen` in namespace `listen_ns` (`None`: the test process's own), and
    /// connects each accepted connection to `target` from namespace `connect_ns`.
    pub async fn start(
        listen_ns: Option<&str>,
        listen: SocketAddr,
        connect_ns: Option<&str>,
        target: SocketAddr,
    ) -> io::Result<Relay> {
        let bind = move || {
            let listener = std::net::TcpListener::bind(listen)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let listener = match listen_ns {
            Some(ns) => in_netns(ns, bind)?,
            None => bind()?,
        };
        let listener = TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        let connect_ns = connect_ns.map(str::to_owned);
        let task = tokio::spawn(async move {
            // Dropped with the task: every relayed connection ends with the relay.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, _)) = accepted else { continue };
                        let connect_ns = connect_ns.clone();
                        connections.spawn(async move {
                            if let Ok(mut outbound) = connect(connect_ns.as_deref(), target).await {
                                let mut inbound = inbound;
                                let _ = inbound.set_nodelay(true);
                                let _ = outbound.set_nodelay(true);
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Relay { address, task })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to `target` from namespace `ns` (`None`: the test process's own).
pub async fn connect(ns: Option<&str>, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = move || if target.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let socket = match ns {
        Some(ns) => in_netns(ns, socket)?,
        None => socket()?,
    };
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {target} timed out")))?
}
