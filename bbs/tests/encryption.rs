//! Encryption at rest through the API: an LRP and a task desired over gRPC with a marker secret
//! in their environment, image password and arguments are read back whole by an operator, and the
//! marker is nowhere in the database (SQLite's file and log; every column of PostgreSQL and
//! MySQL), on every backend.

#[macro_use]
mod common;

use common::wire::Server;
use db::Backend;
use db::testing::TestDb;
use db::testing::inspect::{dump, holds};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

on_every_backend!(secrets_desired_over_grpc_never_reach_the_database_in_the_clear);

const SECRET: &str = "grpcs3cretmarkerqz9";

fn env() -> Vec<pb::EnvironmentVariable> {
    vec![pb::EnvironmentVariable { name: "DB_PASSWORD".into(), value: SECRET.into() }]
}

fn run_action() -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/bin/app".into(),
            args: vec![format!("--token={SECRET}")],
            ..Default::default()
        })),
    }
}

async fn secrets_desired_over_grpc_never_reach_the_database_in_the_clear(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let data_dir = std::env::temp_dir().join(format!("bbs-encryption-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = Server::start(&db.url, |c| c.data_dir = data_dir.clone()).await;
    let mut client = server.leader_client().await;
    let lrp = pb::DesiredLrp {
        process_guid: "lrp-secret".into(),
        domain: "secrets".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 1,
        memory_mb: 64,
        disk_mb: 64,
        environment_variables: env(),
        image_username: "user".into(),
        image_password: SECRET.into(),
        action: Some(run_action()),
        ..Default::default()
    };
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.unwrap();
    let definition = pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        environment_variables: env(),
        action: Some(run_action()),
        ..Default::default()
    };
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "task-secret".into(),
            domain: "secrets".into(),
        })
        .await
        .unwrap();

    // An operator reads the secrets back whole.
    let read = client
        .desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: "lrp-secret".into() })
        .await
        .unwrap()
        .into_inner()
        .desired_lrp
        .unwrap();
    assert_eq!(read.image_password, SECRET);
    assert_eq!(read.environment_variables, env());
    let task = client
        .task_by_guid(api::TaskByGuidRequest { task_guid: "task-secret".into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(task.task_definition.unwrap().environment_variables, env());

    server.stop().await;
    let dump = dump(&db).await;
    assert!(holds(&dump, "lrp-secret") && holds(&dump, "task-secret"), "the search must see the plain columns");
    assert!(!holds(&dump, SECRET), "a secret desired over gRPC reached the {} database in the clear", backend.name());
    let _ = std::fs::remove_dir_all(&data_dir);
}
