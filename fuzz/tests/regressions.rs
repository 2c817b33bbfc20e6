//! Replays, without libFuzzer, every committed input of every target: the seeds in
//! `corpus/<target>/seed-*` and the crashes found before in `regressions/<target>/*`. Run from
//! `fuzz/` with `cargo test`. Also checks that the `requests` target covers every RPC.
//!
//! Inputs named `oom-*` make the code allocate gigabytes until their bug is fixed; they are
//! replayed only with `DIEGO_FUZZ_OOM=1` (or with `cargo fuzz run <target> <file>`, where
//! libFuzzer's `-rss_limit_mb` reports them).

use std::path::Path;

fn run(target: &str, data: &[u8]) {
    match target {
        "requests" => diego_fuzz::requests(data),
        "desired_lrp" => diego_fuzz::desired_lrp(data),
        "task_definition" => diego_fuzz::task_definition(data),
        "cli_files" => diego_fuzz::cli_files(data),
        other => panic!("unknown target {other}"),
    }
}

/// The files of `dir` (none when it does not exist), sorted.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn seeds_and_regressions_replay_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in diego_fuzz::seeds::TARGETS {
        let regressions = files(&root.join("regressions").join(target));
        let seeds = files(&root.join("corpus").join(target));
        let seeds =
            seeds.into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")));
        for path in regressions.into_iter().chain(seeds) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(".md") || (name.starts_with("oom-") && std::env::var_os("DIEGO_FUZZ_OOM").is_none()) {
                eprintln!("{target}: skipping {}", path.display());
                continue;
            }
            let data = std::fs::read(&path).expect("read an input");
            eprintln!("{target}: {}", path.display());
            run(target, &data);
        }
    }
}

#[test]
fn generated_seeds_replay_without_panicking() {
    for target in diego_fuzz::seeds::TARGETS {
        let seeds = diego_fuzz::seeds::corpus(target);
        assert!(!seeds.is_empty(), "{target} has seeds");
        for (_, data) in seeds {
            run(target, &data);
        }
    }
}

#[test]
fn the_seeds_are_accepted_where_they_should_be() {
    use prost::Message;
    // The shallow desired LRPs and task definitions are valid; past MAX_ACTION_DEPTH the bounds
    // refuse them.
    for depth in [1, 8, 31] {
        let lrp = diego_fuzz::seeds::desired_lrp("web", depth);
        proto::bounds::check_message("diego.models.v1.DesiredLRP", &lrp.encode_to_vec()).expect("bounds");
        proto::models::DesiredLrp::try_from(lrp).expect("a valid desired LRP");
        let task = diego_fuzz::seeds::task_definition(depth);
        proto::models::TaskDefinition::try_from(task).expect("a valid task definition");
    }
    let deep = diego_fuzz::seeds::desired_lrp("web", 40).encode_to_vec();
    assert!(proto::bounds::check_message("diego.models.v1.DesiredLRP", &deep).is_err());
}

#[test]
fn the_requests_target_covers_every_rpc() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(proto::pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut wanted = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                wanted.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    let have: Vec<&str> = diego_fuzz::RPCS.iter().map(|r| r.path).collect();
    for path in &wanted {
        assert!(have.contains(&path.as_str()), "the requests target misses {path}");
    }
    for path in &have {
        assert!(wanted.iter().any(|w| w == path), "the requests target names an unknown RPC {path}");
    }
    assert!(have.len() < 256, "the selector byte picks among at most 256 RPCs");
}
