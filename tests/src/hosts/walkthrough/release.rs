//! The release tarball each host starts from, laid out as scripts/release.sh lays it out.

use std::path::{Path, PathBuf};

use super::{sh_quote, workspace};

/// `target/<profile>/`: the directory of this test executable's directory.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
    exe.parent().and_then(Path::parent).map(Path::to_owned).unwrap_or_default()
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

/// When set, the path of a real release tarball (`scripts/release.sh`'s
/// `dist/diego-rs-<version>-x86_64-linux-musl.tar.gz`) the walkthrough installs instead of one
/// laid out from the test build.
pub const TARBALL_VAR: &str = "DIEGO_WALKTHROUGH_TARBALL";

impl Release {
    /// The release the walkthrough installs: the tarball [`TARBALL_VAR`] names, copied into
    /// `dir`, or else one [`Release::build`] lays out there.
    pub fn prepare(dir: &Path) -> Release {
        let Some(given) = std::env::var_os(TARBALL_VAR).map(PathBuf::from) else { return Release::build(dir) };
        let file = given.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file.strip_suffix(".tar.gz").unwrap_or_else(|| panic!("{TARBALL_VAR}: {file} is not a .tar.gz"));
        let tarball = dir.join(&file);
        std::fs::copy(&given, &tarball).unwrap_or_else(|e| panic!("{TARBALL_VAR} {}: {e}", given.display()));
        let notes = vec![format!("the release tarball {} ({TARBALL_VAR})", given.display())];
        Release { name: name.to_owned(), tarball, notes }
    }

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
                     `cargo build -p bbs -p auctioneer -p cell-rep -p router -p cli`",
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
