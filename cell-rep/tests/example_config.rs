//! The release's example configuration `deploy/config/cell-rep.toml` and its unit
//! `deploy/systemd/cell-rep.service`, checked against the rep's own configuration: the file loads and
//! validates through the loader the binary uses (with a test CA's certificates standing in for
//! /etc/diego/tls), every field the rep knows is listed with its true default, and the unit runs
//! this file with the data directory the file names. A renamed field or a changed default fails
//! here until the example is updated.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cell_rep::{ConfigOverrides, RepConfig};
use svc::config::ConfigFile;
use svc::identity::{Identity, Role};
use svc::pki::Pki;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The defaults the example documents: each `# field = value` line and each table header
/// (commented or not), uncommented, in file order.
fn documented_defaults(text: &str) -> String {
    let assignment = |line: &str| {
        line.split_once(" = ")
            .is_some_and(|(key, _)| !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            let bare = line.strip_prefix("# ").unwrap_or(line);
            let header = bare.starts_with('[') && bare.ends_with(']');
            (header || (line.starts_with("# ") && assignment(bare))).then_some(bare)
        })
        .collect();
    lines.join("\n")
}

/// The fields serde knows in the table `table` ("" for the top level), from its refusal of an
/// unknown one ("unknown field `x`, expected one of `a`, `b`, ...").
fn known_fields(table: &str) -> BTreeSet<String> {
    let probe = if table.is_empty() { "zz_unknown = 0".to_owned() } else { format!("[{table}]\nzz_unknown = 0") };
    let error = toml::from_str::<RepConfig>(&probe).expect_err("an unknown field is refused").to_string();
    let expected = &error[error.find("expected").unwrap_or_else(|| panic!("no field list in: {error}"))..];
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The keys of `table` ("" for the top level) in a parsed TOML document.
fn keys(document: &toml::Table, table: &str) -> BTreeSet<String> {
    let table = if table.is_empty() { document } else { document[table].as_table().expect("a table") };
    table.keys().cloned().collect()
}

fn assert_reachable(field: &str, address: &str) {
    let address: SocketAddr = address.parse().unwrap_or_else(|e| panic!("{field} {address:?}: {e}"));
    assert!(!address.ip().is_loopback() && !address.ip().is_unspecified(), "{field} {address} is not a host address");
}

#[test]
fn every_field_is_listed_with_its_true_default() {
    let defaults = documented_defaults(&read(&deploy("config/cell-rep.toml")));
    let parsed: RepConfig = toml::from_str(&defaults).unwrap_or_else(|e| panic!("the documented defaults: {e}"));
    assert_eq!(
        format!("{parsed:#?}"),
        format!("{:#?}", RepConfig::default()),
        "a documented default is not the default"
    );
    let document: toml::Table = toml::from_str(&defaults).expect("toml");
    for table in ["", "tls"] {
        assert_eq!(keys(&document, table), known_fields(table), "fields of [{table}] listed vs known");
    }
}

#[test]
fn the_example_loads_and_validates_with_real_certificates() {
    let path = deploy("config/cell-rep.toml");
    let text = read(&path);
    let config: RepConfig = svc::config::from_file(&path).expect("the example parses");
    assert_reachable("bbs_address", &config.bbs_address);
    assert_reachable("listen_address", &config.listen_address);
    assert_reachable("advertise_address", &config.advertise_address);
    let stem = svc::certs::file_stem(&Identity::new(Role::Cell, config.cell_id.as_str()).expect("identity"));
    assert_eq!(config.tls.ca, Path::new("/etc/diego/tls/ca.pem"));
    assert_eq!(config.tls.cert, Path::new("/etc/diego/tls").join(format!("{stem}.pem")));
    assert_eq!(config.tls.key, Path::new("/etc/diego/tls").join(format!("{stem}-key.pem")));

    // The same file with /etc/diego/tls replaced by a test CA's directory, whose files are named
    // as `diego certs issue --role cell --name <cell_id>` names them: the binary's loader accepts it.
    let pki = Pki::for_tests();
    pki.test_tls(Role::Cell, &config.cell_id);
    let rewritten = pki.dir().join("example-cell-rep.toml");
    std::fs::write(&rewritten, text.replace("/etc/diego/tls/", &format!("{}/", pki.dir().display()))).expect("write");
    let loaded = RepConfig::load(Some(&rewritten), ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("the example is refused: {e}"));
    assert_eq!(loaded.tls.cert, pki.dir().join(format!("{stem}.pem")));
}

#[test]
fn the_unit_runs_the_example_as_root_with_cgroup_delegation_and_its_data_dir_writable() {
    let unit = read(&deploy("systemd/cell-rep.service"));
    let lines: Vec<&str> = unit.lines().collect();
    for line in
        ["ExecStart=/usr/local/bin/cell-rep --config /etc/diego/cell-rep.toml", "Delegate=yes", "Restart=on-failure"]
    {
        assert!(lines.contains(&line), "cell-rep.service lacks {line}");
    }
    // Root: runc, the process runtime's per-container users and its cgroups need it.
    assert!(!lines.iter().any(|l| l.starts_with("User=")), "cell-rep.service must run as root");
    let config: RepConfig = svc::config::from_file(&deploy("config/cell-rep.toml")).expect("the example parses");
    let state = lines.iter().find_map(|l| l.strip_prefix("StateDirectory=")).expect("a StateDirectory");
    assert_eq!(config.data_dir, Path::new("/var/lib").join(state), "data_dir is the unit's StateDirectory");
}
