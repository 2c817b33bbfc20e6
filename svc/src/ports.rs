//! Ports to hand to another process before it binds them: tests, `benchmark-bbs` and the soak
//! tool start servers as child processes and must name their ports first, and the process
//! runtime names a container's host ports before the container binds them.
//!
//! Asking the kernel for port 0 and releasing it is racy twice over: the kernel hands the same
//! ephemeral ports to every outgoing connection and to the next `bind` to port 0, so another test
//! thread can be given the same port, or connect from it, before the child binds it. The ports
//! given here lie below the kernel's ephemeral range, where neither happens, and a counter shared
//! by the whole process never gives the same one twice.

use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const FLOOR: u32 = 10_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A TCP port that is free now on every interface, no other caller in this process has been given, and that
/// no outgoing connection or port-0 bind on this host can take.
pub fn free_port() -> std::io::Result<u16> {
    let ceiling = ephemeral_floor().unwrap_or(32_768);
    if ceiling > FLOOR + 1_000 {
        let span = ceiling - FLOOR;
        // Processes that run at the same time start at different places in the span.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span.min(4_096) {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (FLOOR + (start + n) % span) as u16;
            if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range: the kernel's choice is the best left.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_floor() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binding port 0 a thousand times in a row gives some ports twice (dozens, measured here);
    /// these never repeat.
    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let ceiling = ephemeral_floor().unwrap_or(32_768);
        let ports: Vec<u16> = (0..1_000).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was given twice: {ports:?}");
        for port in ports {
            assert!(u32::from(port) >= FLOOR && u32::from(port) < ceiling, "{port} outside {FLOOR}..{ceiling}");
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
