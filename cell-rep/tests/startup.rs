//! The `cell-rep` binary's start: a refused configuration is one line on stderr and exit code 64;
//! a listen address in use is one line and exit code 69.

use std::process::Command;

#[test]
fn a_refused_configuration_is_one_line_and_exit_64() {
    let dir = std::env::temp_dir().join(format!("cell-rep-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("unknown.toml", "cell_id = \"c1\"\nno_such_field = 1\n"),
        ("no-cell-id.toml", "zone = \"z1\"\n"),
        ("runtime.toml", "cell_id = \"c1\"\nruntime = \"docker\"\n"),
    ];
    for (name, toml) in cases {
        let file = dir.join(name);
        std::fs::write(&file, toml).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_cell-rep")).arg("--config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line, not {stderr:?}");
        assert!(stderr.starts_with("cell-rep: "), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_listen_address_in_use_is_one_line_and_exit_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("cell-rep-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("taken.toml");
    let toml = format!("cell_id = \"c1\"\nlisten_address = \"{address}\"\nadmin_address = \"127.0.0.1:0\"\n");
    std::fs::write(&file, toml).unwrap();
    // The certificates come from DIEGO_TLS_CA, DIEGO_TLS_CERT and DIEGO_TLS_KEY.
    let tls = svc::pki::Pki::for_tests().test_tls(svc::identity::Role::Cell, "c1");
    let output = Command::new(env!("CARGO_BIN_EXE_cell-rep"))
        .arg("--config")
        .arg(&file)
        .env("DIEGO_TLS_CA", &tls.ca)
        .env("DIEGO_TLS_CERT", &tls.cert)
        .env("DIEGO_TLS_KEY", &tls.key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("cell-rep: cannot listen on ") && last.contains(&address.to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_certificates_it_refuses_to_start_naming_tls() {
    let dir = std::env::temp_dir().join(format!("cell-rep-startup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plain.toml");
    std::fs::write(&file, "cell_id = \"c1\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cell-rep"))
        .arg("--config")
        .arg(&file)
        .env_remove("DIEGO_TLS_CA")
        .env_remove("DIEGO_TLS_CERT")
        .env_remove("DIEGO_TLS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tls") && stderr.contains("--insecure-plaintext"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
