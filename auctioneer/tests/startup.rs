//! The `auctioneer` binary's start: a refused configuration is one line on stderr and exit code 64;
//! a listen address in use is one line and exit code 69.

use std::process::Command;

#[test]
fn a_refused_configuration_is_one_line_and_exit_64() {
    let dir = std::env::temp_dir().join(format!("auctioneer-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("unknown.toml", "no_such_field = 1\n"),
        ("zero.toml", "lock_ttl = \"0s\"\n"),
        ("duration.toml", "lock_ttl = \"2 fortnights\"\n"),
    ];
    for (name, toml) in cases {
        let file = dir.join(name);
        std::fs::write(&file, toml).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_auctioneer")).arg("--config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line, not {stderr:?}");
        assert!(stderr.starts_with("auctioneer: "), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_listen_address_in_use_is_one_line_and_exit_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("auctioneer-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("taken.toml");
    std::fs::write(&file, format!("listen_address = \"{address}\"\nadmin_address = \"127.0.0.1:0\"\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_auctioneer")).arg("--config").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("auctioneer: cannot listen on ") && last.contains(&address.to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
