//! Task commands: `desire-task`, `tasks`, `task` and `cancel-task`.

use std::path::PathBuf;

use clap::Args;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use super::validate;
use crate::client::Bbs;
use crate::commands::lrps::shell_action;
use crate::error::Error;
use crate::lrp_file::{DEFAULT_DOMAIN, DEFAULT_ROOTFS};
use crate::output::{self, Format, Table, or_dash};
use crate::task_file;
use crate::views::TaskView;

/// `desire-task`.
#[derive(Debug, Clone, Args)]
pub struct DesireTaskArgs {
    /// A JSON (or .yaml / .yml) file holding a TaskDefinition in the proto's JSON shape with its
    /// task_guid and domain; `-` reads JSON from standard input. Conflicts with the flags below.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The task guid (letters, digits, `-` and `_`; at most 255 bytes).
    #[arg(long, required_unless_present = "file", conflicts_with = "file", value_parser = validate::task_guid)]
    pub guid: Option<String>,
    /// The command, run as `/bin/sh -c COMMAND`.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub command: Option<String>,
    /// Memory, in MB [1..=16777216].
    #[arg(long, default_value_t = 128, value_parser = validate::memory_mb, allow_negative_numbers = true, conflicts_with = "file")]
    pub memory_mb: i32,
    /// Disk, in MB [1..=67108864].
    #[arg(long, default_value_t = 256, value_parser = validate::disk_mb, allow_negative_numbers = true, conflicts_with = "file")]
    pub disk_mb: i32,
    /// The domain.
    #[arg(long, default_value = DEFAULT_DOMAIN, value_parser = validate::domain, conflicts_with = "file")]
    pub domain: String,
    /// The root filesystem (a URL with a scheme).
    #[arg(long, default_value = DEFAULT_ROOTFS, conflicts_with = "file")]
    pub rootfs: String,
    /// An http(s) URL the BBS POSTs the completed task to.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    pub callback_url: Option<String>,
    /// A file in the container whose contents become the task's result.
    #[arg(long, value_name = "PATH", conflicts_with = "file")]
    pub result_file: Option<String>,
    /// An environment variable NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = validate::env, conflicts_with = "file")]
    pub env: Vec<pb::EnvironmentVariable>,
    /// The user the command runs as.
    #[arg(long, default_value = "root", conflicts_with = "file")]
    pub user: String,
}

impl DesireTaskArgs {
    /// The request these arguments describe.
    pub fn build(&self) -> Result<api::DesireTaskRequest, Error> {
        if let Some(path) = &self.file {
            let request = task_file::load(path)?;
            // As task_file names its own errors: the flag, then the file and the field.
            validate::check_task(&request)
                .map_err(|e| Error::InvalidFlag { flag: "--file", reason: format!("{}: {e}", path.display()) })?;
            return Ok(request);
        }
        let definition = pb::TaskDefinition {
            root_fs: self.rootfs.clone(),
            environment_variables: self.env.clone(),
            action: Some(shell_action(self.command.as_deref().unwrap_or_default(), &self.user)),
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            completion_callback_url: self.callback_url.clone().unwrap_or_default(),
            result_file: self.result_file.clone().unwrap_or_default(),
            ..Default::default()
        };
        let request = api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: self.guid.clone().unwrap_or_default(),
            domain: self.domain.clone(),
        };
        validate::check_task(&request).map_err(|e| validate::flag_error(e, validate::task_flag))?;
        Ok(request)
    }
}

/// `tasks [--domain D] [--cell C]`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only tasks of this domain.
    #[arg(long, value_parser = validate::domain)]
    pub domain: Option<String>,
    /// Only tasks on this cell.
    #[arg(long, value_parser = validate::cell_id)]
    pub cell: Option<String>,
}

/// A command that takes one task guid.
#[derive(Debug, Clone, Args)]
pub struct TaskGuidArg {
    /// The task guid.
    #[arg(value_parser = validate::task_guid)]
    pub guid: String,
}

/// Desires a task.
pub async fn desire(bbs: &Bbs, request: api::DesireTaskRequest, format: Format) -> Result<(), Error> {
    let (guid, domain) = (request.task_guid.clone(), request.domain.clone());
    bbs.unary(bbs.raw().desire_task(request)).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({ "task_guid": guid, "domain": domain })),
        Format::Table => {
            output::print(&format!("desired task {guid} in domain {domain}; follow it with 'diego task {guid}'"))
        }
    }
}

/// Lists tasks.
pub async fn list(bbs: &Bbs, args: &ListArgs, format: Format) -> Result<(), Error> {
    let request = api::TasksRequest {
        domain: args.domain.clone().unwrap_or_default(),
        cell_id: args.cell.clone().unwrap_or_default(),
        ..Default::default()
    };
    let tasks = bbs.all(request, |mut c, r| async move { c.tasks(r).await }).await?;
    let mut tasks: Vec<TaskView> = tasks.iter().map(TaskView::new).collect();
    tasks.sort_by(|a, b| (a.created_at, &a.task_guid).cmp(&(b.created_at, &b.task_guid)));
    if format == Format::Json {
        return output::print_json(&tasks);
    }
    let now = output::now_ns();
    let mut table = Table::new(&["GUID", "DOMAIN", "STATE", "CELL", "MEMORY", "AGE", "OUTCOME"]);
    for task in &tasks {
        table.row(vec![
            task.task_guid.clone(),
            task.domain.clone(),
            task.state.to_owned(),
            or_dash(&task.cell_id),
            format!("{} MB", task.memory_mb),
            output::age(task.created_at, now),
            task.outcome(),
        ]);
    }
    output::print(&table.render())
}

/// Shows one task.
pub async fn show(bbs: &Bbs, args: &TaskGuidArg, format: Format) -> Result<(), Error> {
    let request = api::TaskByGuidRequest { task_guid: args.guid.clone() };
    let task = bbs.unary(bbs.raw().task_by_guid(request)).await?.task.unwrap_or_default();
    let task = TaskView::new(&task);
    if format == Format::Json {
        return output::print_json(&task);
    }
    let now = output::now_ns();
    let mut lines = vec![
        format!("task guid:     {}", task.task_guid),
        format!("domain:        {}", task.domain),
        format!("state:         {}", task.state),
        format!("cell:          {}", or_dash(&task.cell_id)),
        format!("resources:     {} MB memory, {} MB disk", task.memory_mb, task.disk_mb),
        format!("rootfs:        {}", task.rootfs),
        format!("command:       {}", or_dash(&task.command)),
        format!("callback url:  {}", or_dash(&task.completion_callback_url)),
        format!("created:       {} ago", output::age(task.created_at, now)),
    ];
    let outcome = task.outcome();
    if !outcome.is_empty() {
        lines.push(format!("outcome:       {outcome}"));
    }
    if !task.result.is_empty() {
        lines.push(format!("result:        {}", task.result));
    }
    if task.rejection_count > 0 {
        lines.push(format!("rejections:    {} (last: {})", task.rejection_count, task.rejection_reason));
    }
    output::print(&lines.join("\n"))
}

/// Cancels a task.
pub async fn cancel(bbs: &Bbs, args: &TaskGuidArg, format: Format) -> Result<(), Error> {
    bbs.unary(bbs.raw().cancel_task(api::TaskGuidRequest { task_guid: args.guid.clone() })).await?;
    match format {
        Format::Json => output::print_json(&serde_json::json!({ "task_guid": args.guid, "cancelled": true })),
        Format::Table => output::print(&format!("cancelled task {}", args.guid)),
    }
}
