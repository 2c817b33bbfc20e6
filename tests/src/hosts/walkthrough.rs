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

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::Instant;

use super::relay::Relay;
use super::{Network, Process};

/// The guide, relative to the workspace.
pub const GUIDE: &str = "docs/deploy.md";

/// The directories each host layers over the machine's: every path the guide writes is under one.
pub const LAYERED: [&str; 4] = ["/etc", "/usr/local", "/var/lib", "/root"];

/// Absolute paths outside [`LAYERED`] a command may name: files it only reads, and `/health`, an
/// HTTP path (`--health-check-path`).
const NAMED_ONLY: [&str; 5] = ["/dev/null", "/dev/stdin", "/dev/urandom", "/usr/sbin/nologin", "/health"];

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

/// The first words of the commands run as written.
const AS_WRITTEN: [&str; 8] = ["tar", "cd", "sha256sum", "install", "printf", "sed", "export", "diego"];

/// The rule of `kind`.
pub fn rule(kind: Kind) -> &'static Rule {
    RULES.iter().find(|r| r.kind == kind).unwrap_or_else(|| panic!("no rule for {kind:?}"))
}

/// Which rule carries out `command` (after the address and version substitutions), or `None`.
pub fn classify(command: &str) -> Option<Kind> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let first = *words.first()?;
    let kind = match words.as_slice() {
        ["apt-get", "install", "-y", _, ..] => Kind::Packages,
        ["useradd", .., _] => Kind::AddUser,
        ["runuser", "-u", "postgres", "--", "psql" | "createdb", ..] => Kind::Postgres,
        ["systemctl", "daemon-reload"] => Kind::DaemonReload,
        ["systemctl", "enable", "--now", _, ..] => Kind::EnableNow,
        ["journalctl", ..] => Kind::Journal,
        ["scp", .., target] if target.starts_with("root@") && target.contains(':') => Kind::Scp,
        ["ssh", target, _, ..] if target.starts_with("root@") => Kind::Ssh,
        ["curl", "-s", url, ..] if url.starts_with("127.0.0.1:") => Kind::Readiness,
        ["diego", ..] if subcommand(&words) == Some("cells") => Kind::Cells,
        ["diego", "lrp", _] => Kind::LrpRunning,
        _ if AS_WRITTEN.contains(&first) || is_assignment(first) => Kind::AsWritten,
        _ => return None,
    };
    Some(kind)
}

/// The first word of a `diego` command that is neither a flag nor a flag's value.
fn subcommand<'a>(words: &[&'a str]) -> Option<&'a str> {
    let mut rest = words.iter().skip(1);
    while let Some(word) = rest.next() {
        if word.starts_with("--") {
            if !word.contains('=') {
                rest.next();
            }
        } else {
            return Some(word);
        }
    }
    None
}

/// `NAME=...`: a shell variable assignment.
fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// A host of the guide's cluster table.
#[derive(Debug, Clone)]
pub struct GuideHost {
    /// `control`, `auction`, `cell-1`.
    pub name: String,
    /// Its address in the guide.
    pub address: Ipv4Addr,
    /// What it runs (the table's third column).
    pub runs: String,
}

/// Where a block runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// `(every host)`: on each host of the table, in its order.
    Every,
    /// `(on `NAME`)`.
    On(String),
}

/// One command of a block: its first line in the guide and its text, continuation lines joined.
#[derive(Debug, Clone)]
pub struct GuideCommand {
    /// 1-based line number in the guide.
    pub line: usize,
    /// The command.
    pub text: String,
}

/// One ```sh block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The heading of its section.
    pub section: String,
    /// Where it runs.
    pub hosts: Where,
    /// Its commands, in order.
    pub commands: Vec<GuideCommand>,
}

/// The guide's cluster and its blocks.
#[derive(Debug, Clone)]
pub struct Guide {
    /// The cluster table's hosts, in order.
    pub hosts: Vec<GuideHost>,
    /// Every ```sh block, in order.
    pub blocks: Vec<Block>,
}

impl Guide {
    /// docs/deploy.md of this workspace.
    ///
    /// # Panics
    /// When it cannot be read or parsed.
    pub fn load() -> Guide {
        let path = workspace().join(GUIDE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Guide::parse(&text).unwrap_or_else(|e| panic!("{GUIDE}: {e}"))
    }

    /// Reads the cluster table (the rows `| `name` | address | runs | ...` of the table headed
    /// `| host | address |`) and every ```sh block with the host its `## ` section names.
    pub fn parse(text: &str) -> Result<Guide, String> {
        let mut hosts = Vec::new();
        let mut blocks = Vec::new();
        let mut section = String::new();
        let mut in_hosts_table = false;
        let mut fence: Option<(String, usize, Vec<NumberedLine>)> = None;
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let trimmed = line.trim_start();
            if let Some((language, start, lines)) = &mut fence {
                if trimmed.starts_with("```") {
                    if language == "sh" {
                        let hosts_of = where_of(&section, &hosts).map_err(|e| format!("line {start}: {e}"))?;
                        blocks.push(Block {
                            section: section.clone(),
                            hosts: hosts_of,
                            commands: commands_of(lines).map_err(|e| format!("line {start}: {e}"))?,
                        });
                    }
                    fence = None;
                } else {
                    lines.push((number, line.to_owned()));
                }
                continue;
            }
            if let Some(language) = trimmed.strip_prefix("```") {
                let language = language.trim().to_owned();
                if matches!(language.as_str(), "" | "bash" | "shell" | "console" | "shell-session") {
                    return Err(format!(
                        "line {number}: a ```{language} block: commands go in ```sh blocks, which the walkthrough runs"
                    ));
                }
                fence = Some((language, number, Vec::new()));
                continue;
            }
            if let Some(heading) = line.strip_prefix("## ") {
                section = heading.trim().to_owned();
                continue;
            }
            // The table whose header is `| host | address | ...`.
            if !line.starts_with('|') {
                in_hosts_table = false;
            } else if line.starts_with("| host | address |") {
                in_hosts_table = true;
            }
            if in_hosts_table && let Some(row) = line.strip_prefix("| `") {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells[0].trim_end_matches('`').to_owned();
                let address = cells
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("line {number}: no address in the cluster table's row for {name}"))?;
                let runs = cells.get(2).map(|r| (*r).to_owned()).unwrap_or_default();
                hosts.push(GuideHost { name, address, runs });
            }
        }
        if fence.is_some() {
            return Err("a fenced block is not closed".into());
        }
        if hosts.is_empty() {
            return Err("no hosts: no table headed `| host | address |`".into());
        }
        Ok(Guide { hosts, blocks })
    }

    /// The hosts' names, in the table's order.
    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// The hosts a block runs on.
    pub fn hosts_of(&self, block: &Block) -> Vec<String> {
        match &block.hosts {
            Where::Every => self.hosts.iter().map(|h| h.name.clone()).collect(),
            Where::On(name) => vec![name.clone()],
        }
    }

    /// The cells: the hosts whose row says they run `cell-rep`.
    pub fn cells(&self) -> Vec<&str> {
        self.hosts.iter().filter(|h| h.runs.contains("cell-rep")).map(|h| h.name.as_str()).collect()
    }
}

/// The hosts a section's heading names: `(every host)` or `(on `NAME`)`.
fn where_of(section: &str, hosts: &[GuideHost]) -> Result<Where, String> {
    if section.contains("(every host)") {
        return Ok(Where::Every);
    }
    let name = section
        .split_once("(on `")
        .and_then(|(_, rest)| rest.split_once("`)"))
        .map(|(name, _)| name)
        .ok_or_else(|| format!("a ```sh block in section {section:?}, whose heading names no host"))?;
    if !hosts.iter().any(|h| h.name == name) {
        return Err(format!("section {section:?} names host {name}, which is not in the cluster table"));
    }
    Ok(Where::On(name.to_owned()))
}

/// A line of the guide and its 1-based number.
type NumberedLine = (usize, String);

/// A block's commands: continuation lines joined, blank lines and comment lines left out.
fn commands_of(lines: &[NumberedLine]) -> Result<Vec<GuideCommand>, String> {
    let mut commands = Vec::new();
    let mut open: Option<GuideCommand> = None;
    for (number, line) in lines {
        let (text, continued) = match line.trim_end().strip_suffix('\\') {
            Some(text) => (text.trim(), true),
            None => (line.trim(), false),
        };
        match &mut open {
            Some(command) => {
                command.text.push(' ');
                command.text.push_str(text);
            }
            None if text.is_empty() || text.starts_with('#') => continue,
            None => open = Some(GuideCommand { line: *number, text: text.to_owned() }),
        }
        if !continued && let Some(command) = open.take() {
            commands.push(command);
        }
    }
    match open {
        Some(command) => Err(format!("the command of line {} ends in a continuation", command.line)),
        None => Ok(commands),
    }
}

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>/`: the directory of this test executable's directory.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
    exe.parent().and_then(Path::parent).map(Path::to_owned).unwrap_or_default()
}

/// `text` in single quotes for sh.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` with every whole-word `word` (not part of a longer name of letters, digits, `_`, `-`)
/// replaced by `with`.
pub fn replace_word(text: &str, word: &str, with: &str) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_name) || after.is_some_and(is_name) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The quoted answer in a readiness line's comment: `curl ...   # "leader" once ...` → `leader`.
pub fn expected_answer(command: &str) -> Option<&str> {
    let comment = &command[command.find(" #")? + 2..];
    let start = comment.find('"')? + 1;
    let end = start + comment[start..].find('"')?;
    Some(&comment[start..end])
}

/// Every absolute path `command` names is under [`LAYERED`] or in [`NAMED_ONLY`]; how many are
/// under [`LAYERED`].
fn check_paths(command: &str) -> Result<usize, String> {
    let code = command.find(" #").map_or(command, |at| &command[..at]);
    let mut layered = 0;
    for word in code.split_whitespace() {
        let word = word.trim_start_matches(['>', '<', '\'', '"', '(', '$']);
        let word = word.trim_end_matches(['\'', '"', ')', ';']);
        if !word.starts_with('/') {
            continue;
        }
        let under = |dir: &str| word == dir || word.starts_with(&format!("{dir}/"));
        if LAYERED.iter().any(|d| under(d)) {
            layered += 1;
        } else if !NAMED_ONLY.contains(&word) {
            return Err(format!(
                "it names {word}, outside the directories each host layers over the machine's ({}): add the \
                 directory to LAYERED, or the path to NAMED_ONLY if it is only read",
                LAYERED.join(", ")
            ));
        }
    }
    Ok(layered)
}

/// A PostgreSQL server as a URL names it.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// The URL (the administrator's).
    pub url: String,
    /// Where it listens, as this process reaches it.
    pub address: SocketAddr,
    /// The URL's user.
    pub user: String,
    /// The URL's password, if any.
    pub password: Option<String>,
}

impl PgServer {
    /// Parses `postgres://user[:password]@host[:port][/db][?...]`.
    pub fn parse(url: &str) -> Result<PgServer, String> {
        let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{url} is not a URL"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (credentials, host_port) = authority.rsplit_once('@').unwrap_or(("postgres", authority));
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
            None => (credentials.to_owned(), None),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("bad port in {url}"))?),
            None => (host_port, 5432),
        };
        let address = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .ok_or_else(|| format!("cannot resolve {host}:{port} of {url}"))?;
        Ok(PgServer { url: url.to_owned(), address, user, password })
    }
}

/// The role and database the guide creates, under a name of this test's own; both dropped when
/// this is dropped, also after a failure.
#[derive(Debug)]
pub struct GuideDatabase {
    server: PgServer,
    /// The role's and the database's name.
    pub name: String,
}

/// Databases made by this process.
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The prefix of every role and database the walkthrough makes.
const DB_PREFIX: &str = "diego_wt_";

impl GuideDatabase {
    /// A fresh name, `diego_wt_<pid>_<n>`, after dropping those of walkthroughs whose process is
    /// gone.
    ///
    /// # Panics
    /// When the server cannot be asked (psql missing, server down).
    pub fn new(server: PgServer) -> GuideDatabase {
        let pid = std::process::id();
        let listed = psql(
            &server.url,
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{DB_PREFIX}%' \
                 UNION SELECT rolname FROM pg_roles WHERE rolname LIKE '{DB_PREFIX}%'"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot list the walkthrough's databases on {}: {e}", server.url));
        for name in listed.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let owner =
                name.strip_prefix(DB_PREFIX).and_then(|r| r.split('_').next()).and_then(|p| p.parse::<u32>().ok());
            if let Some(owner) = owner
                && owner != pid
                && !Path::new(&format!("/proc/{owner}")).exists()
            {
                eprintln!("multihost: dropping {name}, left by a walkthrough that is gone");
                drop_all(&server.url, name);
            }
        }
        let name = format!("{DB_PREFIX}{pid}_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        GuideDatabase { server, name }
    }
}

impl Drop for GuideDatabase {
    fn drop(&mut self) {
        drop_all(&self.server.url, &self.name);
    }
}

/// Drops database and role `name`.
fn drop_all(url: &str, name: &str) {
    for sql in [format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), format!("DROP ROLE IF EXISTS \"{name}\"")] {
        if let Err(e) = psql(url, &sql) {
            eprintln!("multihost: {sql}: {e}");
        }
    }
}

/// Runs `sql` with psql on `url`; its unaligned output.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// What a command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status.
    pub status: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!("status {}, stdout {:?}, stderr {:?}", self.status, self.stdout.trim(), self.stderr.trim())
    }
}

/// One host's operator session: a `sh` in the host's namespaces, fed one command at a time.
#[derive(Debug)]
struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where each command's output goes.
    io: PathBuf,
    log: PathBuf,
    count: u64,
}

impl Shell {
    async fn start(host: &HostRoot) -> io::Result<Shell> {
        let io = host.dir.join("io");
        std::fs::create_dir_all(&io)?;
        let log = host.scratch.join(format!("{}-shell.log", host.name));
        let mut child = tokio::process::Command::new("nsenter")
            .args(["--target", &host.pid.to_string(), "--mount", "--net", "--"])
            .args(["env", "-i", "-C", "/root", "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh"])
            .args(["LANG=C.UTF-8", &format!("PATH={PATH}"), "sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?);
        Ok(Shell { child, stdin, stdout, io, log, count: 0 })
    }

    /// Runs `command` in the session (cd, variables and exports stay), its stdin /dev/null.
    async fn run(&mut self, command: &str) -> Result<Output, String> {
        self.count += 1;
        let marker = format!("__walkthrough_{}_done", self.count);
        let (out, err) = (self.io.join("stdout"), self.io.join("stderr"));
        let script = format!(
            "{{\n{command}\n}} </dev/null >{} 2>{}\necho \"{marker} $?\"\n",
            sh_quote(&out.display().to_string()),
            sh_quote(&err.display().to_string())
        );
        let shell_log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        self.stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("the shell is gone ({e}): {}", shell_log()))?;
        self.stdin.flush().await.map_err(|e| format!("the shell is gone ({e})"))?;
        let deadline = Instant::now() + COMMAND_LIMIT;
        let status = loop {
            let mut line = String::new();
            let read = tokio::time::timeout_at(deadline, self.stdout.read_line(&mut line))
                .await
                .map_err(|_| format!("it did not finish within {COMMAND_LIMIT:?}"))?;
            match read {
                Ok(0) | Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!("the shell exited ({status:?}): {}", shell_log()));
                }
                Ok(_) => {}
            }
            if let Some(status) = line.trim().strip_prefix(&marker) {
                break status.trim().parse().unwrap_or(-1);
            }
        };
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        Ok(Output { status, stdout: read(&out), stderr: read(&err) })
    }
}

/// A host's own view of the files: a mount namespace with [`LAYERED`] as overlayfs layers, held
/// by a process of the host.
#[derive(Debug)]
struct HostRoot {
    name: String,
    ip: Ipv4Addr,
    netns: String,
    /// `<scratch>/hosts/<name>`: the layers and the session's output.
    dir: PathBuf,
    scratch: PathBuf,
    holder: Process,
    /// The holder's pid: `nsenter --target` it, or reach its files under /proc/<pid>/root.
    pid: u32,
}

impl HostRoot {
    /// Makes the layers (placing `files` in the host's /root first) and the namespace.
    async fn start(net: &Network, name: &str, files: &[&Path]) -> HostRoot {
        let dir = net.scratch().join("hosts").join(name);
        let mut script = String::from("set -e\n");
        for layered in LAYERED {
            let key = layered.trim_start_matches('/').replace('/', "-");
            let (upper, work) = (dir.join("upper").join(&key), dir.join("work").join(&key));
            for d in [&upper, &work] {
                std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            }
            if layered == "/root" {
                for file in files {
                    let to = upper.join(file.file_name().unwrap_or_default());
                    std::fs::hard_link(file, &to)
                        .or_else(|_| std::fs::copy(file, &to).map(drop))
                        .unwrap_or_else(|e| panic!("{} to {}: {e}", file.display(), to.display()));
                }
            }
            script.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={layered},upperdir={},workdir={} {layered}\n",
                upper.display(),
                work.display()
            ));
        }
        let ready = dir.join("ready");
        script.push_str(&format!("touch {}\nexec sleep infinity\n", sh_quote(&ready.display().to_string())));
        let mut holder = net.spawn(
            name,
            &format!("{name}-mounts"),
            Path::new("unshare"),
            &["--mount", "--propagation", "private", "sh", "-c", &script],
            &[],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(holder.alive(), "{name}: the mount namespace could not be made: see {name}-mounts.log");
            assert!(Instant::now() < deadline, "{name}: the mount namespace was not ready within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let host = net.host(name);
        let pid = holder.pid();
        HostRoot {
            name: name.to_owned(),
            ip: host.ip,
            netns: host.netns().to_owned(),
            dir,
            scratch: net.scratch().to_owned(),
            holder,
            pid,
        }
    }

    /// `path` of the host, as this process reaches it.
    fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }
}

/// The release directory and tarball, as scripts/release.sh makes them.
#[derive(Debug)]
pub struct Release {
    /// `diego-rs-<version>-x86_64-linux-musl`.
    pub name: String,
    /// `<name>.tar.gz`.
    pub tarball: PathBuf,
    /// What differs from a real release.
    pub notes: Vec<String>,
}

/// Runs `program args` and fails with its stderr.
fn run(program: &str, args: &[&str], dir: Option<&Path>) -> Result<(), String> {
    let mut command = std::process::Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Release {
    /// Lays the release out in `dir` and packs it: scripts/release.sh's `bins` from
    /// `target/<profile>/` (stripped when `strip` is there: debug builds are large), the units,
    /// configs, docs, README.md, VERSION, and SHA256SUMS made by release.sh's own command.
    ///
    /// # Panics
    /// When a binary is missing (other than benchmark-bbs, which the guide does not use) or a
    /// step fails.
    pub fn build(dir: &Path) -> Release {
        let version = env!("CARGO_PKG_VERSION");
        let name = format!("diego-rs-{version}-x86_64-linux-musl");
        let root = dir.join(&name);
        let script = std::fs::read_to_string(workspace().join("scripts/release.sh"))
            .unwrap_or_else(|e| panic!("scripts/release.sh: {e}"));
        let bins: Vec<String> = script
            .lines()
            .find_map(|l| l.strip_prefix("bins=(").and_then(|r| r.strip_suffix(')')))
            .unwrap_or_else(|| panic!("scripts/release.sh has no bins=(...) line"))
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let sums: Vec<&str> = script.lines().filter(|l| l.contains(">SHA256SUMS")).collect();
        assert_eq!(sums.len(), 1, "scripts/release.sh should make SHA256SUMS in one line: {sums:?}");
        let mut notes = Vec::new();
        for sub in ["bin", "systemd", "config", "docs"] {
            std::fs::create_dir_all(root.join(sub)).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        }
        let target = target_dir();
        let strip = run("strip", &["--version"], None).is_ok();
        for bin in &bins {
            let from = target.join(bin);
            let to = root.join("bin").join(bin);
            if !from.is_file() {
                assert!(
                    bin == "benchmark-bbs",
                    "multihost: {} is missing: the walkthrough installs the release's binaries; build them with \
                     `cargo build -p bbs -p auctioneer -p cell-rep -p cli`",
                    from.display()
                );
                notes.push(format!("bin/{bin} left out: not built (cargo build -p loadtest)"));
                continue;
            }
            let (from_s, to_s) = (from.display().to_string(), to.display().to_string());
            if strip {
                run("strip", &["-o", &to_s, &from_s], None).unwrap_or_else(|e| panic!("{e}"));
            } else {
                std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{from_s}: {e}"));
            }
            run("chmod", &["0755", &to_s], None).unwrap_or_else(|e| panic!("{e}"));
        }
        notes.push(format!(
            "bin/ holds the test build's binaries ({}{}), not static musl ones",
            target.file_name().unwrap_or_default().to_string_lossy(),
            if strip { ", stripped" } else { "" }
        ));
        let copy_all = |from: &str, ext: &str, to: &str| {
            let from_dir = workspace().join(from);
            let entries = std::fs::read_dir(&from_dir).unwrap_or_else(|e| panic!("{}: {e}", from_dir.display()));
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == ext) {
                    let dest = root.join(to).join(entry.file_name());
                    std::fs::copy(&path, &dest).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
            }
        };
        copy_all("deploy/systemd", "service", "systemd");
        copy_all("deploy/config", "toml", "config");
        copy_all("docs", "md", "docs");
        std::fs::copy(workspace().join("README.md"), root.join("README.md")).unwrap_or_else(|e| panic!("README: {e}"));
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(workspace())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        std::fs::write(
            root.join("VERSION"),
            format!("diego-rs {version} x86_64-linux-musl\ncommit {commit} (test build)\n"),
        )
        .unwrap_or_else(|e| panic!("VERSION: {e}"));
        run("chmod", &["-R", "u=rwX,go=rX", &root.display().to_string()], None).unwrap_or_else(|e| panic!("{e}"));
        let sums = format!("root={}\n{}", sh_quote(&root.display().to_string()), sums[0].trim());
        run("bash", &["-c", &sums], None).unwrap_or_else(|e| panic!("release.sh's SHA256SUMS command: {e}"));
        let tarball = dir.join(format!("{name}.tar.gz"));
        run(
            "tar",
            &[
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-I",
                "gzip -1",
                "-C",
                &dir.display().to_string(),
                "-cf",
                &tarball.display().to_string(),
                &name,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        Release { name, tarball, notes }
    }
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

/// A unit started by `systemctl enable --now`.
#[derive(Debug)]
struct Unit {
    host: String,
    name: String,
    process: Process,
    /// Its TimeoutStopSec.
    stop_within: Duration,
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
        let release = tokio::task::spawn_blocking(move || Release::build(&dir)).await.expect("the release's build");
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

    /// Stops the units as systemd stops them: SIGTERM to the main process, the last started
    /// first; each must exit cleanly (status 0, or by the signal) within its TimeoutStopSec, and
    /// the cells' apps must be gone with their rep.
    async fn stop_units(&mut self) {
        while let Some(mut unit) = self.units.pop() {
            let what = format!("stopping {}.service on {}", unit.name, unit.host);
            let pid = i32::try_from(unit.process.pid()).unwrap_or_else(|_| panic!("{what}: pid"));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
                .unwrap_or_else(|e| panic!("{what}: SIGTERM: {e}"));
            let deadline = Instant::now() + unit.stop_within;
            let status = loop {
                if let Some(status) = unit.process.child.try_wait().unwrap_or_else(|e| panic!("{what}: {e}")) {
                    break status;
                }
                assert!(Instant::now() < deadline, "{what}: still running after {:?}", unit.stop_within);
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let by_term = std::os::unix::process::ExitStatusExt::signal(&status) == Some(15);
            assert!(status.success() || by_term, "{what}: it exited with {status}");
            self.report.checks += 1;
        }
        let apps = self.app_uids();
        assert!(apps.is_empty(), "the apps outlived their rep: uids {apps:?}");
        self.report.checks += 1;
    }

    /// The uids of the `diego-demo-app` processes in the cells' namespaces.
    fn app_uids(&self) -> Vec<String> {
        let mut uids = Vec::new();
        for cell in self.guide.cells() {
            let netns = self.net.host(cell).netns().to_owned();
            let pids =
                std::process::Command::new("ip").args(["netns", "pids", &netns]).output().expect("ip netns pids");
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                // A zombie has no memory: an app that has exited but is not yet reaped is gone.
                if comm.trim() == "diego-demo-app" && status.lines().any(|l| l.starts_with("VmRSS:")) {
                    let uid =
                        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().next());
                    uids.push(uid.unwrap_or_default().to_owned());
                }
            }
        }
        uids
    }

    /// The guide's address → the test host's, for every host.
    fn addresses(&self) -> Vec<(String, String)> {
        self.guide.hosts.iter().map(|h| (h.address.to_string(), self.net.host(&h.name).ip.to_string())).collect()
    }

    /// `text` with the guide's addresses replaced by the test's.
    fn with_addresses(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (written, actual) in self.addresses() {
            text = text.replace(&written, &actual);
        }
        text
    }

    /// `text` with the guide's version (in the tarball's name) replaced by the release's.
    fn with_version(&self, text: &str) -> String {
        text.replace("diego-rs-0.1.0-", &format!("{}-", self.release.name.trim_end_matches("-x86_64-linux-musl")))
    }

    /// The host whose address is `ip`.
    fn host_at(&self, ip: &str) -> &HostRoot {
        self.roots.values().find(|r| r.ip.to_string() == ip).unwrap_or_else(|| panic!("no host has the address {ip}"))
    }

    /// Runs `text` in `host`'s session.
    /// Each command and its output go to `<scratch>/<host>-session.log` as well.
    async fn shell(&mut self, host: &str, text: &str) -> Result<Output, String> {
        let shell = self.shells.get_mut(host).unwrap_or_else(|| panic!("no session on {host}"));
        let result = shell.run(text).await;
        let entry = match &result {
            Ok(out) => format!("$ {text}\n{}{}[status {}]\n", out.stdout, out.stderr, out.status),
            Err(e) => format!("$ {text}\n[{e}]\n"),
        };
        let log = self.net.scratch().join(format!("{host}-session.log"));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, entry.as_bytes()));
        if let Err(e) = appended {
            eprintln!("multihost: {}: {e}", log.display());
        }
        result
    }

    /// Runs `text` in `host`'s session and requires it to succeed.
    async fn must(&mut self, host: &str, text: &str, context: &str) -> Output {
        match self.shell(host, text).await {
            Ok(out) if out.status == 0 => out,
            Ok(out) => panic!("{context}: `{text}` on {host} failed: {}", out.describe()),
            Err(e) => panic!("{context}: `{text}` on {host}: {e}"),
        }
    }

    /// Carries out one command of the guide on `host`.
    async fn command(&mut self, host: &str, block: &Block, command: &GuideCommand) {
        let context = format!("{GUIDE}:{} ({}, on {host})", command.line, block.section);
        let layered = check_paths(&command.text).unwrap_or_else(|e| panic!("{context}: `{}`: {e}", command.text));
        let addressed = self.with_addresses(&command.text);
        let text = self.with_version(&addressed);
        for (kind, applied) in [
            (Kind::Files, layered > 0),
            (Kind::Addresses, addressed != command.text),
            (Kind::Version, text != addressed),
        ] {
            if applied {
                *self.report.per_rule.entry(kind).or_default() += 1;
            }
        }
        let kind = classify(&text).unwrap_or_else(|| {
            panic!(
                "{context}: no rule of the walkthrough's table (tests/src/hosts/walkthrough.rs, RULES) covers `{}`: \
                 run it as written or add a translation",
                command.text
            )
        });
        eprintln!("multihost: deploy guide: {host}$ {text}");
        *self.report.per_rule.entry(kind).or_default() += 1;
        let mut as_written = rule(kind).as_written;
        match kind {
            Kind::AsWritten => {
                self.must(host, &text, &context).await;
            }
            Kind::Packages => self.packages(host, &text, &context).await,
            Kind::AddUser => {
                let user = text.split_whitespace().last().unwrap_or_default().to_owned();
                if self.shell(host, &format!("id {user}")).await.is_ok_and(|o| o.status == 0) {
                    self.report.notes.push(format!("{host}: `useradd ... {user}` skipped: the user exists here"));
                    as_written = false;
                } else {
                    self.must(host, &text, &context).await;
                }
            }
            Kind::Postgres => {
                let server = &self.database.server;
                let mut env = format!("PGHOST=127.0.0.1 PGPORT=5432 PGUSER={}", sh_quote(&server.user));
                if let Some(password) = &server.password {
                    env.push_str(&format!(" PGPASSWORD={}", sh_quote(password)));
                }
                let translated = format!("{env} {}", replace_word(&text, "diego", &self.database.name));
                self.must(host, &translated, &context).await;
            }
            Kind::DaemonReload | Kind::Journal => {}
            Kind::EnableNow => {
                let units: Vec<String> = text.split_whitespace().skip(3).map(str::to_owned).collect();
                for unit in units {
                    self.enable(host, &unit, &context).await;
                }
            }
            Kind::Scp => {
                let words: Vec<&str> = text.split_whitespace().collect();
                let (target, files) = words[1..].split_last().unwrap_or_else(|| panic!("{context}: no files"));
                assert!(files.iter().all(|f| !f.starts_with('-')), "{context}: scp options are not translated");
                let (ip, dir) = target
                    .strip_prefix("root@")
                    .and_then(|t| t.split_once(':'))
                    .unwrap_or_else(|| panic!("{context}: bad scp target {target}"));
                let to = self.host_at(ip).path(dir);
                let translated = format!("cp {} {}", files.join(" "), sh_quote(&to.display().to_string()));
                self.must(host, &translated, &context).await;
            }
            Kind::Ssh => {
                let rest = text.strip_prefix("ssh root@").unwrap_or_default();
                let (ip, remote) = rest.split_once(' ').unwrap_or_else(|| panic!("{context}: no remote command"));
                let remote = remote.trim();
                assert!(
                    remote.len() > 1
                        && remote.starts_with('\'')
                        && remote.ends_with('\'')
                        && !remote[1..remote.len() - 1].contains('\''),
                    "{context}: the remote command should be one '...' word"
                );
                let pid = self.host_at(ip).pid;
                let translated = format!(
                    "nsenter --target {pid} --mount --net -- env -i -C /root HOME=/root USER=root LOGNAME=root \
                     PATH={PATH} sh -c {remote}"
                );
                self.must(host, &translated, &context).await;
            }
            Kind::Readiness => {
                let expected = expected_answer(&text)
                    .unwrap_or_else(|| {
                        panic!("{context}: a readiness check must say its answer in a `# \"...\"` comment")
                    })
                    .to_owned();
                let what = format!("{context}: `{text}` to answer {expected:?}");
                self.until(host, &text, &what, |out| (out.status == 0 && out.stdout.trim() == expected).then_some(()))
                    .await;
                self.report.checks += 1;
            }
            Kind::Cells => {
                let cells: Vec<String> = self.guide.cells().iter().map(|c| (*c).to_owned()).collect();
                let what = format!("{context}: `diego cells` to list {cells:?} in zone z1");
                self.until(host, &text, &what, |out| {
                    let listed = |cell: &str| {
                        out.stdout.lines().any(|l| {
                            let words: Vec<&str> = l.split_whitespace().collect();
                            words.contains(&cell) && words.contains(&"z1")
                        })
                    };
                    (out.status == 0 && cells.iter().all(|c| listed(c))).then_some(())
                })
                .await;
                self.report.checks += 1;
            }
            Kind::LrpRunning => self.lrp_running(host, &text, &context).await,
            Kind::Files | Kind::Addresses | Kind::Version | Kind::Tarball => {
                unreachable!("classify never answers {kind:?}")
            }
        }
        if as_written {
            self.report.run += 1;
        } else {
            self.report.translated += 1;
        }
    }

    /// Runs `text` in `host`'s session until `done` accepts its output, for up to
    /// [`READY_WITHIN`]; fails at once when a unit has exited.
    async fn until<T>(&mut self, host: &str, text: &str, what: &str, mut done: impl FnMut(&Output) -> Option<T>) -> T {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let last = self.shell(host, text).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(value) = done(&last) {
                return value;
            }
            for root in self.roots.values_mut() {
                assert!(root.holder.alive(), "{what}: the mount namespace of {} is gone", root.name);
            }
            for unit in &mut self.units {
                if !unit.process.alive() {
                    let log = self.net.scratch().join(format!("{}.log", unit.process.name));
                    panic!(
                        "{what}: unit {} on {} exited; its log:\n{}",
                        unit.name,
                        unit.host,
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "{what}: not within {READY_WITHIN:?}; last: {}", last.describe());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `apt-get install -y PACKAGE...`: each must be installed here; postgresql gets the relay.
    async fn packages(&mut self, host: &str, text: &str, context: &str) {
        for package in text.split_whitespace().skip(3) {
            let query = format!("dpkg-query -W -f='${{Status}}' {package}");
            let installed = self.shell(host, &query).await.is_ok_and(|o| o.stdout.trim() == "install ok installed");
            if installed {
                self.report.checks += 1;
            } else {
                self.report.notes.push(format!("{host}: package {package} is not installed on this machine"));
            }
            if package == "postgresql" {
                let root = &self.roots[host];
                let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 5432));
                let relay = Relay::start(Some(&root.netns), listen, None, self.database.server.address)
                    .await
                    .unwrap_or_else(|e| panic!("{context}: cannot relay {host}'s 127.0.0.1:5432: {e}"));
                self.relays.push(relay);
                self.report.notes.push(format!(
                    "{host}: PostgreSQL is the test server at {}, relayed to the host's 127.0.0.1:5432",
                    self.database.server.address
                ));
            }
        }
    }

    /// The operator's edits of `host`'s unpacked config/: the test's addresses for the guide's,
    /// and the guide database's name in bbs.toml's database_url.
    async fn edit_configs(&mut self, host: &str) {
        let context = format!("the operator's edits of config/*.toml on {host}");
        let mut sed = String::from("sed -i");
        for (written, actual) in self.addresses() {
            sed.push_str(&format!(" -e 's/{}/{actual}/g'", written.replace('.', r"\.")));
        }
        let name = self.database.name.clone();
        sed.push_str(&format!(" -e '/^database_url = /s/\\bdiego\\b/{name}/g' config/*.toml"));
        self.must(host, &sed, &context).await;
        let left = self.shell(host, r"grep -n '10\.0\.0\.' config/*.toml").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(left.status == 1, "{context}: addresses the guide does not list are left: {}", left.stdout);
        let url = self.must(host, "grep '^database_url = ' config/bbs.toml", &context).await;
        assert_eq!(
            url.stdout.trim(),
            format!("database_url = \"postgres://{name}:CHANGE-ME@127.0.0.1:5432/{name}\""),
            "{context}: bbs.toml's database_url"
        );
    }

    /// `systemctl enable --now UNIT`, as systemd would start it.
    async fn enable(&mut self, host: &str, unit: &str, context: &str) {
        let unit = unit.strip_suffix(".service").unwrap_or(unit);
        let path = self.roots[host].path(&format!("/etc/systemd/system/{unit}.service"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{context}: Unit file {unit}.service does not exist ({e})"));
        let service = ServiceSection::parse(&text).unwrap_or_else(|e| panic!("{context}: {unit}.service: {e}"));
        let user = service.get("User").unwrap_or("root").to_owned();
        let group = service.get("Group").unwrap_or(&user).to_owned();
        for dir in service.get("StateDirectory").unwrap_or_default().split_whitespace() {
            let mode = service.get("StateDirectoryMode").unwrap_or("0755");
            let path = format!("/var/lib/{dir}");
            let parent = Path::new(&path).parent().map(|p| p.display().to_string()).unwrap_or_default();
            let make = format!("mkdir -p {parent} && install -d -m {mode} -o {user} -g {group} {path}");
            self.must(host, &make, &format!("{context}: {unit}.service's StateDirectory")).await;
        }
        let exec: Vec<String> = service
            .get("ExecStart")
            .unwrap_or_else(|| panic!("{context}: {unit}.service has no ExecStart"))
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert!(
            exec.iter().all(|w| !w.contains(['"', '\'', '$', '%'])) && !exec[0].starts_with(['-', '@', '+', '!']),
            "{context}: {unit}.service's ExecStart needs more than splitting at spaces: {exec:?}"
        );
        let pid = self.roots[host].pid.to_string();
        let mut args: Vec<String> =
            ["--target", &pid, "--mount", "--", "env", "-i", "-C", service.get("WorkingDirectory").unwrap_or("/")]
                .map(str::to_owned)
                .to_vec();
        args.push(format!("PATH={PATH}"));
        for assignments in service.all("Environment") {
            args.extend(assignments.trim_matches('"').split_whitespace().map(str::to_owned));
        }
        let umask = service.get("UMask").unwrap_or("0022");
        args.extend(["sh".into(), "-c".into(), format!("umask {umask} && exec \"$@\""), "sh".into()]);
        // Limits as root, before the user is taken on (as systemd does): raising one takes root.
        if let Some(limit) = service.get("LimitNOFILE") {
            let mut limit: u64 = limit.parse().unwrap_or_else(|_| panic!("{context}: LimitNOFILE={limit}"));
            // Raising the hard limit takes CAP_SYS_RESOURCE, which a test machine may not give.
            let hard = open_files_hard_limit();
            if hard.is_some_and(|hard| hard < limit) {
                let hard = hard.unwrap_or(limit);
                self.report.notes.push(format!(
                    "{host}: {unit}.service's LimitNOFILE={limit} lowered to {hard}, this process's hard limit"
                ));
                limit = hard;
            }
            args.extend(["prlimit".into(), format!("--nofile={limit}:{limit}"), "--".into()]);
        }
        if user != "root" || group != "root" {
            args.extend(
                ["setpriv", &format!("--reuid={user}"), &format!("--regid={group}"), "--init-groups", "--"]
                    .map(str::to_owned),
            );
        }
        args.extend(exec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = format!("{host}-{unit}");
        let process = self.net.spawn(host, &name, Path::new("nsenter"), &args, &[]);
        self.report.notes.push(format!(
            "{host}: {unit}.service started as {user}:{group}; not emulated: {}",
            service.unemulated().join(", ")
        ));
        let stop_within = service.get("TimeoutStopSec").map_or(Duration::from_secs(90), |t| {
            let seconds = t.strip_suffix('s').unwrap_or(t);
            Duration::from_secs(seconds.parse().unwrap_or_else(|_| panic!("{context}: TimeoutStopSec={t}")))
        });
        self.units.push(Unit { host: host.to_owned(), name: unit.to_owned(), process, stop_within });
    }

    /// `diego lrp GUID` until every instance runs, then what the guide says of them: each answers
    /// `/env` with its index at `CELL:HOSTPORT`, and runs as `nobody`.
    async fn lrp_running(&mut self, host: &str, text: &str, context: &str) {
        let what = format!("{context}: `{text}` to show every instance RUNNING");
        let instances = self.until(host, text, &what, |out| running_instances(&out.stdout)).await;
        self.report.checks += 1;
        let cells: Vec<String> = self.guide.cells().iter().map(|c| self.net.host(c).ip.to_string()).collect();
        for (index, address) in &instances {
            let (ip, port) = address.split_once(':').unwrap_or_else(|| panic!("{context}: address {address}"));
            assert!(cells.iter().any(|c| c == ip), "{context}: instance {index} at {address} is not on a cell");
            let curl = format!("curl -s --max-time 10 http://{ip}:{port}/env");
            let out = self.must(host, &curl, &format!("{context}: the app's /env")).await;
            let env: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{context}: /env of instance {index} is not JSON ({e}): {}", out.stdout));
            assert_eq!(env["INSTANCE_INDEX"], serde_json::json!(index.to_string()), "{context}: /env of {address}");
            let object = env.as_object().map(|o| o.keys().any(|k| k.starts_with("CF_INSTANCE_")));
            assert_eq!(object, Some(true), "{context}: /env of {address} has no CF_INSTANCE_* variables: {env}");
            self.report.checks += 1;
        }
        // The app's processes, found by name in the cells' namespaces, run as nobody.
        let uids = self.app_uids();
        let nobody = self.must(host, "id -u nobody", context).await.stdout.trim().to_owned();
        assert_eq!(uids.len(), instances.len(), "{context}: diego-demo-app processes on the cells: uids {uids:?}");
        assert!(uids.iter().all(|u| *u == nobody), "{context}: the app runs as uids {uids:?}, not nobody ({nobody})");
        self.report.checks += 1;
    }
}

/// From `diego lrp` output: every instance's (index, `ip:port`) once each desired instance is
/// RUNNING with a `ip:port->container` address, else `None`.
pub fn running_instances(output: &str) -> Option<Vec<(i32, String)>> {
    let counts = output.lines().find_map(|l| l.strip_prefix("instances:"))?;
    let words: Vec<&str> = counts.split_whitespace().collect();
    let (running, desired): (usize, usize) = match words.as_slice() {
        [running, "running", "/", desired, "desired"] => (running.parse().ok()?, desired.parse().ok()?),
        _ => return None,
    };
    if desired == 0 || running != desired {
        return None;
    }
    let mut lines = output.lines().skip_while(|l| !l.starts_with("INDEX"));
    lines.next()?;
    let mut instances = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [index, "RUNNING", _cell, address, ..] = words.as_slice() else { return None };
        let endpoint = address.split_once("->")?.0;
        instances.push((index.parse().ok()?, endpoint.to_owned()));
    }
    (instances.len() == desired).then_some(instances)
}

/// This process's hard limit of open files (`None`: unlimited or unknown).
fn open_files_hard_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// A unit file's `[Service]` settings.
#[derive(Debug, Default)]
struct ServiceSection {
    settings: Vec<(String, String)>,
}

/// The `[Service]` settings a started unit honours.
const EMULATED: [&str; 10] = [
    "ExecStart",
    "User",
    "Group",
    "Environment",
    "UMask",
    "StateDirectory",
    "StateDirectoryMode",
    "LimitNOFILE",
    "WorkingDirectory",
    "TimeoutStopSec",
];

impl ServiceSection {
    fn parse(text: &str) -> Result<ServiceSection, String> {
        let mut section = "";
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section == "[Service]" {
                let (key, value) = line.split_once('=').ok_or_else(|| format!("not a setting: {line}"))?;
                settings.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        if settings.is_empty() {
            return Err("no [Service] section".into());
        }
        Ok(ServiceSection { settings })
    }

    /// The last value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    fn all(&self, key: &str) -> Vec<&str> {
        self.settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The settings not in [`EMULATED`].
    fn unemulated(&self) -> Vec<&str> {
        let mut keys: Vec<&str> =
            self.settings.iter().map(|(k, _)| k.as_str()).filter(|k| !EMULATED.contains(k)).collect();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_classified_by_the_table() {
        assert_eq!(classify("apt-get install -y curl"), Some(Kind::Packages));
        assert_eq!(classify("systemctl enable --now bbs"), Some(Kind::EnableNow));
        assert_eq!(classify("systemctl restart bbs"), None);
        assert_eq!(classify("scp a b root@10.1.1.12:/etc/diego/tls/"), Some(Kind::Scp));
        assert_eq!(classify("ssh root@10.1.1.12 'true'"), Some(Kind::Ssh));
        assert_eq!(classify("curl -s 127.0.0.1:8890/leader   # \"leader\""), Some(Kind::Readiness));
        assert_eq!(classify("diego --bbs-address a:1 --tls-ca x cells"), Some(Kind::Cells));
        assert_eq!(classify("diego lrp demo"), Some(Kind::LrpRunning));
        assert_eq!(classify("diego desire-lrp --guid demo"), Some(Kind::AsWritten));
        assert_eq!(classify("password=$(head -c 18 /dev/urandom)"), Some(Kind::AsWritten));
        assert_eq!(classify("rm -rf /"), None);
    }

    /// What the walkthrough checks before it makes any host: without root, an untranslatable
    /// command of the guide fails here.
    #[test]
    fn every_command_of_the_guide_has_a_rule() {
        let guide = Guide::load();
        assert_eq!(guide.host_names(), ["control", "auction", "cell-1"]);
        assert_eq!(guide.cells(), ["cell-1"]);
        assert!(guide.blocks.len() >= 8, "the guide's blocks: {}", guide.blocks.len());
        for block in &guide.blocks {
            for command in &block.commands {
                let at = format!("{GUIDE}:{} `{}`", command.line, command.text);
                check_paths(&command.text).unwrap_or_else(|e| panic!("{at}: {e}"));
                let kind = classify(&command.text).unwrap_or_else(|| panic!("{at}: no rule covers it"));
                if kind == Kind::Readiness {
                    assert!(expected_answer(&command.text).is_some(), "{at}: no answer in its comment");
                }
            }
        }
    }

    #[test]
    fn words_answers_and_paths() {
        assert_eq!(replace_word("createdb --owner diego diego", "diego", "x"), "createdb --owner x x");
        assert_eq!(replace_word("diego-rs diego_x /diego\"", "diego", "x"), "diego-rs diego_x /x\"");
        assert_eq!(expected_answer("curl -s 127.0.0.1:8890/leader   # \"leader\" once"), Some("leader"));
        assert_eq!(expected_answer("curl -s 127.0.0.1:1800/healthz"), None);
        assert!(check_paths("install -m 0755 bin/* /usr/local/bin/").is_ok());
        assert!(check_paths("printf x >/etc/diego/encryption.keys").is_ok());
        assert!(check_paths("install -m 0644 x /opt/diego/").is_err());
    }

    #[test]
    fn the_running_instances_are_read_from_diego_lrp() {
        let output = "process guid:  demo\ninstances:     2 running / 2 desired\n\n\
                      INDEX  STATE    CELL    ADDRESS                  CRASHES  SINCE  DETAILS\n\
                      0      RUNNING  cell-1  10.1.1.12:61000->8080    0        3s\n\
                      1      RUNNING  cell-1  10.1.1.12:61001->8080    0        3s\n";
        assert_eq!(running_instances(output), Some(vec![(0, "10.1.1.12:61000".into()), (1, "10.1.1.12:61001".into())]));
        assert_eq!(running_instances(&output.replace("2 running", "1 running")), None);
    }
}
