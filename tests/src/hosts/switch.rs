//! The userspace Ethernet switch between the hosts: one TAP device per host, whose other end
//! (the interface the host sees) lives in the host's namespace. The switch reads every frame a
//! host sends from its TAP, learns the sender's MAC address, and writes the frame to the TAP of
//! the host owning the destination MAC (every other TAP for broadcast, multicast and unknown
//! destinations), applying the link rules on the way.
//!
//! Why userspace: the kernel here has no `sch_netem`, so `tc qdisc ... netem` cannot add delay
//! or loss, and there is no iptables/nftables to drop traffic. A switch that every frame passes
//! through can do all of it: cut a link both ways or one way, cut one pair of hosts, hold frames
//! for a delay (in order) and drop a share of them at random (seeded, so a run can be repeated).
//!
//! Rules (see [`LinkRule`]): a frame from host `a` to host `b` is dropped if `a`'s link is cut
//! outbound, `b`'s link is cut inbound, or the pair `(a, b)` is cut; otherwise it is lost with
//! `a`'s loss probability and delivered after `a`'s delay, as `tc netem` on `a`'s interface
//! would. Cuts are applied when a frame enters the switch and again when it leaves, so a cut
//! also stops frames still held by a delay.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tun::Tun;

/// What happens to the frames of one host's link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkRule {
    /// Drop every frame the host sends.
    pub cut_out: bool,
    /// Drop every frame sent to the host.
    pub cut_in: bool,
    /// Hold every frame the host sends this long before delivering it.
    pub delay: Duration,
    /// Drop each frame the host sends with this probability (0 to 1).
    pub loss: f64,
}

/// Frames the switch has forwarded and dropped (by rule or by loss), for the test's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames written to a TAP (a flooded frame counts once per port).
    pub delivered: u64,
    /// Frames dropped by a cut.
    pub cut: u64,
    /// Frames dropped as random loss.
    pub lost: u64,
}

struct State {
    /// Which port each MAC address was last seen on.
    macs: HashMap<[u8; 6], usize>,
    /// One rule per port.
    links: Vec<LinkRule>,
    /// Cut (from, to) port pairs.
    pairs: HashSet<(usize, usize)>,
    /// When the last frame of each port is released: a release is never earlier, so a port's
    /// frames stay in order when its delay shrinks.
    last_release: Vec<Instant>,
    /// The loss RNG's state (splitmix64).
    rng: u64,
    counters: Counters,
}

impl State {
    /// A uniform number in [0, 1).
    fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a frame from port `from` may reach port `to` under the cuts.
    fn passes(&self, from: usize, to: usize) -> bool {
        from != to && !self.links[from].cut_out && !self.links[to].cut_in && !self.pairs.contains(&(from, to))
    }
}

/// The switch; its tasks stop and its TAP devices close when it is dropped.
pub struct Switch {
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The largest frame read from a TAP (no offloads are enabled, so frames are at most the MTU
/// plus the Ethernet header; this leaves room for jumbo frames).
const MAX_FRAME: usize = 65_536;

impl Switch {
    /// Starts switching between `ports` (port `i` is `ports[i]`), with loss drawn from `seed`.
    /// Must be called inside a Tokio runtime, which runs the switch.
    pub fn start(ports: Vec<Tun>, seed: u64) -> Switch {
        let n = ports.len();
        let state = Arc::new(Mutex::new(State {
            macs: HashMap::new(),
            links: vec![LinkRule::default(); n],
            pairs: HashSet::new(),
            last_release: vec![Instant::now(); n],
            rng: seed,
            counters: Counters::default(),
        }));
        let ports: Arc<Vec<Tun>> = Arc::new(ports);
        let mut tasks = Vec::new();
        for port in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(read_port(port, ports.clone(), state.clone(), tx)));
            tasks.push(tokio::spawn(deliver(port, ports.clone(), state.clone(), rx)));
        }
        Switch { state, tasks }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes the rule of `port`'s link.
    pub fn update_link(&self, port: usize, f: impl FnOnce(&mut LinkRule)) {
        self.with_state(|s| f(&mut s.links[port]));
    }

    /// The rule of `port`'s link.
    pub fn link(&self, port: usize) -> LinkRule {
        self.with_state(|s| s.links[port])
    }

    /// Cuts (or, with `cut` false, restores) frames from port `from` to port `to`.
    pub fn cut_pair(&self, from: usize, to: usize, cut: bool) {
        self.with_state(|s| {
            if cut {
                s.pairs.insert((from, to));
            } else {
                s.pairs.remove(&(from, to));
            }
        });
    }

    /// Restores every link and pair of `port` (its rule back to the default).
    pub fn heal_port(&self, port: usize) {
        self.with_state(|s| {
            s.links[port] = LinkRule::default();
            s.pairs.retain(|&(a, b)| a != port && b != port);
        });
    }

    /// Restores every link and pair.
    pub fn heal_all(&self) {
        self.with_state(|s| {
            s.links.iter_mut().for_each(|l| *l = LinkRule::default());
            s.pairs.clear();
        });
    }

    /// Frames delivered and dropped so far.
    pub fn counters(&self) -> Counters {
        self.with_state(|s| s.counters)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads the frames host `port` sends: learns its MAC, applies its outbound cut and loss, and
/// queues each frame for release after its delay.
async fn read_port(
    port: usize,
    ports: Arc<Vec<Tun>>,
    state: Arc<Mutex<State>>,
    queue: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let n = match ports[port].recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The device is gone (its namespace was deleted): nothing more will come.
            Err(_) => return,
        };
        if n < 14 {
            continue;
        }
        let now = Instant::now();
        let release = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let mut source = [0u8; 6];
            source.copy_from_slice(&buf[6..12]);
            if source[0] & 1 == 0 {
                s.macs.insert(source, port);
            }
            let rule = s.links[port];
            if rule.cut_out {
                s.counters.cut += 1;
                continue;
            }
            if rule.loss > 0.0 && s.random() < rule.loss {
                s.counters.lost += 1;
                continue;
            }
            let release = (now + rule.delay).max(s.last_release[port]);
            s.last_release[port] = release;
            release
        };
        if queue.send((release, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Delivers host `port`'s queued frames, in order, each once its release time has come: to the
/// port of the destination MAC, or to every other port when the destination is a group address
/// or unknown, wherever the cuts let it through.
async fn deliver(
    port: usize,
    ports: Arc<Vec<Tun>>,
    state: Arc<Mutex<State>>,
    mut queue: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
) {
    while let Some((release, frame)) = queue.recv().await {
        tokio::time::sleep_until(release).await;
        let targets: Vec<usize> = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let mut destination = [0u8; 6];
            destination.copy_from_slice(&frame[0..6]);
            let candidates: Vec<usize> = match s.macs.get(&destination) {
                Some(&to) if destination[0] & 1 == 0 => vec![to],
                _ => (0..ports.len()).filter(|&to| to != port).collect(),
            };
            let (pass, blocked): (Vec<usize>, Vec<usize>) = candidates.into_iter().partition(|&to| s.passes(port, to));
            s.counters.cut += blocked.iter().filter(|&&to| to != port).count() as u64;
            s.counters.delivered += pass.len() as u64;
            pass
        };
        for to in targets {
            // A full device queue drops the frame, as a real link would.
            let _ = ports[to].try_send(&frame);
        }
    }
}
