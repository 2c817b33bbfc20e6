//! The release's example configurations (`deploy/config/*.toml`) and systemd units
//! (`deploy/systemd/*.service`), checked against each component's own configuration: each file
//! loads and validates through the loader its binary uses (with a test CA's certificates standing
//! in for /etc/diego/tls), every field the component knows is listed with its true default, and
//! each unit runs its file as it should. A renamed field or a changed default fails here until
//! the example is updated.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use svc::config::ConfigFile;
use svc::identity::{Identity, Role};
use svc::pki::Pki;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The defaults an example documents: each `# field = value` line and each table header
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

/// The fields serde knows in the table `table` ("" for the top level) of `C`, from its refusal
/// of an unknown one ("unknown field `x`, expected one of `a`, `b`, ...").
fn known_fields<C: DeserializeOwned + Debug>(table: &str) -> BTreeSet<String> {
    let probe = if table.is_empty() { "zz_unknown = 0".to_owned() } else { format!("[{table}]\nzz_unknown = 0") };
    let error = toml::from_str::<C>(&probe).expect_err("an unknown field is refused").to_string();
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

/// Every field of `C` in `tables` is listed in `deploy/config/<file>` with its true default.
fn assert_every_field_listed<C: DeserializeOwned + Default + Debug>(file: &str, tables: &[&str]) {
    let defaults = documented_defaults(&read(&deploy(&format!("config/{file}"))));
    let parsed: C = toml::from_str(&defaults).unwrap_or_else(|e| panic!("the documented defaults of {file}: {e}"));
    assert_eq!(
        format!("{parsed:#?}"),
        format!("{:#?}", C::default()),
        "a documented default of {file} is not the default"
    );
    let document: toml::Table = toml::from_str(&defaults).expect("toml");
    for table in tables {
        assert_eq!(keys(&document, table), known_fields::<C>(table), "{file}: fields of [{table}] listed vs known");
    }
}

/// `deploy/config/<file>` with /etc/diego/tls replaced by the test CA's directory, whose files
/// are named as `diego certs issue` names them for `role` and `name`; and the file stem of that
/// identity's certificate.
fn with_test_certificates(file: &str, role: Role, name: &str) -> (PathBuf, String) {
    let text = read(&deploy(&format!("config/{file}")));
    let pki = Pki::for_tests();
    pki.test_tls(role, name);
    let rewritten = pki.dir().join(format!("example-{file}"));
    std::fs::write(&rewritten, text.replace("/etc/diego/tls/", &format!("{}/", pki.dir().display()))).expect("write");
    (rewritten, svc::certs::file_stem(&Identity::new(role, name).expect("identity")))
}

/// The certificate paths of `tls` are those of `stem` under `dir`.
fn assert_tls_files(tls: &svc::config::tls::TlsConfig, dir: &Path, stem: &str) {
    assert_eq!(tls.ca, dir.join("ca.pem"));
    assert_eq!(tls.cert, dir.join(format!("{stem}.pem")));
    assert_eq!(tls.key, dir.join(format!("{stem}-key.pem")));
}

/// The lines of `deploy/systemd/<unit>`, which must hold each of `required`.
fn unit_lines(unit: &str, required: &[&str]) -> Vec<String> {
    let lines: Vec<String> = read(&deploy(&format!("systemd/{unit}"))).lines().map(str::to_owned).collect();
    for line in required {
        assert!(lines.iter().any(|l| l == line), "{unit} lacks {line}");
    }
    lines
}

fn state_directory(lines: &[String]) -> PathBuf {
    let state = lines.iter().find_map(|l| l.strip_prefix("StateDirectory=")).expect("a StateDirectory");
    Path::new("/var/lib").join(state)
}

mod bbs_example {
    use ::bbs::config::{BbsConfig, ConfigOverrides};

    use super::*;

    #[test]
    fn every_field_is_listed_with_its_true_default() {
        assert_every_field_listed::<BbsConfig>("bbs.toml", &["", "tls", "locket"]);
    }

    #[test]
    fn the_example_loads_and_validates_with_real_certificates() {
        let config: BbsConfig = svc::config::from_file(&deploy("config/bbs.toml")).expect("the example parses");
        assert!(config.database_url.starts_with("postgres://"), "{}", config.database_url);
        assert_reachable("listen_address", &config.listen_address);
        assert_reachable("advertise_address", &config.advertise_address);
        let (rewritten, stem) = with_test_certificates("bbs.toml", Role::Bbs, "");
        assert_tls_files(&config.tls, Path::new("/etc/diego/tls"), &stem);
        let loaded = BbsConfig::load(Some(&rewritten), ConfigOverrides::default())
            .unwrap_or_else(|e| panic!("the example is refused: {e}"));
        assert_eq!(loaded.tls.cert, Pki::for_tests().dir().join(format!("{stem}.pem")));
    }

    #[test]
    fn the_unit_runs_the_example_as_the_diego_user_with_its_data_dir_writable() {
        let lines = unit_lines(
            "bbs.service",
            &["ExecStart=/usr/local/bin/bbs --config /etc/diego/bbs.toml", "User=diego", "Restart=on-failure"],
        );
        let config: BbsConfig = svc::config::from_file(&deploy("config/bbs.toml")).expect("the example parses");
        assert_eq!(config.data_dir, state_directory(&lines), "data_dir is the unit's StateDirectory");
    }
}

mod auctioneer_example {
    use ::auctioneer::{AuctioneerConfig, ConfigOverrides};

    use super::*;

    #[test]
    fn every_field_is_listed_with_its_true_default() {
        assert_every_field_listed::<AuctioneerConfig>("auctioneer.toml", &["", "tls"]);
    }

    #[test]
    fn the_example_loads_and_validates_with_real_certificates() {
        let config: AuctioneerConfig =
            svc::config::from_file(&deploy("config/auctioneer.toml")).expect("the example parses");
        assert_reachable("bbs_address", &config.bbs_address);
        assert_reachable("listen_address", &config.listen_address);
        assert_reachable("advertise_address", &config.advertise_address);
        let (rewritten, stem) = with_test_certificates("auctioneer.toml", Role::Auctioneer, "");
        assert_tls_files(&config.tls, Path::new("/etc/diego/tls"), &stem);
        let loaded = AuctioneerConfig::load(Some(&rewritten), ConfigOverrides::default())
            .unwrap_or_else(|e| panic!("the example is refused: {e}"));
        assert_eq!(loaded.tls.cert, Pki::for_tests().dir().join(format!("{stem}.pem")));
    }

    #[test]
    fn the_unit_runs_the_example_as_the_diego_user() {
        unit_lines(
            "auctioneer.service",
            &[
                "ExecStart=/usr/local/bin/auctioneer --config /etc/diego/auctioneer.toml",
                "User=diego",
                "Restart=on-failure",
            ],
        );
    }
}

mod cell_rep_example {
    use ::cell_rep::{ConfigOverrides, RepConfig};

    use super::*;

    #[test]
    fn every_field_is_listed_with_its_true_default() {
        assert_every_field_listed::<RepConfig>("cell-rep.toml", &["", "logs", "tls"]);
    }

    #[test]
    fn the_example_loads_and_validates_with_real_certificates() {
        let config: RepConfig = svc::config::from_file(&deploy("config/cell-rep.toml")).expect("the example parses");
        assert_reachable("bbs_address", &config.bbs_address);
        assert_reachable("listen_address", &config.listen_address);
        assert_reachable("advertise_address", &config.advertise_address);
        let (rewritten, stem) = with_test_certificates("cell-rep.toml", Role::Cell, &config.cell_id);
        assert_tls_files(&config.tls, Path::new("/etc/diego/tls"), &stem);
        let loaded = RepConfig::load(Some(&rewritten), ConfigOverrides::default())
            .unwrap_or_else(|e| panic!("the example is refused: {e}"));
        assert_eq!(loaded.tls.cert, Pki::for_tests().dir().join(format!("{stem}.pem")));
    }

    #[test]
    fn the_unit_runs_the_example_as_root_with_cgroup_delegation_and_its_data_dir_writable() {
        let lines = unit_lines(
            "cell-rep.service",
            &[
                "ExecStart=/usr/local/bin/cell-rep --config /etc/diego/cell-rep.toml",
                "Delegate=yes",
                "Restart=on-failure",
            ],
        );
        // Root: runc, the process runtime's per-container users and its cgroups need it.
        assert!(!lines.iter().any(|l| l.starts_with("User=")), "cell-rep.service must run as root");
        let config: RepConfig = svc::config::from_file(&deploy("config/cell-rep.toml")).expect("the example parses");
        assert_eq!(config.data_dir, state_directory(&lines), "data_dir is the unit's StateDirectory");
    }
}

mod router_example {
    use ::router::RouterConfig;

    use super::*;

    #[test]
    fn every_field_is_listed_with_its_true_default() {
        assert_every_field_listed::<RouterConfig>("router.toml", &["", "tls"]);
    }

    #[test]
    fn the_example_loads_and_validates_with_real_certificates() {
        let config: RouterConfig = svc::config::from_file(&deploy("config/router.toml")).expect("the example parses");
        assert_reachable("bbs_address", &config.bbs_address);
        let (rewritten, stem) = with_test_certificates("router.toml", Role::Reader, "router");
        assert_tls_files(&config.tls, Path::new("/etc/diego/tls"), &stem);
        svc::config::from_file::<RouterConfig>(&rewritten)
            .and_then(RouterConfig::validate)
            .unwrap_or_else(|e| panic!("the example is refused: {e}"));
    }

    #[test]
    fn the_unit_runs_the_example_as_the_diego_user() {
        let lines = unit_lines(
            "router.service",
            &["ExecStart=/usr/local/bin/router --config /etc/diego/router.toml", "User=diego", "Restart=on-failure"],
        );
        let config = read(&deploy("config/router.toml"));
        assert!(config.contains("/etc/diego/tls/"), "config/router.toml names its TLS files under /etc/diego/tls");
        assert!(!lines.iter().any(|l| l.starts_with("StateDirectory=")), "the router writes nothing to disk");
    }
}
