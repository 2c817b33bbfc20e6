//! `events`: follows the BBS's instance (or task) event stream and prints one line per event:
//! `TIME SEQUENCE TYPE DETAILS` for people (the time the CLI received the event, RFC 3339 in
//! UTC), one JSON object per line with `--json` (the same time as `time`). It runs until
//! Ctrl-C (exit 0), a closed output pipe (exit 0), or the stream ends (exit 3; exit 1 when the
//! BBS closed it with an error, such as a subscriber that fell too far behind).

use std::io::Write;

use clap::Args;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde_json::{Value, json};

use super::validate;
use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format, or_dash};
use crate::views::{InstanceView, TaskView};

/// `events [--cell C] [--tasks]`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only instance events that concern this cell.
    #[arg(long, value_name = "CELL", value_parser = validate::cell_id)]
    pub cell: Option<String>,
    /// Follow task events instead of LRP events.
    #[arg(long, conflicts_with = "cell")]
    pub tasks: bool,
}

/// One event, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The event's type: the proto's oneof field name (`actual_lrp_instance_changed`).
    pub kind: &'static str,
    /// The details for people.
    pub text: String,
    /// The details for scripts (merged with `sequence` and `type`).
    pub json: Value,
}

impl Rendered {
    fn line(&self, sequence: u64, received_ns: i64, format: Format) -> String {
        let time = output::rfc3339(received_ns);
        match format {
            Format::Table => format!("{time} {sequence} {} {}", self.kind, self.text),
            Format::Json => {
                let mut object = json!({ "time": time, "sequence": sequence, "type": self.kind });
                if let (Some(target), Value::Object(fields)) = (object.as_object_mut(), &self.json) {
                    target.extend(fields.clone());
                }
                object.to_string()
            }
        }
    }
}

/// Follows the stream until it ends or Ctrl-C.
pub async fn follow(bbs: &Bbs, args: &EventsArgs, format: Format) -> Result<(), Error> {
    let what = if args.tasks { "task" } else { "lrp" };
    if args.tasks {
        let stream = bbs.unary(bbs.raw().subscribe_to_task_events(api::SubscribeToTaskEventsRequest {})).await?;
        announce(what, bbs);
        pump(bbs, stream, format, |e: pb::TaskEvent| (e.sequence, e.event.map(render_task))).await
    } else {
        let request = api::SubscribeToInstanceEventsRequest { cell_id: args.cell.clone().unwrap_or_default() };
        let stream = bbs.unary(bbs.raw().subscribe_to_instance_events(request)).await?;
        announce(what, bbs);
        pump(bbs, stream, format, |e: pb::InstanceEvent| (e.sequence, e.event.map(render_instance))).await
    }
}

/// Tells a person (on standard error, so scripts reading standard output see only events) that
/// the subscription is in place.
fn announce(what: &str, bbs: &Bbs) {
    let _ = writeln!(std::io::stderr(), "following {what} events from the bbs at {} (ctrl-c to stop)", bbs.address());
}

async fn pump<T>(
    bbs: &Bbs,
    mut stream: tonic::Streaming<T>,
    format: Format,
    render: impl Fn(T) -> (u64, Option<Rendered>),
) -> Result<(), Error> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            next = stream.message() => next,
        };
        match next {
            Ok(Some(event)) => {
                if let (sequence, Some(rendered)) = render(event) {
                    output::print(&rendered.line(sequence, output::now_ns(), format))?;
                }
            }
            Ok(None) => {
                return Err(Error::StreamEnded {
                    address: bbs.address().to_owned(),
                    reason: "the bbs closed it; subscribe again".into(),
                });
            }
            Err(status) => {
                return Err(match bbs.status_error(&status) {
                    Error::Unreachable { address, reason } => Error::StreamEnded { address, reason },
                    other => other,
                });
            }
        }
    }
}

/// `web/0`.
fn key_label(key: &Option<pb::ActualLrpKey>) -> String {
    key.as_ref().map_or_else(|| "?".to_owned(), |k| format!("{}/{}", k.process_guid, k.index))
}

/// An actual LRP from an instance-changed event's key and one side of its change.
fn from_info(
    key: &Option<pb::ActualLrpKey>,
    instance: &Option<pb::ActualLrpInstanceKey>,
    info: Option<pb::ActualLrpInfo>,
) -> InstanceView {
    let info = info.unwrap_or_default();
    InstanceView::new(&pb::ActualLrp {
        actual_lrp_key: key.clone(),
        actual_lrp_instance_key: instance.clone(),
        actual_lrp_net_info: info.actual_lrp_net_info,
        crash_count: info.crash_count,
        crash_reason: info.crash_reason,
        state: info.state,
        placement_error: info.placement_error,
        since: info.since,
        presence: info.presence,
        ..Default::default()
    })
}

/// Where an instance is, for a line: ` on cell-1 at 10.0.0.1:61001->8080`.
fn whereabouts(view: &InstanceView) -> String {
    let mut text = String::new();
    if !view.cell_id.is_empty() {
        text.push_str(&format!(" on {}", view.cell_id));
    }
    let endpoints = view.endpoints();
    if !endpoints.is_empty() {
        text.push_str(&format!(" at {endpoints}"));
    }
    if !view.placement_error.is_empty() {
        text.push_str(&format!(" (placement error: {})", view.placement_error));
    }
    text
}

/// Renders one instance event.
pub fn render_instance(event: pb::instance_event::Event) -> Rendered {
    use pb::instance_event::Event;
    let desired = |lrp: &Option<pb::DesiredLrp>| lrp.clone().unwrap_or_default();
    match event {
        Event::DesiredLrpCreated(e) => {
            let lrp = desired(&e.desired_lrp);
            Rendered {
                kind: "desired_lrp_created",
                text: format!("{} desired: {} instance(s) in {}", lrp.process_guid, lrp.instances, lrp.domain),
                json: json!({ "process_guid": lrp.process_guid, "domain": lrp.domain, "instances": lrp.instances }),
            }
        }
        Event::DesiredLrpChanged(e) => {
            let (before, after) = (desired(&e.before), desired(&e.after));
            let text = if before.instances == after.instances {
                format!("{} changed", after.process_guid)
            } else {
                format!("{} changed: instances {} -> {}", after.process_guid, before.instances, after.instances)
            };
            Rendered {
                kind: "desired_lrp_changed",
                text,
                json: json!({
                    "process_guid": after.process_guid,
                    "before": { "instances": before.instances },
                    "after": { "instances": after.instances },
                }),
            }
        }
        Event::DesiredLrpRemoved(e) => {
            let lrp = desired(&e.desired_lrp);
            Rendered {
                kind: "desired_lrp_removed",
                text: format!("{} removed", lrp.process_guid),
                json: json!({ "process_guid": lrp.process_guid, "domain": lrp.domain }),
            }
        }
        Event::ActualLrpInstanceCreated(e) => {
            let view = InstanceView::new(&e.actual_lrp.unwrap_or_default());
            Rendered {
                kind: "actual_lrp_instance_created",
                text: format!("{}/{} {}{}", view.process_guid, view.index, view.state_label(), whereabouts(&view)),
                json: json!({ "instance": view }),
            }
        }
        Event::ActualLrpInstanceChanged(e) => {
            let before = from_info(&e.actual_lrp_key, &e.actual_lrp_instance_key, e.before);
            let after = from_info(&e.actual_lrp_key, &e.actual_lrp_instance_key, e.after);
            Rendered {
                kind: "actual_lrp_instance_changed",
                text: format!(
                    "{} {} -> {}{}",
                    key_label(&e.actual_lrp_key),
                    before.state_label(),
                    after.state_label(),
                    whereabouts(&after)
                ),
                json: json!({ "before": before, "after": after }),
            }
        }
        Event::ActualLrpInstanceRemoved(e) => {
            let view = InstanceView::new(&e.actual_lrp.unwrap_or_default());
            Rendered {
                kind: "actual_lrp_instance_removed",
                text: format!(
                    "{}/{} removed (was {}{})",
                    view.process_guid,
                    view.index,
                    view.state_label(),
                    whereabouts(&view)
                ),
                json: json!({ "instance": view }),
            }
        }
        Event::ActualLrpCrashed(e) => {
            let instance = e.actual_lrp_instance_key.clone().unwrap_or_default();
            let key = e.actual_lrp_key.clone().unwrap_or_default();
            Rendered {
                kind: "actual_lrp_crashed",
                text: format!(
                    "{} crashed on {} (crash {}): {}",
                    key_label(&e.actual_lrp_key),
                    or_dash(&instance.cell_id),
                    e.crash_count,
                    or_dash(&e.crash_reason)
                ),
                json: json!({
                    "process_guid": key.process_guid, "index": key.index, "domain": key.domain,
                    "instance_guid": instance.instance_guid, "cell_id": instance.cell_id,
                    "crash_count": e.crash_count, "crash_reason": e.crash_reason, "since": e.since,
                }),
            }
        }
    }
}

/// Renders one task event.
pub fn render_task(event: pb::task_event::Event) -> Rendered {
    use pb::task_event::Event;
    let view = |task: Option<pb::Task>| TaskView::new(&task.unwrap_or_default());
    match event {
        Event::TaskCreated(e) => {
            let task = view(e.task);
            Rendered {
                kind: "task_created",
                text: format!("{} {} in {}", task.task_guid, task.state, task.domain),
                json: json!({ "task": task }),
            }
        }
        Event::TaskChanged(e) => {
            let (before, after) = (view(e.before), view(e.after));
            let mut text = format!("{} {} -> {}", after.task_guid, before.state, after.state);
            if !after.cell_id.is_empty() {
                text.push_str(&format!(" on {}", after.cell_id));
            }
            let outcome = after.outcome();
            if !outcome.is_empty() {
                text.push_str(&format!(" ({outcome})"));
            }
            Rendered { kind: "task_changed", text, json: json!({ "before": before, "after": after }) }
        }
        Event::TaskRemoved(e) => {
            let task = view(e.task);
            Rendered {
                kind: "task_removed",
                text: format!("{} removed (was {})", task.task_guid, task.state),
                json: json!({ "task": task }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_change_reads_as_a_transition_with_its_whereabouts() {
        let info = |state: pb::ActualLrpState, net: bool| pb::ActualLrpInfo {
            state: state as i32,
            actual_lrp_net_info: net.then(|| pb::ActualLrpNetInfo {
                address: "10.0.0.1".into(),
                ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let event = pb::instance_event::Event::ActualLrpInstanceChanged(pb::ActualLrpInstanceChangedEvent {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: "web".into(), index: 0, domain: "d".into() }),
            actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey {
                instance_guid: "ig".into(),
                cell_id: "cell-1".into(),
            }),
            before: Some(info(pb::ActualLrpState::Claimed, false)),
            after: Some(info(pb::ActualLrpState::Running, true)),
            trace_id: String::new(),
        });
        let rendered = render_instance(event);
        let at = 1_796_341_141_123_456_789;
        assert_eq!(
            rendered.line(7, at, Format::Table),
            "2026-12-03T23:39:01.123Z 7 actual_lrp_instance_changed web/0 CLAIMED -> RUNNING on cell-1 at \
             10.0.0.1:61001->8080"
        );
        let json: Value = serde_json::from_str(&rendered.line(7, at, Format::Json)).unwrap();
        assert_eq!(json["sequence"], 7);
        assert_eq!(json["time"], "2026-12-03T23:39:01.123Z");
        assert_eq!(json["after"]["state"], "RUNNING");
        assert_eq!(json["before"]["cell_id"], "cell-1");
    }
}
