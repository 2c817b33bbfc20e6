//! Domain-object fixtures the test suites share: one task definition every task test builds on,
//! varied per suite by the fields it cares about.

use proto::models::TaskDefinition;
use proto::pb::models::v1 as pb;

/// The wire form of the shared task definition: a `/bin/migrate` run action as `vcap` on
/// `preloaded:cflinuxfs4`, 512 MB of memory and 1024 MB of disk; every other field unset.
pub fn task_definition_pb() -> pb::TaskDefinition {
    pb::TaskDefinition {
        root_fs: "preloaded:cflinuxfs4".into(),
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/migrate".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        memory_mb: 512,
        disk_mb: 1024,
        ..Default::default()
    }
}

/// The shared task definition with `edit` applied to its wire form, validated into the domain
/// type. Panics when the edit makes it invalid (a broken fixture).
pub fn task_definition(edit: impl FnOnce(&mut pb::TaskDefinition)) -> TaskDefinition {
    let mut definition = task_definition_pb();
    edit(&mut definition);
    proto::convert::task_definition_from_pb(definition).expect("the task fixture is a valid definition")
}
