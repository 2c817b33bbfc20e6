//! The `benchmark-bbs` binary's start: a refused configuration is one line on stderr and exit
//! code 64, before anything is started or written.

use std::process::Command;

#[test]
fn a_refused_configuration_is_one_line_and_exit_64() {
    for args in [["--cells", "0"], ["--percent-writes", "101"], ["--trials", "0"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_benchmark-bbs")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, not {stderr:?}");
        assert!(stderr.starts_with("benchmark-bbs: "), "{stderr}");
    }
}

#[test]
fn a_refused_smoke_configuration_is_one_line_and_exit_64() {
    for args in [["smoke", "--apps", "0"], ["smoke", "--cells", "0"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_benchmark-bbs")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, not {stderr:?}");
        assert!(stderr.starts_with("benchmark-bbs: "), "{stderr}");
    }
}
