//! Network namespaces through `ip netns`: made, entered by one thread at a time (to open a socket
//! that then belongs to the namespace), emptied of processes and deleted.

use std::io;
use std::path::PathBuf;
use std::process::Command;

/// Every namespace the harness makes is named `<PREFIX>-<pid>-<network>-<host>`; the pid lets a
/// later run find and remove what a run that died left behind.
pub const PREFIX: &str = "dgo";

/// Runs `ip <args>`; its stderr is the error when it fails.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A network namespace, deleted (after its processes are killed) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes namespace `name` with its loopback up.
    pub fn create(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_owned() };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns what it returns.
    /// Sockets `f` creates belong to the namespace for good, whichever thread uses them later.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
        in_netns(&self.name, f)
    }
}

/// [`Netns::run`] by the namespace's name.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let path = ns_path(name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("setns {}: {e}", path.display())))?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the thread in the namespace panicked")))
}

/// Where `ip netns` mounts namespace `name`.
fn ns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// The pids of the processes in namespace `name`.
fn pids(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in namespace `name` and deletes it.
fn destroy(name: &str) {
    for _ in 0..10 {
        let left = pids(name);
        if left.is_empty() {
            break;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = ip(&["netns", "delete", name]);
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// Deletes the namespaces (and kills their processes) of harness runs whose process is gone:
/// what a run killed before its teardown left.
pub fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in listing.lines().filter_map(|line| line.split_whitespace().next()) {
        let mut parts = name.splitn(3, '-');
        let (Some(PREFIX), Some(pid)) = (parts.next(), parts.next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("multihost: removing namespace {name} left by a run that is gone");
            destroy(name);
        }
    }
}
