//! Desired LRPs and tasks the end-to-end tests run: programs from busybox-static, so no test
//! downloads anything.

use proto::pb::models::v1 as pb;

/// The busybox binary every fixture runs (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// A run action of `sh -c script` under busybox.
pub fn shell(script: &str) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: BUSYBOX.into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            user: "root".into(),
            log_source: "APP".into(),
            ..Default::default()
        })),
    }
}

/// A TCP check on `port`.
pub fn tcp_check(port: u32) -> pb::Check {
    pb::Check { tcp_check: Some(pb::TcpCheck { port, connect_timeout_ms: 500, interval_ms: 200 }), http_check: None }
}

/// An HTTP server on `$PORT` (busybox httpd serving a page naming its index) with a TCP check.
pub fn http_lrp(guid: &str, instances: i32) -> pb::DesiredLrp {
    let script = "mkdir -p www && echo \"instance $INSTANCE_INDEX\" > www/index.html && exec /bin/busybox httpd -f -p $PORT -h www";
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 64,
        disk_mb: 64,
        ports: vec![8080],
        action: Some(shell(script)),
        check_definition: Some(pb::CheckDefinition { checks: vec![tcp_check(8080)], ..Default::default() }),
        start_timeout_ms: 30_000,
        ..Default::default()
    }
}

/// A task running `script`.
pub fn task(script: &str) -> pb::TaskDefinition {
    pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        action: Some(shell(script)),
        memory_mb: 32,
        disk_mb: 32,
        ..Default::default()
    }
}

/// A long-running LRP of `script` with no ports, checks or monitor.
pub fn plain_lrp(guid: &str, instances: i32, action: pb::Action) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 32,
        disk_mb: 32,
        action: Some(action),
        ..Default::default()
    }
}
