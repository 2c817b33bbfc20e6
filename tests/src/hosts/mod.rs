//! A multi-host harness: each host is a Linux network namespace with its own address, connected to
//! the others through a userspace Ethernet switch run by the test process ([`switch`]), so a test
//! can cut a host's link (both ways or one way), cut one pair of hosts, add delay and loss, and
//! heal. Components run as the real binaries inside the hosts ([`deployment`]); the test reaches
//! a host's view of the network through relays ([`relay`]).
//!
//! Needs root, `ip` (iproute2) and `/dev/net/tun`. Without them a test skips with the reason, or
//! fails with it when `DIEGO_TEST_REQUIRE_NETNS` is set (CI sets it). Everything is torn down
//! when the [`Network`] is dropped, also after a panic: processes killed, namespaces deleted;
//! namespaces a killed run left behind are removed by the next run. docs/multihost.md has the
//! whole story.

pub mod deployment;
pub mod galera;
pub mod netns;
pub mod postgres;
pub mod relay;
pub mod switch;
pub mod walkthrough;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netns::Netns;
use relay::Relay;
use switch::{LinkRule, Switch};

/// When set, a test that cannot make hosts fails (with the reason) instead of skipping.
pub const REQUIRE_VAR: &str = "DIEGO_TEST_REQUIRE_NETNS";

/// When set, a network's scratch directory (logs, configurations, certificates) is kept after a
/// test that passed too (it always is after a failure).
pub const KEEP_VAR: &str = "DIEGO_TEST_KEEP_HOSTS";

/// Why this machine cannot make hosts, if it cannot: not root, no `/dev/net/tun`, no `ip`.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("network namespaces and TAP devices need root".into());
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        return Some(format!("cannot open /dev/net/tun ({e}): TAP devices are not available"));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("the `ip` command (iproute2) is missing".into()),
    }
}

/// Whether a multi-host test can run here: `false` (after saying why) when it should skip.
///
/// # Panics
/// When it cannot run and [`REQUIRE_VAR`] is set.
pub fn available(test: &str) -> bool {
    let Some(reason) = unavailable() else { return true };
    assert!(
        std::env::var_os(REQUIRE_VAR).is_none(),
        "{test}: {REQUIRE_VAR} is set but this machine cannot make network namespaces: {reason}"
    );
    eprintln!("skipping multi-host test {test}: {reason} (set {REQUIRE_VAR}=1 to make this a failure)");
    false
}

/// Which links a rule change applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links<'a> {
    /// The link of the host of this name.
    Host(&'a str),
    /// Every host's link.
    All,
}

/// One host: a namespace with one interface, `eth0`, on the switch.
#[derive(Debug)]
pub struct Host {
    /// Its name in the test (`bbs-1`, `cell-2`, ...).
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    ns: Netns,
}

impl Host {
    /// `ip:port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// Its namespace's name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        self.ns.name()
    }
}

/// A process the harness started in a host; killed when dropped.
#[derive(Debug)]
pub struct Process {
    /// What it is (its log is `<name>.log` in the network's scratch directory).
    pub name: String,
    child: Child,
}

impl Process {
    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The hosts of one test, their switch, and the relays the test runs; all torn down when dropped.
pub struct Network {
    /// `dgo-<pid>-<n>`: the prefix of every namespace of this network.
    pub id: String,
    relays: Mutex<Vec<Relay>>,
    /// The loopback address of each (host, target) relay made by [`Network::reach`].
    reached: Mutex<HashMap<(String, SocketAddr), SocketAddr>>,
    switch: Switch,
    hosts: Vec<Host>,
    scratch: PathBuf,
}

/// Networks made by this process (for unique names and subnets).
static NETWORKS: AtomicU32 = AtomicU32::new(0);
/// TAP devices made by this process (for unique device names).
static TAPS: AtomicU32 = AtomicU32::new(0);

impl Network {
    /// Makes one host per name, on a subnet of its own, connected by a new switch whose random
    /// loss is drawn from `seed`. Returns `None` (after saying why) when this machine cannot make
    /// hosts and [`REQUIRE_VAR`] is not set. Must be called inside a Tokio runtime, which then
    /// runs the switch.
    ///
    /// # Panics
    /// When the hosts cannot be made although the machine should allow it.
    pub fn start(test: &str, names: &[&str], seed: u64) -> Option<Network> {
        if !available(test) {
            return None;
        }
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(netns::remove_leftovers);
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}-{pid}-{n}", netns::PREFIX);
        // 10.A.B.0/24, A and B from the pid and the network's number: every test has its own
        // switch, so subnets need not differ, but distinct ones keep logs unambiguous.
        let subnet = [10, (30 + pid % 200) as u8, (1 + n % 250) as u8];
        let scratch = std::env::temp_dir().join(format!("diego-{id}"));
        std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
        let mut hosts = Vec::new();
        let mut taps = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 10 + i as u8);
            let (host, tap) = make_host(&id, name, ip).unwrap_or_else(|e| panic!("cannot make host {name}: {e}"));
            hosts.push(host);
            taps.push(tap);
        }
        let switch = Switch::start(taps, seed);
        eprintln!(
            "multihost: network {id}: {} (scratch {})",
            hosts.iter().map(|h| format!("{}={}", h.name, h.ip)).collect::<Vec<_>>().join(" "),
            scratch.display()
        );
        Some(Network {
            id,
            relays: Mutex::new(Vec::new()),
            reached: Mutex::new(HashMap::new()),
            switch,
            hosts,
            scratch,
        })
    }

    /// The host named `name`.
    ///
    /// # Panics
    /// When there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host named {name}"))
    }

    fn port(&self, name: &str) -> usize {
        self.hosts.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no host named {name}"))
    }

    fn ports(&self, links: Links<'_>) -> Vec<usize> {
        match links {
            Links::Host(name) => vec![self.port(name)],
            Links::All => (0..self.hosts.len()).collect(),
        }
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The directory of this network's logs, configurations and certificates.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Cuts `host` off from every other host, both ways.
    pub fn cut(&self, host: &str) {
        self.switch.update_link(self.port(host), |l| {
            l.cut_out = true;
            l.cut_in = true;
        });
    }

    /// Drops what `from` sends to `to`; `to` still reaches `from`.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.switch.cut_pair(self.port(from), self.port(to), true);
    }

    /// Cuts `a` and `b` off from each other, both ways; each still reaches every other host.
    pub fn cut_between(&self, a: &str, b: &str) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Delays every frame sent over `links` by `delay` and drops each with probability `loss`
    /// (as `tc netem delay D loss P` on the sending host's interface would).
    pub fn degrade(&self, links: Links<'_>, delay: Duration, loss: f64) {
        assert!((0.0..=1.0).contains(&loss), "loss {loss} is not a probability");
        for port in self.ports(links) {
            self.switch.update_link(port, |l| {
                l.delay = delay;
                l.loss = loss;
            });
        }
    }

    /// Restores `host`'s link and every pair cut involving it.
    pub fn heal(&self, host: &str) {
        self.switch.heal_port(self.port(host));
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.switch.heal_all();
    }

    /// The rule `host`'s link is under.
    pub fn link(&self, host: &str) -> LinkRule {
        self.switch.link(self.port(host))
    }

    /// Frames the switch delivered, cut and lost so far.
    pub fn counters(&self) -> switch::Counters {
        self.switch.counters()
    }

    /// Listens on `host`'s address at `port` and relays each connection to `server` as this
    /// process reaches it (e.g. the database server on the machine's loopback): the host serves
    /// it to the others, and cutting the host's link cuts them off from it. Returns the host's
    /// address.
    pub async fn serve(&self, host: &str, port: u16, server: SocketAddr) -> io::Result<SocketAddr> {
        let host = self.host(host);
        let relay = Relay::start(Some(host.netns()), host.addr(port), None, server).await?;
        let address = relay.address();
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).push(relay);
        Ok(address)
    }

    /// A loopback address of this process that leads to `target` as seen from `host`: every
    /// connection to it is made from inside `host`, so it goes over `host`'s link (or stays
    /// inside `host` when `target` is `host`'s own address). One relay per host and target,
    /// made on the first call.
    pub async fn reach(&self, host: &str, target: SocketAddr) -> io::Result<SocketAddr> {
        let key = (host.to_owned(), target);
        if let Some(address) = self.reached.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*address);
        }
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let relay = Relay::start(None, listen, Some(self.host(host).netns()), target).await?;
        let address = relay.address();
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).push(relay);
        self.reached.lock().unwrap_or_else(|p| p.into_inner()).insert(key, address);
        Ok(address)
    }

    /// Starts `program args...` in `host` (`ip netns exec`), its stdout and stderr going to
    /// `<name>.log` in the scratch directory, with `env` set and the `DIEGO_TLS_*` variables of
    /// the test's environment removed (components are configured by their files and flags).
    pub fn spawn(&self, host: &str, name: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let log_path = self.scratch.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.host(host).netns()]).arg(program).args(args);
        for var in ["DIEGO_TLS_CA", "DIEGO_TLS_CERT", "DIEGO_TLS_KEY"] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied()).stdin(Stdio::null()).stdout(log).stderr(err);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {} in {host}: {e}", program.display()));
        Process { name: name.to_owned(), child }
    }

    /// Prints the last lines of every log in the scratch directory.
    pub fn print_logs(&self, lines: usize) {
        let Ok(entries) = std::fs::read_dir(&self.scratch) else { return };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            eprintln!("----- {} (last {} of {} lines)", log.display(), lines.min(all.len()), all.len());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!("multihost: network {} failed; switch {:?}", self.id, self.switch.counters());
            self.print_logs(40);
        }
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // The namespaces, with any process left in them; the switch stops when it is dropped,
        // right after this.
        self.hosts.clear();
        if failed || std::env::var_os(KEEP_VAR).is_some() {
            eprintln!("multihost: logs, configurations and certificates kept in {}", self.scratch.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

/// Makes host `name` of network `id`: its namespace, and a TAP device made here, moved into the
/// namespace as `eth0` with address `ip`/24 and brought up. Returns the host and the device's
/// switch end.
fn make_host(id: &str, name: &str, ip: Ipv4Addr) -> io::Result<(Host, tokio_tun::Tun)> {
    let ns = Netns::create(&format!("{id}-{name}"))?;
    // Device names have at most 15 bytes: `dg<pid in hex>t<n>`, unique on the machine.
    let tap_name = format!("dg{:x}t{}", std::process::id(), TAPS.fetch_add(1, Ordering::Relaxed));
    let tap = tokio_tun::Tun::builder()
        .name(&tap_name)
        .tap()
        .build()
        .map_err(|e| io::Error::other(format!("cannot create TAP device {tap_name}: {e}")))?
        .pop()
        .ok_or_else(|| io::Error::other("no TAP device"))?;
    let ns_name = ns.name().to_owned();
    netns::ip(&["link", "set", &tap_name, "netns", &ns_name])?;
    netns::ip(&["-n", &ns_name, "link", "set", &tap_name, "name", "eth0"])?;
    netns::ip(&["-n", &ns_name, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    netns::ip(&["-n", &ns_name, "link", "set", "eth0", "up"])?;
    Ok((Host { name: name.to_owned(), ip, ns }, tap))
}
