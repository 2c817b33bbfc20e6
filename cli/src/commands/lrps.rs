//! LRP commands: `desire-lrp`, `scale`, `remove-lrp`, `retire` and `lrps` (`lrp` is in
//! [`super::lrp`]). Listings read every page of the list RPCs ([`Bbs::all`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::Serialize;

use super::validate;
use crate::client::Bbs;
use crate::error::Error;
use crate::lrp_file::{self, DEFAULT_DOMAIN, DEFAULT_ROOTFS};
use crate::output::{self, Format, Table, or_dash};
use crate::views::InstanceView;

/// The health check `desire-lrp` gives an LRP desired with flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealthCheck {
    /// Connect to the first port.
    Tcp,
    /// GET `--health-check-path` on the first port; healthy on a 200.
    Http,
    /// No check: the instance is RUNNING once its process starts.
    None,
}

/// `desire-lrp`: from a file, or from flags for the common case.
#[derive(Debug, Clone, Args)]
pub struct DesireLrpArgs {
    /// A JSON (or .yaml / .yml) file holding a DesiredLRP in the proto's JSON shape, or what
    /// `diego lrp GUID --json` prints; `-` reads JSON from standard input. Conflicts with the
    /// flags below except --guid.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The process guid (letters, digits, `-` and `_`; at most 255 bytes); with --file, it
    /// replaces the file's (desires a copy under a new guid).
    #[arg(long, required_unless_present = "file", value_parser = validate::process_guid)]
    pub guid: Option<String>,
    /// The command, run as `/bin/sh -c COMMAND`.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub command: Option<String>,
    /// Number of instances [0..=1000000].
    #[arg(long, default_value_t = 1, conflicts_with = "file", value_parser = validate::instances, allow_negative_numbers = true)]
    pub instances: i32,
    /// Memory per instance, in MB [1..=16777216].
    #[arg(long, default_value_t = 128, conflicts_with = "file", value_parser = validate::memory_mb, allow_negative_numbers = true)]
    pub memory_mb: i32,
    /// Disk per instance, in MB [1..=67108864].
    #[arg(long, default_value_t = 256, conflicts_with = "file", value_parser = validate::disk_mb, allow_negative_numbers = true)]
    pub disk_mb: i32,
    /// A container port to expose (repeatable) [1..=65535]; the first one gets `$PORT`.
    #[arg(long = "port", value_name = "PORT", conflicts_with = "file", value_parser = validate::port, allow_negative_numbers = true)]
    pub ports: Vec<u32>,
    /// The root filesystem (a URL with a scheme).
    #[arg(long, default_value = DEFAULT_ROOTFS, conflicts_with = "file")]
    pub rootfs: String,
    /// The domain.
    #[arg(long, default_value = DEFAULT_DOMAIN, conflicts_with = "file", value_parser = validate::domain)]
    pub domain: String,
    /// The health check on the first port [default: tcp with a port, none without].
    #[arg(long, value_enum, conflicts_with = "file")]
    pub health_check: Option<HealthCheck>,
    /// The path of an http health check.
    #[arg(long, default_value = "/", value_name = "PATH", conflicts_with = "file")]
    pub health_check_path: String,
    /// An environment variable NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", conflicts_with = "file", value_parser = validate::env)]
    pub env: Vec<pb::EnvironmentVariable>,
    /// The user the command runs as.
    #[arg(long, default_value = "root", conflicts_with = "file")]
    pub user: String,
    /// A route HOSTNAME[:PORT]: the router sends requests for HOSTNAME to the container port
    /// PORT (default: the first --port) of the ready instances (repeatable).
    #[arg(long = "route", value_name = "HOSTNAME[:PORT]", conflicts_with = "file", value_parser = validate::host_route)]
    pub routes: Vec<validate::Route>,
    /// Desire it even when the cells cannot hold every instance (some stay unplaceable).
    #[arg(long)]
    pub force: bool,
}

impl DesireLrpArgs {
    /// The desired LRP these arguments describe; a file's problems are reported here, before
    /// any connection is made.
    pub fn build(&self) -> Result<pb::DesiredLrp, Error> {
        if let Some(path) = &self.file {
            let lrp = lrp_file::load_as(path, self.guid.as_deref())?;
            validate::check_desired_lrp(&lrp).map_err(|e| validate::file_error(path, e))?;
            return Ok(lrp);
        }
        let lrp = self.desired_from_flags()?;
        validate::check_desired_lrp(&lrp).map_err(|e| validate::flag_error(e, validate::lrp_flag))?;
        Ok(lrp)
    }

    fn desired_from_flags(&self) -> Result<pb::DesiredLrp, Error> {
        let environment_variables = self.env.clone();
        let check = match (self.health_check, self.ports.first()) {
            (Some(HealthCheck::None), _) | (None, None) => None,
            (Some(HealthCheck::Tcp) | None, Some(&port)) => {
                Some(pb::Check { tcp_check: Some(pb::TcpCheck { port, ..Default::default() }), http_check: None })
            }
            (Some(HealthCheck::Http), Some(&port)) => Some(pb::Check {
                tcp_check: None,
                http_check: Some(pb::HttpCheck { port, path: self.health_check_path.clone(), ..Default::default() }),
            }),
            (Some(_), None) => {
                return Err(Error::InvalidFlag {
                    flag: "--health-check",
                    reason: "a tcp or http check needs a --port to probe".into(),
                });
            }
        };
        Ok(pb::DesiredLrp {
            process_guid: self.guid.clone().unwrap_or_default(),
            domain: self.domain.clone(),
            rootfs: self.rootfs.clone(),
            instances: self.instances,
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            ports: self.ports.clone(),
            environment_variables,
            action: Some(shell_action(self.command.as_deref().unwrap_or_default(), &self.user)),
            check_definition: check.map(|c| pb::CheckDefinition { checks: vec![c], ..Default::default() }),
            routes: self.route_document()?,
            ..Default::default()
        })
    }

    /// The `cf-router` routes of `--route`, a route without a port on the first `--port`.
    fn route_document(&self) -> Result<std::collections::HashMap<String, Vec<u8>>, Error> {
        if self.routes.is_empty() {
            return Ok(Default::default());
        }
        let mut routes = self.routes.clone();
        for route in routes.iter_mut().filter(|r| r.port == 0) {
            route.port = *self.ports.first().ok_or_else(|| Error::InvalidFlag {
                flag: "--route",
                reason: format!("{} has no port and there is no --port to route to", route.hostname),
            })?;
        }
        let document = super::update::router_routes(&routes);
        Ok(std::collections::HashMap::from([(super::update::ROUTER.to_owned(), document)]))
    }
}

/// `/bin/sh -c COMMAND` as a run action.
pub fn shell_action(command: &str, user: &str) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), command.into()],
            user: user.into(),
            ..Default::default()
        })),
    }
}

/// `scale GUID N`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// The process guid.
    #[arg(value_parser = validate::process_guid)]
    pub guid: String,
    /// The new number of instances [0..=1000000].
    #[arg(value_parser = validate::instances, allow_negative_numbers = true)]
    pub instances: i32,
    /// Scale even when the cells cannot hold every instance (some stay unplaceable).
    #[arg(long)]
    pub force: bool,
}

/// `retire GUID INDEX`.
#[derive(Debug, Clone, Args)]
pub struct RetireArgs {
    /// The process guid.
    #[arg(value_parser = validate::process_guid)]
    pub guid: String,
    /// The instance index [0..=999999].
    #[arg(value_parser = validate::index, allow_negative_numbers = true)]
    pub index: i32,
}

/// A command that takes one process guid.
#[derive(Debug, Clone, Args)]
pub struct LrpGuidArg {
    /// The process guid.
    #[arg(value_parser = validate::process_guid)]
    pub guid: String,
}

/// `lrps [--domain D]`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only desired LRPs of this domain.
    #[arg(long, value_parser = validate::domain)]
    pub domain: Option<String>,
}

/// Desires `lrp`.
pub async fn desire(bbs: &Bbs, lrp: pb::DesiredLrp, format: Format) -> Result<(), Error> {
    let (guid, instances, domain, memory) =
        (lrp.process_guid.clone(), lrp.instances, lrp.domain.clone(), lrp.memory_mb);
    bbs.unary(bbs.raw().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) })).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "process_guid": guid, "domain": domain, "instances": instances,
        })),
        Format::Table => output::print(&format!(
            "desired lrp {guid}: {instances} instance(s) of {memory} MB in domain {domain}; watch them with 'diego lrp {guid}'"
        )),
    }
}

/// Changes the number of instances.
pub async fn scale(bbs: &Bbs, args: &ScaleArgs, format: Format) -> Result<(), Error> {
    let update = pb::DesiredLrpUpdate { instances: Some(args.instances), ..Default::default() };
    let request = api::UpdateDesiredLrpRequest { process_guid: args.guid.clone(), update: Some(update) };
    bbs.unary(bbs.raw().update_desired_lrp(request)).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "process_guid": args.guid, "instances": args.instances,
        })),
        Format::Table => output::print(&format!("scaled {} to {} instance(s)", args.guid, args.instances)),
    }
}

/// Removes a desired LRP (its instances are stopped).
pub async fn remove(bbs: &Bbs, args: &LrpGuidArg, format: Format) -> Result<(), Error> {
    let request = api::RemoveDesiredLrpRequest { process_guid: args.guid.clone() };
    bbs.unary(bbs.raw().remove_desired_lrp(request)).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({ "process_guid": args.guid, "removed": true })),
        Format::Table => output::print(&format!("removed desired lrp {}; its instances are being stopped", args.guid)),
    }
}

/// Retires one instance; convergence starts a replacement while the LRP is still desired.
pub async fn retire(bbs: &Bbs, args: &RetireArgs, format: Format) -> Result<(), Error> {
    let filter =
        api::ActualLrPsRequest { process_guid: args.guid.clone(), index: Some(args.index), ..Default::default() };
    let found = bbs.all(filter, |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
    let Some(instance) = found.iter().map(InstanceView::new).min_by_key(|i| i.presence != "ORDINARY") else {
        return Err(Error::Refused {
            kind: "ResourceNotFound".into(),
            message: format!("actual lrp not found: {} index {}", args.guid, args.index),
        });
    };
    let key = pb::ActualLrpKey { process_guid: args.guid.clone(), index: args.index, domain: instance.domain.clone() };
    bbs.unary(bbs.raw().retire_actual_lrp(api::RetireActualLrpRequest { actual_lrp_key: Some(key) })).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "process_guid": args.guid, "index": args.index, "instance_guid": instance.instance_guid,
            "cell_id": instance.cell_id, "state": instance.state,
        })),
        Format::Table => output::print(&format!(
            "retired {} index {} ({} on {}); convergence starts a replacement while it is desired",
            args.guid,
            args.index,
            instance.state,
            or_dash(&instance.cell_id)
        )),
    }
}

/// One row of `lrps`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LrpSummary {
    /// The process guid.
    pub process_guid: String,
    /// The domain.
    pub domain: String,
    /// Desired instances.
    pub desired: i32,
    /// Indices with a RUNNING instance.
    pub running: usize,
    /// Indices placed but not yet running.
    pub claimed: usize,
    /// Indices waiting for a cell (not known to be unplaceable).
    pub unclaimed: usize,
    /// Indices the auctioneer could not place (UNCLAIMED with a placement error).
    pub unplaceable: usize,
    /// Indices CRASHED.
    pub crashed: usize,
    /// Memory per instance.
    pub memory_mb: i32,
    /// Disk per instance.
    pub disk_mb: i32,
    /// Root filesystem.
    pub rootfs: String,
}

/// The best state of each index seen so far (an index with an evacuating and an ordinary
/// instance counts once, in the better state), fed one instance at a time so a listing of any
/// size can be counted page by page.
#[derive(Debug, Default)]
pub struct IndexStates(BTreeMap<i32, u8>);

impl IndexStates {
    /// Counts one instance.
    pub fn add(&mut self, instance: &InstanceView) {
        let rank = match instance.state {
            "RUNNING" => 4,
            "CLAIMED" => 3,
            "UNCLAIMED" if instance.unplaceable() => 1,
            "UNCLAIMED" => 2,
            _ => 0,
        };
        let entry = self.0.entry(instance.index).or_insert(rank);
        *entry = (*entry).max(rank);
    }

    /// Adds the per-state index counts to `summary`.
    pub fn count_into(&self, summary: &mut LrpSummary) {
        for rank in self.0.values() {
            match rank {
                4 => summary.running += 1,
                3 => summary.claimed += 1,
                2 => summary.unclaimed += 1,
                1 => summary.unplaceable += 1,
                _ => summary.crashed += 1,
            }
        }
    }
}

/// Lists desired LRPs with their running and desired counts.
pub async fn list(bbs: &Bbs, args: &ListArgs, format: Format) -> Result<(), Error> {
    let domain = args.domain.clone().unwrap_or_default();
    let request = api::DesiredLrPsRequest { domain: domain.clone(), ..Default::default() };
    let infos = bbs.all(request, |mut c, r| async move { c.desired_lrp_scheduling_infos(r).await }).await?;
    let request = api::ActualLrPsRequest { domain, ..Default::default() };
    let actual = bbs.all(request, |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
    let mut by_guid: BTreeMap<String, IndexStates> = BTreeMap::new();
    for lrp in &actual {
        let view = InstanceView::new(lrp);
        by_guid.entry(view.process_guid.clone()).or_default().add(&view);
    }
    let mut rows: Vec<LrpSummary> = infos
        .into_iter()
        .map(|info| {
            let key = info.desired_lrp_key.unwrap_or_default();
            let resource = info.desired_lrp_resource.unwrap_or_default();
            let mut summary = LrpSummary {
                desired: info.instances,
                memory_mb: resource.memory_mb,
                disk_mb: resource.disk_mb,
                rootfs: resource.rootfs,
                domain: key.domain,
                ..Default::default()
            };
            if let Some(states) = by_guid.get(&key.process_guid) {
                states.count_into(&mut summary);
            }
            summary.process_guid = key.process_guid;
            summary
        })
        .collect();
    rows.sort_by(|a, b| a.process_guid.cmp(&b.process_guid));
    if format == Format::Json {
        return output::print_json(&rows);
    }
    let mut table =
        Table::new(&["GUID", "DOMAIN", "INSTANCES", "STARTING", "UNPLACEABLE", "CRASHED", "MEMORY", "DISK", "ROOTFS"]);
    for row in &rows {
        table.row(vec![
            row.process_guid.clone(),
            row.domain.clone(),
            format!("{}/{}", row.running, row.desired),
            (row.claimed + row.unclaimed).to_string(),
            row.unplaceable.to_string(),
            row.crashed.to_string(),
            format!("{} MB", row.memory_mb),
            format!("{} MB", row.disk_mb),
            row.rootfs.clone(),
        ]);
    }
    output::print(&table.render())
}
