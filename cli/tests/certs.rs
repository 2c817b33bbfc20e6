//! `diego certs init` and `diego certs issue`, run as the real binary: the files and their
//! modes, the refusals (a CA already there, a bad role or name, no CA) as one line with exit 2,
//! and every `diego certs` command the README's Certificates section shows.

#[path = "support/harness.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use harness::{DIEGO, Run, assert_no_panic, diego, scratch};
use x509_parser::extensions::GeneralName;

/// Runs `diego ARGS...` in `cwd`.
async fn diego_in(cwd: &Path, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(DIEGO);
    command.args(args).current_dir(cwd).env_remove("DIEGO_BBS_ADDRESS").stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("diego {args:?} did not finish within 60 s"))
        .expect("cannot run diego");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_no_panic(&run.stderr);
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// The URI, DNS and IP SANs of the PEM certificate at `path`, as strings.
fn sans(path: &Path) -> Vec<String> {
    let pem = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let names = cert.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
    names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => format!("uri:{uri}"),
            GeneralName::DNSName(host) => format!("dns:{host}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!("ip:{}", std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap())),
                _ => format!("ip:{}", std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn init_then_issue_writes_a_ca_and_a_signed_cell_certificate() {
    let dir = scratch("certs-init-issue").join("certs");
    let d = dir.to_str().unwrap();
    let out = diego(&["certs", "init", "--dir", d]).await;
    assert_eq!(out.ok(), format!("{d}/ca.pem\n{d}/ca-key.pem\n"));
    assert_eq!(files(&dir), ["ca-key.pem", "ca.pem"]);
    assert_eq!((mode(&dir), mode(&dir.join("ca.pem")), mode(&dir.join("ca-key.pem"))), (0o700, 0o644, 0o600));

    let out = diego(&[
        "certs",
        "issue",
        "--dir",
        d,
        "--role",
        "cell",
        "--name",
        "cell-1",
        "--host",
        "10.0.0.5",
        "--host",
        "cell-1.internal",
    ])
    .await;
    assert_eq!(out.ok(), format!("{d}/cell-1.pem\n{d}/cell-1-key.pem\n"));
    assert_eq!((mode(&dir.join("cell-1.pem")), mode(&dir.join("cell-1-key.pem"))), (0o644, 0o600));
    assert_eq!(sans(&dir.join("cell-1.pem")), ["uri:diego://cell/cell-1", "ip:10.0.0.5", "dns:cell-1.internal"]);

    // An unnamed bbs is bbs.pem; --out puts the pair elsewhere; --json prints both paths.
    let other = dir.join("elsewhere");
    let out = diego(&["certs", "issue", "--dir", d, "--role", "bbs", "--out", other.to_str().unwrap(), "--json"]).await;
    let o = other.to_str().unwrap();
    assert_eq!(out.json(), serde_json::json!({"cert": format!("{o}/bbs.pem"), "key": format!("{o}/bbs-key.pem")}));
    assert_eq!(files(&other), ["bbs-key.pem", "bbs.pem"]);
    assert_eq!(sans(&other.join("bbs.pem")), ["uri:diego://bbs"]);
}

#[tokio::test]
async fn init_refuses_an_existing_ca_unless_forced() {
    let dir = scratch("certs-init-twice");
    let d = dir.to_str().unwrap();
    diego(&["certs", "init", "--dir", d]).await.ok();
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("ca-key.pem")).unwrap();

    let out = diego(&["certs", "init", "--dir", d]).await;
    let line = out.fails(2);
    assert_eq!(
        line,
        format!(
            "error: a CA already exists in {d} ({d}/ca.pem); refusing to overwrite it ('diego certs init --force' replaces it)"
        )
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca, "nothing overwritten");
    assert_eq!(std::fs::read_to_string(dir.join("ca-key.pem")).unwrap(), key, "nothing overwritten");

    // A lone key is a CA too: init writes nothing next to it.
    std::fs::remove_file(dir.join("ca.pem")).unwrap();
    diego(&["certs", "init", "--dir", d]).await.fails(2);
    assert_eq!(files(&dir), ["ca-key.pem"]);

    diego(&["certs", "init", "--dir", d, "--force"]).await.ok();
    assert_ne!(std::fs::read_to_string(dir.join("ca-key.pem")).unwrap(), key, "--force replaces the CA");
    assert_eq!(files(&dir), ["ca-key.pem", "ca.pem"]);
}

#[tokio::test]
async fn bad_roles_names_hosts_and_days_are_refused_in_one_line() {
    let dir = scratch("certs-bad-input");
    let d = dir.to_str().unwrap();
    diego(&["certs", "init", "--dir", d]).await.ok();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--role", "root"],
            "error: invalid --role: unknown role \"root\" (expected one of bbs, auctioneer, cell, operator, reader)",
        ),
        (&["--role", "cell"], "error: invalid --name: a cell identity needs a name: diego://cell/<name>"),
        (&["--role", "operator"], "error: invalid --name: a operator identity needs a name: diego://operator/<name>"),
        (
            &["--role", "cell", "--name", "a/b"],
            "error: invalid --name: invalid identity name \"a/b\": 1 to 128 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            &["--role", "cell", "--name", "../x"],
            "error: invalid --name: invalid identity name \"../x\": 1 to 128 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            &["--role", "bbs", "--host", "a b"],
            "error: invalid host \"a b\": expected an IP address or a DNS name (letters, digits, '-', '.', a leading '*.')",
        ),
        (&["--role", "bbs", "--days", "0"], "error: invalid --days: a certificate must be valid for at least 1 day"),
        (
            &["--role", "bbs", "--days", "4000000"],
            "error: invalid validity: a certificate's time must be between 1970 and 9999",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["certs", "issue", "--dir", d];
        all.extend_from_slice(args);
        let out = diego(&all).await;
        assert_eq!(out.fails(2), *want, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    assert_eq!(files(&dir), ["ca-key.pem", "ca.pem"], "nothing written");
    // clap's own checks: a missing --role, a --days that is no number.
    for args in [&["certs", "issue", "--dir", d][..], &["certs", "issue", "--dir", d, "--role", "bbs", "--days", "x"]] {
        assert_eq!(diego(args).await.code, 2, "{args:?}");
    }
}

#[tokio::test]
async fn a_missing_or_broken_ca_is_named() {
    let dir = scratch("certs-no-ca");
    let d = dir.to_str().unwrap();
    let out = diego(&["certs", "issue", "--dir", d, "--role", "bbs"]).await;
    assert_eq!(
        out.fails(2),
        format!("error: no CA in {d}: ca.pem is missing; create one with 'diego certs init --dir {d}'")
    );

    std::fs::write(dir.join("ca.pem"), "not pem").unwrap();
    let out = diego(&["certs", "issue", "--dir", d, "--role", "bbs"]).await;
    assert_eq!(out.fails(2), format!("error: cannot read {d}/ca-key.pem: No such file or directory"));

    std::fs::write(dir.join("ca-key.pem"), "not pem").unwrap();
    let line = diego(&["certs", "issue", "--dir", d, "--role", "bbs"]).await.fails(2).to_owned();
    assert!(line.starts_with(&format!("error: invalid {d}/ca-key.pem: not a PEM private key")), "{line}");

    std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
    std::fs::remove_file(dir.join("ca.pem")).unwrap();
    diego(&["certs", "init", "--dir", d]).await.ok();
    std::fs::write(dir.join("ca.pem"), "not pem").unwrap();
    let line = diego(&["certs", "issue", "--dir", d, "--role", "bbs"]).await.fails(2).to_owned();
    assert!(line.starts_with(&format!("error: invalid {d}/ca.pem: ")), "{line}");
    assert_eq!(files(&dir), ["ca-key.pem", "ca.pem"]);
}

/// The `diego certs` lines of the README's Certificates section, as arguments (comments cut).
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let section = readme.split("\n### Certificates\n").nth(1).expect("README has a ### Certificates section");
    let section = section.split("\n#").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.trim().strip_prefix("diego "))
        .map(|line| line.split(" #").next().unwrap_or(line).split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn the_readme_commands_work_as_documented() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    let cwd = scratch("certs-readme");
    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        assert_eq!(args[0], "certs", "{args:?}");
        diego_in(&cwd, &args).await.ok();
    }
    let certs = cwd.join("certs");
    assert_eq!(
        files(&certs),
        ["bbs-key.pem", "bbs.pem", "ca-key.pem", "ca.pem", "cell-1-key.pem", "cell-1.pem", "operator"]
    );
    assert_eq!(files(&certs.join("operator")), ["operator-key.pem", "operator.pem"]);
    assert_eq!(sans(&certs.join("bbs.pem")), ["uri:diego://bbs", "ip:127.0.0.1", "dns:localhost"]);
    assert_eq!(sans(&certs.join("cell-1.pem")), ["uri:diego://cell/cell-1", "ip:10.0.0.5"]);
    assert_eq!(sans(&certs.join("operator/operator.pem")), ["uri:diego://operator/operator"]);
    // As the README says: init again is refused, and --force replaces the CA.
    diego_in(&cwd, &commands[0].iter().map(String::as_str).collect::<Vec<_>>()).await.fails(2);
    diego_in(&cwd, &["certs", "init", "--dir", "certs", "--force"]).await.ok();
}
