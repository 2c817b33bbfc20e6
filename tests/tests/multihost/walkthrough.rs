//! The deploy guide, followed as written: docs/deploy.md's ```sh blocks run, in order, on the
//! hosts `control`, `auction` and `cell-1` their sections name, from a release tarball laid out
//! as scripts/release.sh lays it out, until the demo app answers on the cell. What a test cannot
//! do literally (install packages, systemd, ssh, the machine's /etc) is done by the rules of
//! `tests::hosts::walkthrough::RULES`, printed at the end with how often each was used; a
//! command no rule covers fails, so the guide cannot drift from what runs.
//!
//! Needs what every multi-host test needs, PostgreSQL at `DIEGO_TEST_POSTGRES_URL` (the guide's
//! role and database are made there under a name of the test's own, and dropped), psql, and the
//! binaries built: `cargo build -p bbs -p auctioneer -p cell-rep -p cli`.

use db::testing::{POSTGRES_URL_VAR, REQUIRE_VAR};
use tests::hosts::Network;
use tests::hosts::walkthrough::{Guide, PgServer, RULES, Walkthrough};

/// The administrator's URL of the PostgreSQL server, or `None` (after saying why) to skip.
fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(std::env::var_os(REQUIRE_VAR).is_none(), "{POSTGRES_URL_VAR} is not set but {REQUIRE_VAR} is");
            eprintln!("skipping the deploy guide's walkthrough: {POSTGRES_URL_VAR} is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_guide_runs_as_written() {
    let guide = Guide::load();
    assert_eq!(guide.host_names(), ["control", "auction", "cell-1"], "the guide's cluster table");
    assert_eq!(guide.cells(), ["cell-1"], "the guide's cells");
    let Some(url) = postgres_url() else { return };
    let server = PgServer::parse(&url).unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: {e}"));
    let Some(net) = Network::start("the_deploy_guide_runs_as_written", &guide.host_names(), 29) else { return };
    let report = Walkthrough::start(&net, &guide, server).await.run().await;

    for rule in RULES {
        let used = report.per_rule.get(&rule.kind).copied().unwrap_or_default();
        eprintln!("multihost: deploy guide: rule {:<55} used {used:>2}x: {}", rule.written, rule.done);
    }
    for note in &report.notes {
        eprintln!("multihost: deploy guide: note: {note}");
    }
    eprintln!(
        "multihost: deploy guide: {} commands run, {} translated, {} checks passed in {:.1} s",
        report.run, report.translated, report.checks, report.seconds
    );
    // Every numbered step ran: the units started, the cluster answered, the app ran.
    assert!(report.per_rule.contains_key(&tests::hosts::walkthrough::Kind::EnableNow), "no unit was started");
    assert!(report.per_rule.contains_key(&tests::hosts::walkthrough::Kind::LrpRunning), "the app was not checked");
}
