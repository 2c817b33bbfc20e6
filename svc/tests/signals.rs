//! Signals become cancellations: SIGUSR1 cancels the token of [`svc::signals::on_sigusr1`] and not
//! the shutdown one. (A test binary of its own: the signal goes to the whole process.)

use std::time::Duration;

#[tokio::test]
async fn sigusr1_cancels_its_token_only() {
    let shutdown = svc::signals::on_terminate();
    let evacuate = svc::signals::on_sigusr1();
    let status =
        std::process::Command::new("kill").args(["-USR1", &std::process::id().to_string()]).status().expect("run kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), evacuate.cancelled()).await.expect("SIGUSR1 cancels its token");
    assert!(!shutdown.is_cancelled(), "SIGUSR1 is not a shutdown");
}
