//! `export [--domain D]`: the cluster's desired state in one document, in the state file format
//! ([`crate::state_file`]) that `diego apply -f` reads: every desired LRP, every fresh domain and
//! every pending task's definition. YAML, or JSON with `--json`.
//!
//! Tasks that have started are not exported: a task runs once, and its cell reports it.

use clap::Args;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use super::validate;
use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format};
use crate::plan::Current;
use crate::state_file::{self, DomainEntry, State};

/// `export [--domain D]`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Export only this domain: its desired LRPs, its pending tasks and the domain itself.
    #[arg(long, value_parser = validate::domain)]
    pub domain: Option<String>,
}

/// The fresh domains, sorted, each with the seconds it stays fresh (0: never expires).
pub async fn domains(bbs: &Bbs) -> Result<Vec<(String, u32)>, Error> {
    let response = bbs.unary(bbs.raw().domains(api::DomainsRequest {})).await?;
    let mut ttls = response.ttl_remaining.into_iter();
    let mut domains: Vec<(String, u32)> =
        response.domains.into_iter().map(|name| (name, ttls.next().unwrap_or(0))).collect();
    domains.sort();
    Ok(domains)
}

/// What the cluster holds, every page of every listing read: desired LRPs and tasks (of
/// `domain` only, when given; every task, whatever its state) and the fresh domains with their
/// remaining TTLs.
pub async fn read(
    bbs: &Bbs,
    domain: Option<&str>,
) -> Result<(Vec<pb::DesiredLrp>, Vec<(String, u32)>, Vec<pb::Task>), Error> {
    let domain = domain.unwrap_or_default().to_owned();
    let request = api::DesiredLrPsRequest { domain: domain.clone(), ..Default::default() };
    let mut lrps = bbs.all(request, |mut c, r| async move { c.desired_lr_ps(r).await }).await?;
    lrps.sort_by(|a, b| a.process_guid.cmp(&b.process_guid));
    let request = api::TasksRequest { domain: domain.clone(), ..Default::default() };
    let mut tasks = bbs.all(request, |mut c, r| async move { c.tasks(r).await }).await?;
    tasks.sort_by(|a, b| a.task_guid.cmp(&b.task_guid));
    let mut domains = domains(bbs).await?;
    domains.retain(|(d, _)| domain.is_empty() || *d == domain);
    Ok((lrps, domains, tasks))
}

/// The cluster as `diego apply` compares it.
pub async fn current(bbs: &Bbs, domain: Option<&str>) -> Result<Current, Error> {
    let (desired_lrps, domains, tasks) = read(bbs, domain).await?;
    Ok(Current {
        desired_lrps,
        domains: domains.into_iter().collect(),
        task_guids: tasks.into_iter().map(|t| t.task_guid).collect(),
    })
}

/// The cluster's state in the state file's terms: pending tasks only.
pub async fn state(bbs: &Bbs, domain: Option<&str>) -> Result<State, Error> {
    let (desired_lrps, domains, tasks) = read(bbs, domain).await?;
    let tasks = tasks
        .into_iter()
        .filter(|t| t.state == pb::task::State::Pending as i32)
        .map(|t| api::DesireTaskRequest {
            task_definition: t.task_definition,
            task_guid: t.task_guid,
            domain: t.domain,
        })
        .collect();
    // A TTL beyond what UpsertDomain takes (a domain set by another tool) is written as the
    // longest one, so the file applies.
    let domains = domains
        .into_iter()
        .map(|(name, ttl)| DomainEntry {
            name,
            ttl_remaining: (ttl > 0).then(|| ttl.min(u32::try_from(validate::max_ttl_s()).unwrap_or(u32::MAX))),
        })
        .collect();
    Ok(State { desired_lrps, domains, tasks })
}

/// Prints the cluster's state.
pub async fn export(bbs: &Bbs, args: &ExportArgs, format: Format) -> Result<(), Error> {
    let document = state_file::to_json(&state(bbs, args.domain.as_deref()).await?);
    match format {
        Format::Json => output::print_json(&document),
        Format::Table => {
            let yaml = serde_norway::to_string(&document).map_err(|e| Error::Output(std::io::Error::other(e)))?;
            output::print(yaml.trim_end())
        }
    }
}
