//! The soak's own PostgreSQL: a private cluster (`initdb` into `<out>/pg/data`, one server on a
//! free loopback port), run as the `postgres` user through `setpriv` (PostgreSQL refuses to run
//! as root), so the chaos driver can stop it for a while without touching a shared server. The
//! server is the postmaster itself (`setpriv` `exec`s): stopping it is SIGINT (a fast shutdown:
//! every connection is cut), starting it again is the same command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::time::Instant;

/// Where the PostgreSQL versions are installed (`<version>/bin/postgres`).
const INSTALL_DIR: &str = "/usr/lib/postgresql";
/// The user the server runs as.
const USER: &str = "postgres";

/// The `bin` directory of the newest PostgreSQL under [`INSTALL_DIR`].
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(INSTALL_DIR)
        .with_context(|| format!("no PostgreSQL under {INSTALL_DIR}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().into_string().ok()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| anyhow!("no PostgreSQL server under {INSTALL_DIR}/<version>/bin"))
}

/// A private PostgreSQL server.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    sockets: PathBuf,
    log: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"]).arg(program);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGDATA", "PGOPTIONS"] {
        command.env_remove(var);
    }
    command
}

fn chown_postgres(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown").args(["-R", &format!("{USER}:{USER}")]).arg(path).status()?;
    if !status.success() {
        bail!("chown {} to {USER} failed", path.display());
    }
    Ok(())
}

impl PrivatePostgres {
    /// `initdb` in `<dir>/data` and the server started on `port`; returns once it accepts
    /// connections.
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<PrivatePostgres> {
        let bin = bin_dir()?;
        let (data, sockets) = (dir.join("data"), dir.join("sockets"));
        std::fs::create_dir_all(&sockets)?;
        chown_postgres(dir)?;
        // The parent directories must be traversable by the postgres user.
        for ancestor in dir.ancestors().skip(1) {
            if let Ok(meta) = std::fs::metadata(ancestor) {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = meta.permissions().mode();
                if mode & 0o001 == 0 {
                    let _ = std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o011));
                }
            }
        }
        let init_log = dir.join("initdb.log");
        let out = std::fs::File::create(&init_log)?;
        let status = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("initdb")?;
        if !status.success() {
            bail!("initdb failed: see {}", init_log.display());
        }
        let mut pg = PrivatePostgres { bin, data, sockets, log: dir.join("postgres.log"), port, child: None };
        pg.spawn()?;
        pg.wait_ready(Duration::from_secs(30)).await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Its postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={}", self.port)])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.sockets.display()))
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("postgres exited ({status}): see {}", self.log.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
                && let Ok(Ok(_)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    <sqlx::PgConnection as sqlx::Connection>::connect(&self.url()),
                )
                .await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("postgres not ready within {patience:?}: see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (fast shutdown: connections cut) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        super::components::signal(child.id(), nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the stopped server again; returns once it accepts connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        self.wait_ready(Duration::from_secs(60)).await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown, the postmaster takes its children down.
            super::components::signal(child.id(), nix::sys::signal::Signal::SIGCONT);
            super::components::signal(child.id(), nix::sys::signal::Signal::SIGQUIT);
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
