//! `update-lrp GUID`: changes what a desired LRP can change in place (UpdateDesiredLRP): its
//! instance count, its routes, its annotation and, from a file, its metric tags. Anything of
//! the run info (command, environment, image, ports, memory, disk, ...) would need every
//! instance replaced, a rolling update, which is not supported yet: such a change is refused
//! (exit 2) before anything is sent.
//!
//! `--file` takes the desired LRP file format (what `diego lrp GUID --json` prints is read
//! as its `desired_lrp`): the updatable fields it holds are applied; a field of the run info it holds must equal
//! the current value, so an edited copy of the whole LRP is accepted when only updatable
//! fields were edited.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use prost::{Message, Name};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use super::capacity::{self, Need};
use super::validate::{self, Route};
use crate::client::Bbs;
use crate::error::Error;
use crate::lrp_file;
use crate::output::{self, Format};

/// The route provider `--route` writes: the HTTP router's, Diego's `cf-router`.
pub const ROUTER: &str = "cf-router";

/// The fields of the file format an update may change.
pub const UPDATABLE: &[&str] = &["instances", "routes", "annotation", "metric_tags"];

/// `update-lrp GUID [--instances N] [--route HOST:PORT]... [--annotation TEXT] | --file FILE`.
#[derive(Debug, Clone, Args)]
pub struct UpdateLrpArgs {
    /// The process guid.
    #[arg(value_parser = validate::process_guid)]
    pub guid: String,
    /// The new number of instances [0..=1000000].
    #[arg(long, value_parser = validate::instances, allow_negative_numbers = true)]
    pub instances: Option<i32>,
    /// A route HOSTNAME:PORT to the container port PORT (repeatable); the given routes replace
    /// the LRP's cf-router routes (other route providers are kept).
    #[arg(long = "route", value_name = "HOSTNAME:PORT", value_parser = validate::route)]
    pub routes: Vec<Route>,
    /// Remove every cf-router route.
    #[arg(long, conflicts_with = "routes")]
    pub no_routes: bool,
    /// The new annotation (free text, at most 10 KiB).
    #[arg(long, value_name = "TEXT")]
    pub annotation: Option<String>,
    /// A JSON (or .yaml / .yml) file in the desired LRP file format holding the fields to
    /// change (instances, routes, annotation, metric_tags); `-` reads JSON from standard input.
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with_all = ["instances", "routes", "no_routes", "annotation"])]
    pub file: Option<PathBuf>,
    /// Scale even when the cells cannot hold every instance (some stay unplaceable).
    #[arg(long)]
    pub force: bool,
    /// Refused: changing the command needs a rolling update.
    #[arg(long, value_name = "COMMAND", help_heading = "Run info (refused: needs a rolling update)")]
    pub command: Option<String>,
    /// Refused: changing the environment needs a rolling update.
    #[arg(long, value_name = "NAME=VALUE", help_heading = "Run info (refused: needs a rolling update)")]
    pub env: Vec<String>,
    /// Refused: changing the memory needs a rolling update.
    #[arg(long, value_name = "MB", help_heading = "Run info (refused: needs a rolling update)")]
    pub memory_mb: Option<String>,
    /// Refused: changing the disk needs a rolling update.
    #[arg(long, value_name = "MB", help_heading = "Run info (refused: needs a rolling update)")]
    pub disk_mb: Option<String>,
    /// Refused: changing the ports needs a rolling update.
    #[arg(long = "port", value_name = "PORT", help_heading = "Run info (refused: needs a rolling update)")]
    pub ports: Vec<String>,
    /// Refused: changing the root filesystem (image) needs a rolling update.
    #[arg(
        long,
        visible_alias = "image",
        value_name = "URL",
        help_heading = "Run info (refused: needs a rolling update)"
    )]
    pub rootfs: Option<String>,
    /// Refused: changing the user needs a rolling update.
    #[arg(long, value_name = "USER", help_heading = "Run info (refused: needs a rolling update)")]
    pub user: Option<String>,
}

/// The sentence of a refused run-info change.
fn rolling(what: &str) -> Error {
    Error::NeedsRollingUpdate(format!(
        "changing {what} changes the run info, which needs a rolling update of every instance: not supported \
         yet; update-lrp changes instances, routes, annotation and metric_tags in place"
    ))
}

impl UpdateLrpArgs {
    /// Refuses run-info flags, and an update that changes nothing.
    pub fn check_flags(&self) -> Result<(), Error> {
        let given: [(&str, bool); 7] = [
            ("--command", self.command.is_some()),
            ("--env", !self.env.is_empty()),
            ("--memory-mb", self.memory_mb.is_some()),
            ("--disk-mb", self.disk_mb.is_some()),
            ("--port", !self.ports.is_empty()),
            ("--rootfs", self.rootfs.is_some()),
            ("--user", self.user.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(rolling(flag));
        }
        let any = self.instances.is_some()
            || !self.routes.is_empty()
            || self.no_routes
            || self.annotation.is_some()
            || self.file.is_some();
        if !any {
            return Err(Error::InvalidFlag {
                flag: "--instances",
                reason: "nothing to change: give --instances, --route, --no-routes, --annotation or --file".into(),
            });
        }
        Ok(())
    }
}

/// The cf-router route document of `routes`: one entry per port, its hostnames in order.
pub fn router_routes(routes: &[Route]) -> Vec<u8> {
    let mut ports: Vec<u32> = Vec::new();
    let mut hosts: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for route in routes {
        if !ports.contains(&route.port) {
            ports.push(route.port);
        }
        hosts.entry(route.port).or_default().push(&route.hostname);
    }
    let entries: Vec<serde_json::Value> = ports
        .iter()
        .map(|port| serde_json::json!({ "hostnames": hosts.get(port).cloned().unwrap_or_default(), "port": port }))
        .collect();
    serde_json::Value::Array(entries).to_string().into_bytes()
}

/// The update the flags ask for, given the current desired LRP (whose other route providers
/// are kept).
pub fn update_from_flags(args: &UpdateLrpArgs, current: &pb::DesiredLrp) -> pb::DesiredLrpUpdate {
    let mut update =
        pb::DesiredLrpUpdate { instances: args.instances, annotation: args.annotation.clone(), ..Default::default() };
    if !args.routes.is_empty() || args.no_routes {
        let mut routes = current.routes.clone();
        routes.remove(ROUTER);
        if !args.routes.is_empty() {
            routes.insert(ROUTER.to_owned(), router_routes(&args.routes));
        }
        update.routes = routes;
        update.has_routes = true;
    }
    update
}

/// The update a file asks for: `fields` is what the file holds, `file` the message it makes.
/// A run-info field must equal `current`'s; `process_guid`, when given, must be `guid`.
pub fn update_from_file(
    guid: &str,
    fields: &serde_json::Value,
    file: &pb::DesiredLrp,
    current: &pb::DesiredLrp,
) -> Result<pb::DesiredLrpUpdate, Error> {
    let Some(fields) = fields.as_object() else {
        return Err(Error::InvalidFlag { flag: "--file", reason: "the file must hold an object of fields".into() });
    };
    if fields.contains_key("process_guid") && file.process_guid != guid {
        return Err(Error::InvalidFlag {
            flag: "--file",
            reason: format!("process_guid is {:?}, not {guid:?}", file.process_guid),
        });
    }
    let (was, wanted) = (lrp_file::to_json(current), lrp_file::to_json(file));
    for key in fields.keys() {
        // The modification tag is the BBS's own bookkeeping, not something a file sets.
        if UPDATABLE.contains(&key.as_str()) || key == "process_guid" || key == "modification_tag" {
            continue;
        }
        if was.get(key) != wanted.get(key) {
            return Err(rolling(key));
        }
    }
    let has = |key: &str| fields.contains_key(key);
    Ok(pb::DesiredLrpUpdate {
        instances: has("instances").then_some(file.instances),
        routes: if has("routes") { file.routes.clone() } else { Default::default() },
        has_routes: has("routes"),
        annotation: has("annotation").then(|| file.annotation.clone()),
        metric_tags: if has("metric_tags") { file.metric_tags.clone() } else { Default::default() },
        has_metric_tags: has("metric_tags"),
        image_username: None,
        image_password: None,
    })
}

/// Checks an update as the BBS would (request limits and `proto`'s update rules).
pub fn check_update(update: &pb::DesiredLrpUpdate) -> Result<(), proto::models::ValidationError> {
    proto::bounds::check_message(&pb::DesiredLrpUpdate::full_name(), &update.encode_to_vec())?;
    proto::models::DesiredLrpUpdate::try_from(update.clone()).map(|_| ())
}

/// A line saying what changed.
fn summary(guid: &str, update: &pb::DesiredLrpUpdate) -> String {
    let mut parts = Vec::new();
    if let Some(instances) = update.instances {
        parts.push(format!("instances {instances}"));
    }
    if update.has_routes {
        let text = update.routes.get(ROUTER).map(|r| String::from_utf8_lossy(r).into_owned());
        parts.push(format!("routes {}", text.unwrap_or_else(|| "none".into())));
    }
    if let Some(annotation) = &update.annotation {
        parts.push(format!("annotation {annotation:?}"));
    }
    if update.has_metric_tags {
        parts.push(format!("{} metric tag(s)", update.metric_tags.len()));
    }
    format!("updated {guid}: {}", parts.join(", "))
}

/// Reads the file (when given) before connecting: a bad file is a usage error even with no BBS.
pub fn load(args: &UpdateLrpArgs) -> Result<Option<(serde_json::Value, pb::DesiredLrp)>, Error> {
    args.check_flags()?;
    args.file.as_deref().map(lrp_file::load_partial).transpose()
}

/// Applies the update.
pub async fn update(
    bbs: &Bbs,
    args: &UpdateLrpArgs,
    file: Option<(serde_json::Value, pb::DesiredLrp)>,
    format: Format,
) -> Result<(), Error> {
    let request = api::DesiredLrpByProcessGuidRequest { process_guid: args.guid.clone() };
    let current = bbs.unary(bbs.raw().desired_lrp_by_process_guid(request)).await?.desired_lrp.unwrap_or_default();
    let update = match (&file, &args.file) {
        (Some((fields, lrp)), Some(path)) => {
            let update = update_from_file(&args.guid, fields, lrp, &current)?;
            check_update(&update).map_err(|e| validate::file_error(path, e))?;
            update
        }
        _ => {
            let update = update_from_flags(args, &current);
            check_update(&update).map_err(|e| validate::flag_error(e, update_flag))?;
            update
        }
    };
    let mut warning = None;
    if let Some(instances) = update.instances {
        let need = Need { memory_mb: i64::from(current.memory_mb), disk_mb: i64::from(current.disk_mb) };
        warning = capacity::guard(bbs, &args.guid, need, instances, args.force).await?;
    }
    let line = summary(&args.guid, &update);
    let request = api::UpdateDesiredLrpRequest { process_guid: args.guid.clone(), update: Some(update.clone()) };
    bbs.unary(bbs.raw().update_desired_lrp(request)).await?;
    let printed = match format {
        Format::Json => output::print_json(&serde_json::json!({
            "process_guid": args.guid,
            "instances": update.instances,
            "routes": update.has_routes.then(|| lrp_file::to_json(&pb::DesiredLrp {
                routes: update.routes.clone(), ..Default::default()
            })["routes"].clone()),
            "annotation": update.annotation,
        })),
        Format::Table => output::print(&line),
    };
    capacity::warn(warning);
    printed
}

/// The flag of `update-lrp` that sets the update field `field`.
fn update_flag(field: &str) -> &'static str {
    match field.split(['.', '[']).next().unwrap_or_default() {
        "instances" => "--instances",
        "routes" => "--route",
        _ => "--annotation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: "web".into(),
            instances: 2,
            memory_mb: 128,
            routes: [("diego-ssh".to_owned(), b"{}".to_vec())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn routes_group_hostnames_by_port_and_keep_other_providers() {
        let route = |h: &str, port| Route { hostname: h.into(), port };
        let routes = [route("a.example", 8080), route("b.example", 9090), route("c.example", 8080)];
        assert_eq!(
            String::from_utf8(router_routes(&routes)).unwrap(),
            r#"[{"hostnames":["a.example","c.example"],"port":8080},{"hostnames":["b.example"],"port":9090}]"#
        );
        let file = pb::DesiredLrp { routes: [(ROUTER.to_owned(), b"[]".to_vec())].into(), ..Default::default() };
        let fields = serde_json::json!({ "routes": {} });
        let update = update_from_file("web", &fields, &file, &current()).unwrap();
        assert!(update.has_routes && update.instances.is_none());
    }

    #[test]
    fn a_file_may_repeat_the_run_info_but_not_change_it() {
        let mut file = current();
        file.instances = 5;
        let fields = lrp_file::to_json(&file);
        let update = update_from_file("web", &fields, &file, &current()).unwrap();
        assert_eq!(update.instances, Some(5));
        file.memory_mb = 256;
        let fields = lrp_file::to_json(&file);
        let error = update_from_file("web", &fields, &file, &current()).unwrap_err();
        assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
        assert!(error.to_string().starts_with("changing memory_mb changes the run info"), "{error}");
    }

    #[test]
    fn a_file_for_another_guid_is_refused() {
        let file = pb::DesiredLrp { process_guid: "other".into(), ..Default::default() };
        let fields = serde_json::json!({ "process_guid": "other" });
        assert!(update_from_file("web", &fields, &file, &current()).is_err());
    }
}
