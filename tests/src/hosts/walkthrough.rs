//! docs/deploy.md followed as written: the fenced ```sh blocks of its numbered sections, in order,
//! each command run on the host its section names (`(on `control`)`, `(every host)`), in that
//! host's network namespace, from the release tarball laid out as `scripts/release.sh` lays it
//! out. A test cannot do everything an operator does on three fresh machines (install packages,
//! run systemd, ssh between them, write /etc), so every command is either run as written or
//! carried out by one rule of [`RULES`], the table of what the walkthrough does instead and why;
//! a command no rule covers fails the test, so the guide cannot grow commands nobody ran.
//!
//! **Files.** Each host gets a mount namespace of its own (`unshare --mount`, held open by a
//! `sleep` process of the host) in which /etc, /usr/local, /var/lib and /root are overlayfs
//! layers over the machine's, their upper layers in the host's scratch directory. The guide's
//! commands then run with the guide's own paths (`/etc/diego`, `/usr/local/bin`, `/root/diego-ca`,
//! `useradd` writing /etc/passwd) and the units' paths need no rewriting, while the machine's own
//! directories are never written: when the namespaces go, so do the layers. A rewrite of the
//! paths in the commands and in every file they install was the alternative; it would have
//! tested a guide other than the one operators read, and `useradd` would have changed the
//! machine's users.
//!
//! **Sessions.** Each host has one `sh` for the whole guide (the operator's terminal on that
//! machine, started as a login would be: /root, a clean environment), so `cd`, shell variables
//! and `export`s carry from one command and one block to the next as they do for the operator.
//! Its output goes to files, one command at a time.
//!
//! **Code.** The table and the run are here; `guide` reads the document, `classify` finds a
//! command's rule, `commands` carries it out on a host, `host` makes a host's layers and session,
//! `units` emulates `systemctl enable --now`, `release` lays out the tarball and `database` holds
//! the guide's PostgreSQL role and database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::Network;
use super::relay::Relay;

mod classify;
mod commands;
mod database;
mod guide;
mod host;
mod release;
mod units;

pub use classify::{classify, expected_answer, replace_word};
pub use commands::running_instances;
pub use database::{GuideDatabase, PgServer};
pub use guide::{Block, Guide, GuideCommand, GuideHost, Where};
pub use host::Output;
pub use release::Release;

use host::{HostRoot, Shell};
use units::Unit;

/// The guide, relative to the workspace.
pub const GUIDE: &str = "docs/deploy.md";

/// The directories each host layers over the machine's: every path the guide writes is under one.
pub const LAYERED: [&str; 4] = ["/etc", "/usr/local", "/var/lib", "/root"];

/// How long a readiness check of the guide may take to pass.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// How long any one command may take (unpacking a debug build's binaries on a loaded machine).
const COMMAND_LIMIT: Duration = Duration::from_secs(180);

/// systemd's `PATH` for services, and a login shell's here.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the walkthrough does with a kind of command, or around the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The paths every command names.
    Files,
    /// The example cluster's addresses.
    Addresses,
    /// The release's version in the tarball's name.
    Version,
    /// The tarball each host starts from.
    Tarball,
    /// `apt-get install -y`.
    Packages,
    /// `useradd`.
    AddUser,
    /// `runuser -u postgres -- psql|createdb`.
    Postgres,
    /// `systemctl daemon-reload`.
    DaemonReload,
    /// `systemctl enable --now`.
    EnableNow,
    /// `journalctl`.
    Journal,
    /// `scp ... root@ADDRESS:DIR`.
    Scp,
    /// `ssh root@ADDRESS 'CMD'`.
    Ssh,
    /// `curl -s 127.0.0.1:PORT/PATH  # "ANSWER"`.
    Readiness,
    /// `diego ... cells`.
    Cells,
    /// `diego lrp GUID`.
    LrpRunning,
    /// Everything else the guide may run.
    AsWritten,
}

/// One row of the translation table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Which.
    pub kind: Kind,
    /// The command (or thing) as the guide writes it.
    pub written: &'static str,
    /// What the walkthrough does instead, and why.
    pub done: &'static str,
    /// Whether a command of this kind runs as written (else it is translated).
    pub as_written: bool,
}

/// The translation table: every command of the guide is carried out by exactly one of the rows
/// from `Packages` on; the first four apply to every command. A command none covers fails.
pub const RULES: &[Rule] = &[
    Rule {
        kind: Kind::Files,
        written: "paths under /etc, /usr/local, /var/lib, /root",
        done: "used as written, in the host's mount namespace where those directories are overlayfs layers over \
               the machine's (upper layers in the scratch directory); any other absolute path but /dev/null, \
               /dev/stdin, /dev/urandom, /usr/sbin/nologin and /health fails the test",
        as_written: true,
    },
    Rule {
        kind: Kind::Addresses,
        written: "10.0.0.11, 10.0.0.12, 10.0.0.13 (the cluster table's)",
        done: "the test hosts' addresses, as the guide says: in every command, and in the unpacked config/*.toml \
               once step 1 has checked them (sed -i on each host); no 10.0.0. address may remain there",
        as_written: false,
    },
    Rule {
        kind: Kind::Version,
        written: "0.1.0 in the tarball's name",
        done: "the workspace's version",
        as_written: false,
    },
    Rule {
        kind: Kind::Tarball,
        written: "the tarball, copied to each host",
        done: "built like scripts/release.sh (its bins list and its SHA256SUMS command) from the test build's \
               target/<profile> binaries, stripped, gzip -1; hard-linked into each host's /root, where its shell \
               starts",
        as_written: false,
    },
    Rule {
        kind: Kind::Packages,
        written: "apt-get install -y PACKAGE...",
        done: "nothing installed: each package is checked with dpkg-query on this machine (a missing one is a \
               note); for postgresql the test's server (DIEGO_TEST_POSTGRES_URL) stands in, relayed to the host's \
               127.0.0.1:5432",
        as_written: false,
    },
    Rule {
        kind: Kind::AddUser,
        written: "useradd ... NAME",
        done: "run as written (into the host's /etc layer); skipped with a note if NAME exists on this machine",
        as_written: true,
    },
    Rule {
        kind: Kind::Postgres,
        written: "runuser -u postgres -- psql|createdb ... diego ...",
        done: "the role and database `diego` renamed diego_wt_<pid>_<n> (here and in the unpacked bbs.toml's \
               database_url) and dropped when the test ends; PGHOST=127.0.0.1 PGPORT=5432 and the URL's PGUSER \
               (PGPASSWORD) put in front, so they reach the test server through the relay, not a local socket",
        as_written: false,
    },
    Rule {
        kind: Kind::DaemonReload,
        written: "systemctl daemon-reload",
        done: "nothing: units are read when enabled",
        as_written: false,
    },
    Rule {
        kind: Kind::EnableNow,
        written: "systemctl enable --now UNIT",
        done: "the unit file the guide installed in the host's /etc/systemd/system: its ExecStart started in the \
               host's namespaces as its User/Group (setpriv), in a clean environment plus Environment=, with \
               UMask=, LimitNOFILE= (prlimit) and StateDirectory=/StateDirectoryMode= made as systemd makes them; \
               sandboxing and restarts are not emulated; output in <scratch>/<host>-<unit>.log. At the end each is \
               stopped as systemd stops it (SIGTERM, the last started first) and must exit cleanly within its \
               TimeoutStopSec, the rep's apps with it",
        as_written: false,
    },
    Rule {
        kind: Kind::Journal,
        written: "journalctl ...",
        done: "skipped: a unit's output is its log file in the scratch directory",
        as_written: false,
    },
    Rule {
        kind: Kind::Scp,
        written: "scp FILE... root@ADDRESS:DIR",
        done: "cp FILE... /proc/<pid>/root/DIR: into the other host's mount namespace through a process of it",
        as_written: false,
    },
    Rule {
        kind: Kind::Ssh,
        written: "ssh root@ADDRESS 'CMD'",
        done: "nsenter into that host's namespaces, then sh -c 'CMD' in /root with a login's clean environment",
        as_written: false,
    },
    Rule {
        kind: Kind::Readiness,
        written: "curl -s 127.0.0.1:PORT/PATH   # \"ANSWER\"",
        done: "run as written, again for up to 60 s until it answers ANSWER (the line's comment must name it); a \
               unit that exits meanwhile fails the test",
        as_written: true,
    },
    Rule {
        kind: Kind::Cells,
        written: "diego ... cells",
        done: "run as written, again for up to 60 s until it lists every cell of the cluster table, in zone z1",
        as_written: true,
    },
    Rule {
        kind: Kind::LrpRunning,
        written: "diego lrp GUID",
        done: "run as written, again for up to 60 s until every desired instance is RUNNING; then, as the text after \
               it says, curl http://CELL:HOSTPORT/env of each answers its index and CF_INSTANCE_* variables, and \
               the app's processes run as nobody",
        as_written: true,
    },
    Rule {
        kind: Kind::AsWritten,
        written: "tar, cd, sha256sum, install, printf, sed, export, other diego commands, NAME=VALUE",
        done: "run as written in the host's shell (one sh per host for the whole guide: cd, variables and exports \
               carry over as in the operator's session)",
        as_written: true,
    },
];

/// The rule of `kind`.
pub fn rule(kind: Kind) -> &'static Rule {
    RULES.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("no rule for {kind:?}"))
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `text` in single quotes for sh.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What a walkthrough did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Guide commands run as written (after the address and version substitutions).
    pub run: usize,
    /// Guide commands carried out by a translation.
    pub translated: usize,
    /// Checks passed: readiness answers, listings, the app's answers, packages present.
    pub checks: usize,
    /// Commands per rule; for the first four rows of [`RULES`], the commands (the hosts, for the
    /// tarball) each applied to.
    pub per_rule: BTreeMap<Kind, usize>,
    /// What was skipped or differs from a fresh machine.
    pub notes: Vec<String>,
    /// Seconds from the start of the walkthrough (the release's build included).
    pub seconds: f64,
}

/// The guide, followed on the hosts of a network. Dropping it stops every unit and session, then
/// drops the guide's database.
pub struct Walkthrough<'a> {
    units: Vec<Unit>,
    shells: BTreeMap<String, Shell>,
    roots: BTreeMap<String, HostRoot>,
    relays: Vec<Relay>,
    database: GuideDatabase,
    net: &'a Network,
    guide: &'a Guide,
    release: Release,
    report: Report,
    started: Instant,
}

impl<'a> Walkthrough<'a> {
    /// Builds the release, gives every host of `net` (named as `guide`'s cluster table) its
    /// layers with the tarball in /root, and opens a session on each.
    pub async fn start(net: &'a Network, guide: &'a Guide, server: PgServer) -> Walkthrough<'a> {
        let started = Instant::now();
        let database = GuideDatabase::new(server);
        let dir = net.scratch().join("release");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let release = tokio::task::spawn_blocking(move || Release::prepare(&dir)).await.expect("the release's build");
        let mut report = Report::default();
        report.notes.extend(release.notes.iter().cloned());
        let mut roots = BTreeMap::new();
        let mut shells = BTreeMap::new();
        for host in &guide.hosts {
            let root = HostRoot::start(net, &host.name, &[&release.tarball]).await;
            *report.per_rule.entry(Kind::Tarball).or_default() += 1;
            let shell = Shell::start(&root).await.unwrap_or_else(|e| panic!("{}: cannot open a shell: {e}", host.name));
            shells.insert(host.name.clone(), shell);
            roots.insert(host.name.clone(), root);
        }
        Walkthrough {
            units: Vec::new(),
            shells,
            roots,
            relays: Vec::new(),
            database,
            net,
            guide,
            release,
            report,
            started,
        }
    }

    /// Runs every block of the guide, in order, on its hosts; returns what it did.
    ///
    /// # Panics
    /// At the first command that fails, naming its line of the guide.
    pub async fn run(mut self) -> Report {
        let guide = self.guide;
        let mut edited: Vec<String> = Vec::new();
        for block in &guide.blocks {
            for host in guide.hosts_of(block) {
                for command in &block.commands {
                    self.command(&host, block, command).await;
                }
                // The operator's edits of the unpacked configurations, once step 1 has checked them.
                if block.hosts == Where::Every && !edited.contains(&host) {
                    self.edit_configs(&host).await;
                    edited.push(host);
                }
            }
        }
        self.stop_units().await;
        self.report.seconds = self.started.elapsed().as_secs_f64();
        std::mem::take(&mut self.report)
    }
}
