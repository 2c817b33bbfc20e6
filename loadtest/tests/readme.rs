//! The `benchmark-bbs` commands of the README's "benchmark-bbs" section, run as written (in a
//! scratch directory): each exits 0, the `--tls` run's report says TLS, and the `--compare-tls`
//! run's comparison carries the TLS/plaintext ratios of each of its rounds and their medians.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `benchmark-bbs` lines of the README's benchmark-bbs section, as arguments.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let section = readme.split("\n### benchmark-bbs\n").nth(1).expect("README has a ### benchmark-bbs section");
    let section = section.split("\n#").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.trim().strip_prefix("benchmark-bbs "))
        .map(|line| line.split(" #").next().unwrap_or(line).split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn json(path: PathBuf) -> serde_json::Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_readme_commands_work_as_documented() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 3, "{commands:?}");
    let cwd = std::env::temp_dir().join(format!("benchmark-bbs-readme-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).unwrap();
    for args in &commands {
        let output = Command::new(env!("CARGO_BIN_EXE_benchmark-bbs"))
            .args(args)
            .arg("--no-progress")
            .current_dir(&cwd)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{args:?}:\n{stdout}\n{stderr}");
    }

    // The --tls run: zero errors, its report says mutual TLS, the identities were issued there.
    let report = json(cwd.join("bench-tls/report.json"));
    assert_eq!(report["config"]["tls"], true);
    assert_eq!(report["target"]["tls"], true);
    let errors: u64 =
        report["operations"].as_array().unwrap().iter().map(|o| o["summary"]["errors"].as_u64().unwrap()).sum();
    assert_eq!(errors, 0);
    for file in ["ca.pem", "bbs.pem", "benchmark.pem", "cell-0.pem", "cell-2.pem"] {
        assert!(cwd.join("bench-tls/tls").join(file).exists(), "bench-tls/tls/{file}");
    }

    // The sweep: its three files, a row per size.
    let sweep = json(cwd.join("bench-sweep/sweep.json"));
    let sweep_text = serde_json::to_string(&sweep).unwrap();
    assert!(sweep_text.contains("200") && sweep_text.contains("400"), "{sweep_text}");
    for file in ["sweep.svg", "sweep.md"] {
        assert!(cwd.join("bench-sweep").join(file).exists(), "bench-sweep/{file}");
    }

    // The comparison: every run of its rounds passed and every headline ratio is there.
    let comparison = json(cwd.join("bench-compare/comparison.json"));
    assert_eq!((comparison["plaintext_ok"].as_bool(), comparison["tls_ok"].as_bool()), (Some(true), Some(true)));
    assert_eq!(comparison["target_ratio"], 1.2);
    let rounds = comparison["rounds"].as_array().unwrap().len();
    assert_eq!(comparison["order"].as_array().unwrap().len(), 2 * rounds);
    let headline = comparison["headline"].as_array().unwrap();
    let names: Vec<&str> = headline.iter().map(|h| h["operation"].as_str().unwrap()).collect();
    assert_eq!(names, ["RepBulkFetching", "SeedDesireLRP", "RepStartActualLRP"]);
    for h in headline {
        let summary = &h["summary"];
        assert_eq!(summary["p50_ratio"]["per_round"].as_array().unwrap().len(), rounds, "{h}");
        assert!(summary["p50_ratio"]["median"].as_f64().unwrap() > 0.0, "{h}");
        assert!(summary["mean_ratio"]["median"].as_f64().unwrap() > 0.0, "{h}");
        assert!(h["within_target"].is_boolean(), "{h}");
    }
    assert!(comparison["operations"].as_array().unwrap().len() >= 8);
    for round in 1..=rounds {
        let dir = cwd.join(format!("bench-compare/round-{round}"));
        assert_eq!(json(dir.join("plaintext/report.json"))["target"]["tls"], false);
        assert_eq!(json(dir.join("mutual-tls/report.json"))["target"]["tls"], true);
    }
    assert!(cwd.join("bench-compare/comparison.txt").exists());
    let _ = std::fs::remove_dir_all(&cwd);
}
