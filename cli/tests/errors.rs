//! Exit codes and one-line errors that hold for every command: an unreachable BBS (3), usage
//! errors (2), the address from the environment or either flag spelling, and the help text.

#[path = "support/harness.rs"]
mod harness;

use harness::{Bbs, diego, diego_with_env, diego_without_certificates};

/// One invocation of every command that talks to a BBS.
const EVERY_COMMAND: &[&[&str]] = &[
    &["desire-lrp", "--guid", "web", "--command", "true"],
    &["scale", "web", "2"],
    &["remove-lrp", "web"],
    &["retire", "web", "0"],
    &["lrps"],
    &["lrp", "web"],
    &["desire-task", "--guid", "t1", "--command", "true"],
    &["tasks"],
    &["task", "t1"],
    &["cancel-task", "t1"],
    &["cells"],
    &["domains"],
    &["upsert-domain", "apps"],
    &["events"],
    &["events", "--tasks"],
    &["logs", "web"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_exits_3_with_one_line_when_the_bbs_is_unreachable() {
    let address = harness::dead_address();
    for command in EVERY_COMMAND {
        for json in [false, true] {
            let mut args = vec!["--bbs-address", address.as_str()];
            args.extend_from_slice(command);
            if json {
                args.push("--json");
            }
            let out = diego(&args).await;
            let line = out.fails(3);
            assert_eq!(
                line,
                format!(
                    "error: cannot reach the bbs at {address}: connection refused; \
                     start one with 'diego dev' or set --bbs-address"
                ),
                "{command:?}"
            );
            assert!(out.stdout.is_empty(), "{command:?}: {out:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_comes_from_either_flag_or_the_environment() {
    let bbs = Bbs::start().await;
    diego(&["--bbs-address", &bbs.address, "upsert-domain", "a"]).await.ok();
    diego(&["--bbs-url", &bbs.address, "upsert-domain", "b"]).await.ok();
    diego(&["domains", "--bbs-url", &format!("http://{}", bbs.address)]).await.ok();
    let out = diego_with_env(&["domains", "--json"], &[("DIEGO_BBS_ADDRESS", &bbs.address)]).await;
    assert_eq!(out.json(), serde_json::json!(["a", "b"]));
    // The flag wins over the environment.
    let dead = harness::dead_address();
    let out = diego_with_env(&["--bbs-address", &bbs.address, "domains"], &[("DIEGO_BBS_ADDRESS", &dead)]).await;
    out.ok();
    let out = diego_with_env(&["domains"], &[("DIEGO_BBS_ADDRESS", &dead)]).await;
    assert!(out.fails(3).contains(&dead), "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_address_is_a_usage_error() {
    for address in ["nope", "host:port", "ftp://127.0.0.1:8889", ":8889"] {
        let out = diego(&["--bbs-address", address, "lrps"]).await;
        let line = out.fails(2);
        assert!(line.starts_with(&format!("error: invalid bbs address {address:?}: ")), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_help_exits_0_with_the_exit_codes() {
    for args in [
        &[][..],
        &["no-such-command"][..],
        &["lrps", "--no-such-flag"][..],
        &["scale", "web"][..],
        &["scale", "web", "lots"][..],
        &["retire", "web", "-1"][..],
        &["desire-lrp", "--guid", "web"][..],
        &["desire-lrp", "--guid", "web", "--command", "x", "--health-check", "grpc"][..],
        &["events", "--tasks", "--cell", "c"][..],
        &["lrp"][..],
    ] {
        let out = diego(args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: ") || out.stderr.contains("Usage: "), "{args:?}: {out:?}");
    }
    let help = diego(&["--help"]).await;
    let text = help.ok();
    for expected in
        ["Exit codes:", "1  the BBS refused", "3  the BBS is unreachable", "DIEGO_BBS_ADDRESS", "desire-lrp"]
    {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let help = diego(&["desire-lrp", "--help"]).await;
    assert!(help.ok().contains("--bbs-url"), "{help:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_ends_quietly() {
    // `diego domains | true`: the reader is gone before diego writes.
    let bbs = Bbs::start().await;
    diego(&["--bbs-address", &bbs.address, "upsert-domain", "apps"]).await.ok();
    let mut child = bbs.spawn_diego(&["domains"]);
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    harness::assert_no_panic(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_needs_a_usable_certificate_and_says_why_in_one_line() {
    let bbs = Bbs::start().await;
    let dir = harness::scratch("tls-errors");
    let pki = svc::pki::Pki::for_tests();
    let path = |p: &std::path::Path| p.display().to_string();
    // No flags, no environment, no `diego dev` here: a usage error naming the ways to give one.
    let out = diego_without_certificates(&dir, &["--bbs-address", &bbs.address, "lrps"]).await;
    let line = out.fails(2);
    assert!(line.contains("no client certificate") && line.contains("--tls-ca"), "{line}");

    // A certificate of another CA: the BBS refuses it.
    let other = svc::certs::Ca::generate().unwrap();
    let operator = svc::identity::Identity::parse_uri("diego://operator/mallory").unwrap();
    let (cert, key) =
        other.issue(&operator, &[], svc::certs::Validity::Days(1)).unwrap().write(&dir, "mallory").unwrap();
    let ca = pki.ca_path();
    let flags = |ca: &str, cert: &str, key: &str| -> Vec<String> {
        ["--bbs-address", &bbs.address, "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key, "lrps"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let args = flags(&path(&ca), &path(&cert), &path(&key));
    let out = diego_without_certificates(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let line = out.fails(3);
    // TLS 1.3 tells a client its certificate was refused only after the handshake: the alert
    // arrives ("refused our certificate (unknown CA)"), or, when the server's close wins the
    // race, only the broken connection (closed, reset, broken pipe). Either way: unreachable.
    assert!(line.starts_with(&format!("error: cannot reach the bbs at {}: ", bbs.address)), "{line}");

    // Our certificate, but trusting another CA: the BBS's certificate is not signed by it.
    let mine = pki.test_tls(svc::identity::Role::Operator, harness::OPERATOR);
    other.write(&dir.join("other-ca")).unwrap();
    let args = flags(&path(&dir.join("other-ca").join("ca.pem")), &path(&mine.cert), &path(&mine.key));
    let out = diego_without_certificates(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let line = out.fails(3);
    assert!(line.contains("is not signed by the cluster CA"), "{line}");

    // An expired certificate of ours is refused before anything is sent.
    let (cert, key) =
        pki.ca().issue(&operator, &[], svc::certs::Validity::expired()).unwrap().write(&dir, "old").unwrap();
    let args = flags(&path(&ca), &path(&cert), &path(&key));
    let out = diego_without_certificates(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let line = out.fails(2);
    assert!(line.contains("expired"), "{line}");

    // Plaintext against a TLS BBS does not get through.
    let out = diego_without_certificates(&dir, &["--bbs-address", &bbs.address, "--insecure-plaintext", "lrps"]).await;
    out.fails(3);
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_operator_may_list_but_not_desire() {
    let bbs = Bbs::start().await;
    let reader = svc::pki::Pki::for_tests().test_tls(svc::identity::Role::Reader, "auditor");
    let env = [
        ("DIEGO_TLS_CA", reader.ca.to_str().unwrap()),
        ("DIEGO_TLS_CERT", reader.cert.to_str().unwrap()),
        ("DIEGO_TLS_KEY", reader.key.to_str().unwrap()),
    ];
    let address = bbs.address.clone();
    diego_with_env(&["--bbs-address", &address, "lrps"], &env).await.ok();
    let out =
        diego_with_env(&["--bbs-address", &address, "desire-lrp", "--guid", "web", "--command", "true"], &env).await;
    let line = out.fails(1);
    assert!(line.contains("diego://reader/auditor") && line.contains("DesireLRP"), "{line}");
    // Nothing was written.
    let listed = diego(&["--bbs-address", &address, "lrps", "--json"]).await.json();
    assert_eq!(listed, serde_json::json!([]));
    bbs.stop().await;
}
