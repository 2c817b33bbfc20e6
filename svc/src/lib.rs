//! The service toolkit: the one home of what every diego-rs process does the same way, so that a
//! change to it (mutual TLS, a new limit, a metric) is one edit.
//!
//! - [`config`]: loading a TOML file, duration parsing and the one [`config::ConfigError`].
//! - [`admin`]: the admin HTTP server (`/healthz`, `/metrics` from one shared Prometheus handle).
//! - [`server`]: the one builder of a tonic server (health, reflection, limits, TCP_NODELAY,
//!   mutual TLS, the peer of every request).
//! - [`connect`]: the one connector that builds every outbound gRPC channel.
//! - [`bbs_client`]: the leader-following BBS client core (`x-diego-leader` redirects, channel
//!   cache, endpoint parsing).
//! - [`lease`]: the one lease holder (BBS leader lock, auctioneer lock, cell presence).
//! - [`lag`]: how late the runtime runs ready tasks (the scheduling-delay monitor).
//! - [`identity`]: who is calling: the role and name a certificate's `diego://` URI SAN gives.
//! - [`authz`]: what each role may call (the one role table) and the layer that enforces it.
//! - [`certs`]: the cluster CA and the certificates it issues (files, modes, the dev bundle).
//! - [`pki`]: a certificate directory that issues on demand (`diego dev`, the in-process cluster,
//!   tests).
//! - [`clock`]: the injected wall clock and its manual twin for tests.
//! - [`process`]: what every `main` does alike: logging, binding its listeners, exit codes.
//! - [`ports`]: loopback ports to name before a child process binds them (tests, tools).
//! - [`signals`]: turning SIGINT/SIGTERM into a cancellation.
//! - [`tls`]: mutual TLS on every gRPC hop (files, reloading, handshake errors in one line).
//! - [`global_allocator!`]: the memory allocator every binary uses.

pub mod admin;
pub mod authz;
pub mod bbs_client;
pub mod certs;
pub mod clock;
pub mod config;
pub mod connect;
pub mod identity;
pub mod lag;
pub mod lease;
pub mod pki;
pub mod ports;
pub mod process;
pub mod server;
pub mod signals;
pub mod tls;

#[doc(hidden)]
pub use mimalloc;

/// Makes mimalloc the binary's memory allocator; every diego-rs binary's `main.rs` invokes it
/// once, and calls [`tune_memory`] first thing in `main` ([`process::start`] does for the
/// servers). The servers allocate and free small buffers at a high rate (requests, rows, events):
/// with the system allocator, malloc and free were about a fifth of the CPU samples of the
/// smoke benchmark, and with mimalloc that run used 0.66x the user CPU and 0.86x the wall time
/// (docs/performance.md, "The allocator"). Libraries and tests keep the system allocator.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static GLOBAL_ALLOCATOR: $crate::mimalloc::MiMalloc = $crate::mimalloc::MiMalloc;
    };
}

/// Turns transparent huge pages off for this process (and the children it forks), before the
/// heap grows. mimalloc asks for huge pages on its arenas; where the kernel grants them, each
/// 2 MiB page is zeroed whole on its first touch and again after every purge. In the smoke
/// benchmark that zeroing was 16% of all CPU samples; with it off the run used 0.90x the CPU,
/// 0.92x the wall time and 0.77x the peak memory (docs/performance.md, "Huge pages"). Idempotent;
/// a kernel that refuses (no THP support) changes nothing.
pub fn tune_memory() {
    // Called before logging is set up; a refusal only leaves the kernel's default in place.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn tune_memory_turns_transparent_huge_pages_off() {
        super::tune_memory();
        assert_eq!(rustix::thread::transparent_huge_pages_are_disabled().ok(), Some(true));
    }
}
