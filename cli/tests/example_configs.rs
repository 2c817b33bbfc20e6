//! The example configurations `examples/{bbs,auctioneer,cell-rep}.toml`, checked against each
//! binary's own configuration: every field the component knows is listed with its true default,
//! each file loads and validates through the loader its binary uses (`--config FILE` plus flags,
//! here the test CA's certificates standing in for /tmp/diego/tls), and the three run together as
//! examples/README.md says, each from its file with only the flags a second cluster on this
//! machine needs (free ports, scratch directories): the cell registers and runs a task.

#[path = "support/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use svc::config::tls::TlsFlags;
use svc::config::{ConfigFile, Flags};
use svc::identity::Role;
use svc::pki::Pki;
use tokio_util::sync::CancellationToken;

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The defaults a file documents, by table ("" for the top level): each `# field = value` line
/// uncommented, under its table header (commented or not).
fn documented_defaults(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut table = String::new();
    tables.insert(String::new(), Vec::new());
    for line in text.lines() {
        let bare = line.strip_prefix("# ").unwrap_or(line);
        if bare.starts_with('[') && bare.ends_with(']') {
            table = bare.trim_matches(['[', ']']).to_owned();
            tables.entry(table.clone()).or_default();
            continue;
        }
        let documented = line.starts_with("# ")
            && bare.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if documented {
            tables.entry(table.clone()).or_default().push(bare.to_owned());
        }
    }
    tables
}

/// The defaults as one TOML document.
fn as_toml(tables: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = tables.get("").map(|lines| lines.join("\n")).unwrap_or_default();
    for (table, lines) in tables.iter().filter(|(table, _)| !table.is_empty()) {
        text.push_str(&format!("\n[{table}]\n{}", lines.join("\n")));
    }
    text
}

/// Parses `text` as the component's config file does.
fn parse<C: DeserializeOwned>(dir: &Path, text: &str) -> Result<C, String> {
    let path = dir.join(format!("probe-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    let parsed = svc::config::from_file::<C>(&path).map_err(|e| e.to_string());
    std::fs::remove_file(&path).unwrap();
    parsed
}

/// The fields serde knows in `table` of `C`, from its refusal of an unknown one ("unknown
/// field `x`, expected one of `a`, `b`, ...").
fn known_fields<C: DeserializeOwned + Debug>(dir: &Path, table: &str) -> BTreeSet<String> {
    let probe = if table.is_empty() { "zz_unknown = 0".to_owned() } else { format!("[{table}]\nzz_unknown = 0") };
    let error = parse::<C>(dir, &probe).expect_err("an unknown field is refused");
    let expected = &error[error.find("expected").unwrap_or_else(|| panic!("no field list in: {error}"))..];
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Every field of `C` in `tables` is listed in `examples/<file>` with its true default.
fn assert_every_field_listed<C: DeserializeOwned + Default + Debug>(file: &str, tables: &[&str]) {
    let dir = harness::scratch(&format!("example-defaults-{file}"));
    let documented = documented_defaults(&read(&example(file)));
    let parsed: C = parse(&dir, &as_toml(&documented)).unwrap_or_else(|e| panic!("the defaults of {file}: {e}"));
    assert_eq!(
        format!("{parsed:#?}"),
        format!("{:#?}", C::default()),
        "a default documented in {file} is not the default"
    );
    for table in tables {
        // A table is a field of the level above it.
        let subtables = documented.keys().filter(|name| table.is_empty() && !name.is_empty()).cloned();
        let listed: BTreeSet<String> = documented
            .get(*table)
            .unwrap_or_else(|| panic!("{file} has no [{table}]"))
            .iter()
            .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.to_owned()))
            .chain(subtables)
            .collect();
        assert_eq!(listed, known_fields::<C>(&dir, table), "{file}: the fields of [{table}] listed vs known");
    }
}

/// The flags that put the test CA's certificate of `role` named `name` in place of the file's.
fn test_certificates(role: Role, name: &str) -> TlsFlags {
    let tls = Pki::for_tests().test_tls(role, name);
    TlsFlags { ca: Some(tls.ca), cert: Some(tls.cert), key: Some(tls.key), ..TlsFlags::default() }
}

/// `examples/<file>` through the binary's loader (`--config FILE` and `overrides`).
fn load<C: ConfigFile>(file: &str, overrides: C::Overrides) -> svc::config::Valid<C> {
    C::from_flags(Flags { config: Some(example(file)), overrides })
        .unwrap_or_else(|e| panic!("examples/{file} is refused: {e}"))
}

#[test]
fn every_field_of_the_example_configs_is_listed_with_its_true_default() {
    assert_every_field_listed::<bbs::config::BbsConfig>("bbs.toml", &["", "tls", "locket"]);
    assert_every_field_listed::<auctioneer::AuctioneerConfig>("auctioneer.toml", &["", "tls"]);
    assert_every_field_listed::<cell_rep::RepConfig>("cell-rep.toml", &["", "logs", "tls"]);
    assert_every_field_listed::<router::RouterConfig>("router.toml", &["", "tls"]);
}

#[test]
fn the_example_configs_load_and_validate_as_the_binaries_load_them() {
    let bbs: bbs::config::BbsConfig = svc::config::from_file(&example("bbs.toml")).expect("bbs.toml parses");
    assert_eq!(
        (bbs.data_dir.as_path(), bbs.tls.cert.as_path()),
        (Path::new("/tmp/diego"), Path::new("/tmp/diego/tls/bbs.pem"))
    );
    let overrides = bbs::config::ConfigOverrides { tls: test_certificates(Role::Bbs, ""), ..Default::default() };
    let loaded = load::<bbs::config::BbsConfig>("bbs.toml", overrides);
    assert_eq!(loaded.effective_database_url(), "sqlite:///tmp/diego/bbs.db");
    assert_eq!(loaded.listen_address, "127.0.0.1:8889");

    let overrides = auctioneer::ConfigOverrides { tls: test_certificates(Role::Auctioneer, ""), ..Default::default() };
    let loaded = load::<auctioneer::AuctioneerConfig>("auctioneer.toml", overrides);
    assert_eq!(loaded.bbs_address, "127.0.0.1:8889");

    let overrides = cell_rep::ConfigOverrides { tls: test_certificates(Role::Cell, "cell-1"), ..Default::default() };
    let loaded = load::<cell_rep::RepConfig>("cell-rep.toml", overrides);
    assert_eq!((loaded.cell_id.as_str(), loaded.data_dir.as_path()), ("cell-1", Path::new("/tmp/cell-1")));
    // Without the flags, the files name certificates `diego certs` has not made here: refused,
    // naming the file's certificate.
    if !Path::new("/tmp/diego/tls/ca.pem").exists() {
        let refused = cell_rep::RepConfig::from_flags(Flags {
            config: Some(example("cell-rep.toml")),
            overrides: cell_rep::ConfigOverrides::default(),
        })
        .expect_err("the certificates are missing");
        assert!(refused.to_string().contains("tls"), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_example_configs_run_a_cluster_together() {
    let dir = harness::scratch("example-configs-cluster");
    let shutdown = CancellationToken::new();
    let free = || Some("127.0.0.1:0".to_owned());

    // bbs --config examples/bbs.toml --data-dir DIR --listen-address ... --tls-* ...
    let overrides = bbs::config::ConfigOverrides {
        data_dir: Some(dir.join("bbs")),
        listen_address: free(),
        admin_address: free(),
        tls: test_certificates(Role::Bbs, ""),
        ..Default::default()
    };
    let config = load::<bbs::config::BbsConfig>("bbs.toml", overrides);
    std::fs::create_dir_all(dir.join("bbs")).unwrap();
    let listeners = svc::process::bind_listeners(&config.listen_address, &config.admin_address).await.unwrap();
    let bbs_address = listeners.grpc.local_addr().unwrap().to_string();
    let bbs_task = tokio::spawn(bbs::run(config, listeners, bbs::Overrides::default(), shutdown.clone()));

    // auctioneer --config examples/auctioneer.toml --bbs-address ... --listen-address ... --tls-* ...
    let overrides = auctioneer::ConfigOverrides {
        bbs_address: Some(bbs_address.clone()),
        listen_address: free(),
        admin_address: free(),
        tls: test_certificates(Role::Auctioneer, ""),
    };
    let config = load::<auctioneer::AuctioneerConfig>("auctioneer.toml", overrides);
    let listeners = svc::process::bind_listeners(&config.listen_address, &config.admin_address).await.unwrap();
    let auctioneer_task = tokio::spawn(auctioneer::run(config, listeners, shutdown.clone()));

    // cell-rep --config examples/cell-rep.toml --bbs-address ... --data-dir ... --tls-* ...
    let overrides = cell_rep::ConfigOverrides {
        bbs_address: Some(bbs_address.clone()),
        listen_address: free(),
        admin_address: free(),
        data_dir: Some(dir.join("cell-1")),
        tls: test_certificates(Role::Cell, "cell-1"),
        ..Default::default()
    };
    let config = load::<cell_rep::RepConfig>("cell-rep.toml", overrides);
    let listeners = svc::process::bind_listeners(&config.listen_address, &config.admin_address).await.unwrap();
    let rep_task = tokio::spawn(cell_rep::rep::run(config, listeners, shutdown.clone()));

    // The SQLite file is where data_dir puts it; the cell registers; a task runs on it.
    let diego = |args: &'static [&'static str]| {
        let address = bbs_address.clone();
        async move { harness::diego(&[&["--bbs-address", address.as_str()], args].concat()).await }
    };
    let cells = eventually("cell-1 in 'diego cells'", || async {
        let run = diego(&["cells", "--json"]).await;
        (run.code == 0 && run.stdout.contains("cell-1")).then_some(run.stdout)
    })
    .await;
    assert!(cells.contains("cell-1"), "{cells}");
    assert!(dir.join("bbs").join("bbs.db").exists(), "the SQLite file in data_dir");
    diego(&["desire-task", "--guid", "on-cell-1", "--command", "echo ran > out", "--result-file", "out"]).await.ok();
    let task = eventually("the task COMPLETED", || async {
        let task = diego(&["task", "on-cell-1", "--json"]).await.json();
        (task["state"] == "COMPLETED").then_some(task)
    })
    .await;
    // cell-1 is the only cell: the task ran there.
    assert_eq!((task["failed"].as_bool(), task["result"].as_str()), (Some(false), Some("ran\n")), "{task}");

    shutdown.cancel();
    let limit = Duration::from_secs(30);
    let bbs = tokio::time::timeout(limit, bbs_task).await.expect("the bbs stops in time").expect("no panic");
    let auctioneer = tokio::time::timeout(limit, auctioneer_task).await.expect("stops in time").expect("no panic");
    let rep = tokio::time::timeout(limit, rep_task).await.expect("the rep stops in time").expect("no panic");
    assert!(bbs.is_ok() && auctioneer.is_ok() && rep.is_ok(), "{bbs:?} {auctioneer:?} {rep:?}");
}

/// Polls `probe` every 200 ms for at most 60 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never happened within 60 s: {what}");
}
