//! The BBS through a real tonic client: an in-process `bbs::run` on 127.0.0.1:0 over a fresh
//! test database, on every configured backend. Covers the wire contract (status codes, the
//! `x-diego-error` and `x-diego-leader` metadata, validation naming the field), event streams,
//! Locket, health and reflection, standbys, and fencing of a deposed leader: one module per
//! behaviour ([`contract`], [`events`], [`leadership`]), the shared fixtures here.

#[macro_use]
mod common;

use std::time::Duration;

use common::wire::Server;
use db::Backend;
use db::testing::TestDb;
use futures::StreamExt;
use proto::error::{ERROR_METADATA_KEY, LEADER_METADATA_KEY};
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

#[path = "grpc_api/contract.rs"]
mod contract;
#[path = "grpc_api/events.rs"]
mod events;
#[path = "grpc_api/leadership.rs"]
mod leadership;

fn run_action() -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 1000".into()],
            user: "root".into(),
            ..Default::default()
        })),
    }
}

fn desired(guid: &str, instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp { action: Some(run_action()), ports: vec![8080], ..common::shell_lrp(guid, instances) }
}

fn diego_error(status: &tonic::Status) -> String {
    status.metadata().get(ERROR_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn instance_key(guid: &str, cell: &str) -> pb::ActualLrpInstanceKey {
    pb::ActualLrpInstanceKey { instance_guid: guid.into(), cell_id: cell.into() }
}

fn lrp_key(guid: &str, index: i32) -> pb::ActualLrpKey {
    pb::ActualLrpKey { process_guid: guid.into(), index, domain: "apps".into() }
}

fn net_info() -> pb::ActualLrpNetInfo {
    pb::ActualLrpNetInfo {
        address: "10.0.0.1".into(),
        ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
        ..Default::default()
    }
}
