//! `lrp GUID [--all]`: one desired LRP, a count of its indices per state, and its instances.
//!
//! An LRP can have more instances than one response may carry (100,000 instances are about
//! 10 MB as ActualLRPs), so every page of ActualLRPs is read for the counts, but only the first
//! [`INSTANCES_SHOWN`] instances are kept and shown unless `--all` asks for every one.
//!
//! `--json` prints `{desired_lrp, running, states, instance_count, instances}`: `desired_lrp` in
//! the desired LRP file format, and the whole document is itself a desired LRP file (the reader
//! takes `desired_lrp` and ignores the rest, [`crate::lrp_file`]), so `diego lrp web --json |
//! diego desire-lrp --file - --guid web-copy` desires an identical copy.

use clap::Args;
use proto::pb::bbs::v1 as api;
use serde::Serialize;

use super::lrps::{IndexStates, LrpSummary};
use crate::client::Bbs;
use crate::error::Error;
use crate::lrp_file::{self, action_summary, check_summary};
use crate::output::{self, Format, Table, or_dash};
use crate::views::InstanceView;

/// How many instances `lrp` shows without `--all`.
pub const INSTANCES_SHOWN: usize = 100;

/// `lrp GUID [--all]`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The process guid.
    #[arg(value_parser = super::validate::process_guid)]
    pub guid: String,
    /// Show every instance, not only the first 100 (the state counts always cover every one).
    #[arg(long)]
    pub all: bool,
}

/// Indices per state, for `lrp --json`.
#[derive(Debug, Clone, Copy, Serialize)]
struct StateCounts {
    running: usize,
    claimed: usize,
    unclaimed: usize,
    unplaceable: usize,
    crashed: usize,
}

/// The instances of `guid`, counted page by page: the counts per state, how many instances
/// there are, and the first [`INSTANCES_SHOWN`] of them (every one with `all`), by index.
async fn instances(bbs: &Bbs, guid: &str, all: bool) -> Result<(LrpSummary, usize, Vec<InstanceView>), Error> {
    let request = api::ActualLrPsRequest { process_guid: guid.to_owned(), ..Default::default() };
    let (mut states, mut total, mut shown, mut token) = (IndexStates::default(), 0, Vec::new(), String::new());
    loop {
        let (page, next) = bbs.page(&request, 0, token, |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
        for lrp in &page {
            let view = InstanceView::new(lrp);
            states.add(&view);
            total += 1;
            if all || shown.len() < INSTANCES_SHOWN {
                shown.push(view);
            }
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    shown.sort_by(|a: &InstanceView, b| (a.index, a.presence).cmp(&(b.index, b.presence)));
    let mut summary = LrpSummary::default();
    states.count_into(&mut summary);
    Ok((summary, total, shown))
}

/// Shows one desired LRP and its instances.
pub async fn show(bbs: &Bbs, args: &ShowArgs, format: Format) -> Result<(), Error> {
    let request = api::DesiredLrpByProcessGuidRequest { process_guid: args.guid.clone() };
    let desired = bbs.unary(bbs.raw().desired_lrp_by_process_guid(request)).await?.desired_lrp.unwrap_or_default();
    let (summary, total, instances) = instances(bbs, &args.guid, args.all).await?;
    let states = StateCounts {
        running: summary.running,
        claimed: summary.claimed,
        unclaimed: summary.unclaimed,
        unplaceable: summary.unplaceable,
        crashed: summary.crashed,
    };
    if format == Format::Json {
        return output::print_json(&serde_json::json!({
            "desired_lrp": lrp_file::to_json(&desired), "running": summary.running, "states": states,
            "instance_count": total, "instances": instances,
        }));
    }
    let now = output::now_ns();
    let ports: Vec<String> = desired.ports.iter().map(u32::to_string).collect();
    let mut text = vec![
        format!("process guid:  {}", desired.process_guid),
        format!("domain:        {}", desired.domain),
        format!("instances:     {} running / {} desired", summary.running, desired.instances),
        format!(
            "states:        {} running, {} claimed, {} unclaimed, {} unplaceable, {} crashed",
            states.running, states.claimed, states.unclaimed, states.unplaceable, states.crashed
        ),
        format!("resources:     {} MB memory, {} MB disk", desired.memory_mb, desired.disk_mb),
        format!("rootfs:        {}", desired.rootfs),
        format!("ports:         {}", or_dash(&ports.join(", "))),
        format!("command:       {}", or_dash(&desired.action.as_ref().map(action_summary).unwrap_or_default())),
        format!(
            "health check:  {}",
            desired.check_definition.as_ref().map_or_else(|| "none".to_owned(), check_summary)
        ),
        String::new(),
    ];
    if let Some(original) = desired.annotation.strip_prefix(crate::plan::RECOVERED_PREFIX) {
        text.insert(
            2,
            format!(
                "recovered:     rebuilt from the cells after the database lost it; desire or apply it to take it back (annotation: {})",
                or_dash(original)
            ),
        );
    }
    let mut table = Table::new(&["INDEX", "STATE", "CELL", "ADDRESS", "CRASHES", "SINCE", "DETAILS"]);
    for instance in &instances {
        let details = match (instance.placement_error.is_empty(), instance.crash_reason.is_empty()) {
            (false, _) => format!("placement error: {}", instance.placement_error),
            (true, false) => format!("last crash: {}", instance.crash_reason),
            (true, true) => String::new(),
        };
        table.row(vec![
            instance.index.to_string(),
            instance.state_label(),
            or_dash(&instance.cell_id),
            or_dash(&instance.endpoints()),
            instance.crash_count.to_string(),
            output::age(instance.since, now),
            details,
        ]);
    }
    text.push(table.render());
    if instances.len() < total {
        text.push(format!(
            "showing the first {} of {total} instances; 'diego lrp {} --all' shows every one",
            instances.len(),
            args.guid
        ));
    }
    output::print(&text.join("\n"))
}
