//! `examples/router.toml` and `deploy/config/router.toml`: every field of the router's
//! configuration is listed with its true default (a line `# field = value`), and each file parses
//! as the router's loader reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use router::RouterConfig;

fn file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// The documented defaults by table ("" for the top level).
fn documented(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::from([(String::new(), Vec::new())]);
    let mut table = String::new();
    for line in text.lines() {
        let bare = line.strip_prefix("# ").unwrap_or(line);
        if bare.starts_with('[') && bare.ends_with(']') {
            table = bare.trim_matches(['[', ']']).to_owned();
            tables.entry(table.clone()).or_default();
            continue;
        }
        let is_default = line.starts_with("# ")
            && bare.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if is_default {
            tables.entry(table.clone()).or_default().push(bare.to_owned());
        }
    }
    tables
}

/// The fields serde knows at the top level and in `[tls]`, from its refusal of an unknown one.
fn known(table: &str) -> BTreeSet<String> {
    let probe = if table.is_empty() { "zz_unknown = 0".to_owned() } else { format!("[{table}]\nzz_unknown = 0") };
    let error = toml::from_str::<RouterConfig>(&probe).expect_err("an unknown field is refused").to_string();
    let expected = &error[error.find("expected").expect("a field list")..];
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn check(relative: &str) {
    let text = std::fs::read_to_string(file(relative)).expect("the file");
    let tables = documented(&text);
    let mut defaults = tables[""].join("\n");
    defaults.push_str(&format!("\n[tls]\n{}", tables["tls"].join("\n")));
    let parsed: RouterConfig = toml::from_str(&defaults).unwrap_or_else(|e| panic!("{relative}: {e}"));
    assert_eq!(parsed, RouterConfig::default(), "{relative}: a documented default is not the default");
    for table in ["", "tls"] {
        let mut listed: BTreeSet<String> =
            tables[table].iter().filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_owned())).collect();
        if table.is_empty() {
            listed.insert("tls".into());
        }
        assert_eq!(listed, known(table), "{relative}: the fields of [{table}] listed vs known");
    }
    svc::config::from_file::<RouterConfig>(&file(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
}

#[test]
fn the_example_and_deploy_configs_list_every_field_with_its_default() {
    check("examples/router.toml");
    check("deploy/config/router.toml");
}
